//! What is read from a table, and the SQL that reads it: the compared columns' row
//! expression, key expressions, chunk bucketing and range-summary queries.

use super::*;

/// What to read from a table: the same in every region.
#[derive(Debug, Clone)]
pub(crate) struct TableSpec {
    /// The table.
    pub table: TableName,
    /// Key columns, in key order.
    pub key: Vec<Column>,
    /// Compared columns (key columns included), sorted by name, excluded columns dropped.
    pub columns: Vec<Column>,
    /// A validated `--where` expression (from [`crate::source::filter::validate_where`]).
    pub filter: Option<String>,
    /// An expression giving a row version's time for the in-flight rule (commit timestamp
    /// or tracking column), as `timestamptz`; `None` when there is none.
    pub version_time: Option<String>,
}

impl TableSpec {
    pub(super) fn where_sql(&self, extra: &[String]) -> String {
        let mut parts: Vec<String> = extra.to_vec();
        if let Some(f) = &self.filter {
            parts.push(format!("({f})"));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", parts.join(" AND "))
        }
    }

    pub(super) fn col_ref(c: &Column) -> String {
        format!("t.{}", quote_ident(&c.name))
    }

    /// A key column as compared for chunking (text in byte order).
    pub(super) fn key_part(c: &Column) -> String {
        let mut s = Self::col_ref(c);
        if c.collation.is_some() && !c.is_array {
            s.push_str(" COLLATE \"C\"");
        }
        s
    }

    /// The first key column as compared for chunking (text in byte order).
    pub(super) fn k0_expr(&self) -> String {
        Self::key_part(&self.key[0])
    }

    /// True when chunks are ranges of the whole (composite) key rather than of its first
    /// column: a key of several columns, all in byte order (not collatable, or collated
    /// `C`/`POSIX`), so that its ranges can use the key's index. Each range is read as the
    /// pieces of [`TableSpec::range_pieces`] (plain per-column conditions), never as a row
    /// comparison: on PostgreSQL 15 a B-tree scan bounded by `ROW(k1, k2) < ROW($3, $4)`
    /// does not stop at the upper bound inside the same first-column value, so each chunk's
    /// scan read on to the end of that value (26 ms per chunk for a 4-value first column
    /// at 1M rows: minutes per table).
    pub(crate) fn composite(&self) -> bool {
        self.key.len() > 1 && self.key.iter().all(Self::byte_order)
    }

    pub(super) fn byte_order(k: &Column) -> bool {
        k.is_array
            || k.collation
                .as_deref()
                .is_none_or(|c| matches!(c, "C" | "POSIX" | "ucs_basic"))
    }

    /// True when the chunk ranges can be read through the key's index, one index range scan
    /// per chunk, instead of a `width_bucket` over the bounds per row (whose binary search
    /// walks variable-length bounds element by element: ~1 ms per row over 38k text
    /// bounds): a composite key, or one variable-length column, in byte order.
    pub(super) fn ranges_by_index(&self) -> bool {
        self.composite()
            || (self.key_in_byte_order()
                && !matches!(
                    types::ColumnType::effective_oid(&self.key[0]),
                    oid::INT2
                        | oid::INT4
                        | oid::INT8
                        | oid::FLOAT4
                        | oid::FLOAT8
                        | oid::UUID
                        | oid::DATE
                        | oid::TIME
                        | oid::TIMESTAMP
                        | oid::TIMESTAMPTZ
                        | oid::BOOL
                ))
    }

    /// The key as compared for chunking: the first column, or `ROW(k1, k2, ...)` of a
    /// composite key (compared field by field, text in byte order).
    pub(super) fn key_expr(&self) -> String {
        if self.composite() {
            format!(
                "ROW({})",
                self.key
                    .iter()
                    .map(Self::key_part)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            self.k0_expr()
        }
    }

    /// The number of key columns the chunks are ranges of (all of a composite key's, else 1).
    pub(super) fn chunked_columns(&self) -> usize {
        if self.composite() { self.key.len() } else { 1 }
    }

    /// Key column `i` compared with the text expression `text` cast to its type, in the
    /// order of [`TableSpec::key_part`] (`COLLATE "C"` for text).
    fn key_value(&self, i: usize, text: &str) -> String {
        let c = &self.key[i];
        let mut s = format!("{text}::{}", c.type_name);
        if c.collation.is_some() && !c.is_array {
            s.push_str(" COLLATE \"C\"");
        }
        s
    }

    /// The rows with `lo <= key < hi` (an end open when `None`) of the chunked key (see
    /// [`TableSpec::chunked_columns`]), as disjoint pieces, each a conjunction of plain
    /// per-column conditions: equalities on a prefix of the key and a range on the next
    /// column, which a B-tree scan of the key's index uses as both its start and its stop
    /// (a row comparison `ROW(k1, k2) < ROW($3, $4)` as the upper end does not stop the scan
    /// inside the same first-column value on PostgreSQL 15). `lo` and `hi` hold one text
    /// SQL expression per chunked column (parameters or lateral columns).
    ///
    /// With both ends, where the ends first differ (at column `j`) is decided by the server
    /// with the key's own equality (so texts such as `1.0` and `1.00` agree): each piece
    /// carries a guard on the ends alone (a one-time filter), true for one `j` only. For
    /// that `j`: the rows with `lo`'s prefix and a greater tail than `lo`'s, those whose
    /// column `j` lies strictly between, and those with `hi`'s prefix and a smaller tail;
    /// `n²` pieces in all for `n` columns, at most `2(n-j)+1` of them read. Key columns left
    /// unconstrained by a piece must be NOT NULL (rows with a NULL key column are the last
    /// chunk's only), so nothing is counted twice.
    pub(super) fn range_pieces(&self, lo: Option<&[String]>, hi: Option<&[String]>) -> Vec<String> {
        let nk = self.chunked_columns();
        let kp = |i: usize| Self::key_part(&self.key[i]);
        // Column `m` compared with `op` to `end[m]`, the columns before equal to `end`'s,
        // those after not NULL.
        let piece = |end: &[String], m: usize, op: &str| -> Vec<String> {
            let mut p: Vec<String> = (0..m)
                .map(|i| format!("{} = {}", kp(i), self.key_value(i, &end[i])))
                .collect();
            p.push(format!("{} {op} {}", kp(m), self.key_value(m, &end[m])));
            p.extend(
                self.key[m + 1..nk]
                    .iter()
                    .filter(|c| !c.not_null)
                    .map(|c| format!("{} IS NOT NULL", Self::col_ref(c))),
            );
            p
        };
        // `>` on the columns before the last, `>=` on the last: the tail is at least `lo`'s.
        let ge = |m: usize| if m + 1 == nk { ">=" } else { ">" };
        let mut out: Vec<Vec<String>> = Vec::new();
        match (lo, hi) {
            (None, None) => out.push(
                self.key[..nk]
                    .iter()
                    .map(|c| format!("{} IS NOT NULL", Self::col_ref(c)))
                    .collect(),
            ),
            (Some(a), None) => out.extend((0..nk).map(|m| piece(a, m, ge(m)))),
            (None, Some(b)) => out.extend((0..nk).map(|m| piece(b, m, "<"))),
            (Some(a), Some(b)) => {
                for j in 0..nk {
                    let guard: Vec<String> = if nk == 1 {
                        Vec::new()
                    } else {
                        (0..=j)
                            .map(|i| {
                                format!(
                                    "{} {} {}",
                                    self.key_value(i, &a[i]),
                                    if i == j { "<>" } else { "=" },
                                    self.key_value(i, &b[i])
                                )
                            })
                            .collect()
                    };
                    let mut middle = piece(a, j, ge(j));
                    middle.insert(j + 1, format!("{} < {}", kp(j), self.key_value(j, &b[j])));
                    let mut pieces = vec![middle];
                    pieces.extend((j + 1..nk).map(|m| piece(a, m, ge(m))));
                    pieces.extend((j + 1..nk).map(|m| piece(b, m, "<")));
                    for p in pieces {
                        out.push(guard.iter().cloned().chain(p).collect());
                    }
                }
            }
        }
        out.into_iter().map(|p| p.join(" AND ")).collect()
    }

    /// `SELECT {select} FROM` the table (alias `t`) for each of `pieces` (see
    /// [`TableSpec::range_pieces`]) under the `--where` filter, as one `UNION ALL`.
    pub(super) fn select_pieces(&self, select: &str, pieces: &[String]) -> String {
        pieces
            .iter()
            .map(|p| {
                format!(
                    "SELECT {select} FROM {} t{}",
                    self.table.quoted(),
                    self.where_sql(std::slice::from_ref(p))
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ")
    }

    /// SQL that is true when some key column (of those chunked) is NULL (the last chunk).
    pub(super) fn key_null_sql(&self) -> String {
        let parts: Vec<String> = self.key[..self.chunked_columns()]
            .iter()
            .map(|c| format!("{} IS NULL", Self::col_ref(c)))
            .collect();
        format!("({})", parts.join(" OR "))
    }

    /// A composite key literal `ROW($a::T1, $b::T2, ...)` from text expressions (one per
    /// key column), collated like [`TableSpec::key_expr`].
    pub(super) fn key_tuple(&self, texts: &[String]) -> String {
        let parts: Vec<String> = self
            .key
            .iter()
            .zip(texts)
            .map(|(c, t)| {
                let mut s = format!("{t}::{}", c.type_name);
                if c.collation.is_some() && !c.is_array {
                    s.push_str(" COLLATE \"C\"");
                }
                s
            })
            .collect();
        format!("ROW({})", parts.join(", "))
    }

    /// `ROW(...)` of the compared columns, as hashed in the server: each column through
    /// [`expr::pushdown_exprs`], so the server's hash equality is the client's value
    /// equality (text as bytes, intervals as stored, arrays with their dimensions, json by
    /// value, types without a hash through their canonical text).
    pub(super) fn row_expr(&self) -> String {
        let parts: Vec<String> = self
            .columns
            .iter()
            .flat_map(|c| expr::pushdown_exprs(c, Some("t")))
            .collect();
        format!("ROW({})", parts.join(", "))
    }

    /// True when ranges of the first key column in byte order can use its index: not
    /// collatable, or collated `C` / `POSIX`.
    pub(super) fn key_in_byte_order(&self) -> bool {
        Self::byte_order(&self.key[0])
    }

    /// True when chunks are ranges of one integer column (bounds sent as `int8[]`).
    pub(super) fn int_key(&self) -> bool {
        !self.composite()
            && matches!(
                types::ColumnType::effective_oid(&self.key[0]),
                oid::INT2 | oid::INT4 | oid::INT8
            )
    }

    /// The bounds parameter `$1` as an array of the key's type. A per-row cast of a
    /// parameter would be evaluated for every row, so integers travel as `int8[]`, text
    /// as `text[]`, and other types are cast once in an init-plan.
    pub(super) fn bounds_param(&self) -> String {
        let k = &self.key[0];
        if self.composite() {
            // One `text[]` per key column ($1, $2, ...), zipped into an array of rows once.
            let n = self.key.len();
            let cols: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let arrays: Vec<String> = (0..n).map(|i| format!("${}::text[]", i + 1)).collect();
            let texts: Vec<String> = cols.iter().map(|c| format!("u.{c}")).collect();
            format!(
                "(SELECT array_agg({row} ORDER BY u.o) FROM unnest({arrays}) WITH ORDINALITY AS u({cols}, o))",
                row = self.key_tuple(&texts),
                arrays = arrays.join(", "),
                cols = cols.join(", "),
            )
        } else if self.int_key() {
            "$1::int8[]".into()
        } else if matches!(
            types::ColumnType::effective_oid(k),
            oid::TEXT | oid::VARCHAR
        ) {
            "$1::text[]".into()
        } else {
            format!("(SELECT $1::text[]::{}[])", k.type_name)
        }
    }

    /// The chunk number of a row (`width_bucket` semantics, the NULL-key chunk last) as
    /// SQL, with the parameters it needs (`$1`, ...).
    pub(super) fn bucket_sql(&self, ch: &Chunking) -> (String, BucketParams) {
        let n = ch.bound_count();
        if n == 0 {
            return (
                format!("CASE WHEN {} THEN 1 ELSE 0 END", self.key_null_sql()),
                BucketParams::None,
            );
        }
        if let (Some((lo, w)), true) = (ch.arith(), self.int_key()) {
            // Evenly spread integer keys: the bounds are `lo + i·w`, so the chunk is plain
            // arithmetic (no binary search over the bounds, which costs more than hashing the
            // row). Same numbers as `width_bucket` over those bounds; the subtraction runs
            // only inside the bounds, so it never overflows.
            let last = lo + (n as i64 - 1) * w;
            let k = format!("{}::int8", TableSpec::col_ref(&self.key[0]));
            return (
                format!(
                    "COALESCE(CASE WHEN {k} < {lo}::int8 THEN 0::int8 WHEN {k} >= {last}::int8 THEN {n}::int8 \
                     ELSE ({k} - {lo}::int8) / {w}::int8 + 1 END, {})",
                    n + 1
                ),
                BucketParams::None,
            );
        }
        let params = if self.composite() {
            BucketParams::Texts(ch.tuple_text.clone())
        } else if self.int_key() {
            BucketParams::Ints(ch.int_bounds().unwrap_or_default())
        } else {
            BucketParams::Texts(vec![ch.bound_texts()])
        };
        let sql = if self.composite() {
            format!(
                "CASE WHEN {} THEN {} ELSE width_bucket({}, {}) END",
                self.key_null_sql(),
                n + 1,
                self.key_expr(),
                self.bounds_param()
            )
        } else {
            format!(
                "COALESCE(width_bucket({}, {}), {})",
                self.k0_expr(),
                self.bounds_param(),
                n + 1
            )
        };
        (sql, params)
    }

    /// The texts of bound `i`, one per chunked key column.
    pub(super) fn bound_texts(&self, ch: &Chunking, i: usize) -> Vec<String> {
        if self.composite() {
            ch.tuple_text.iter().map(|col| col[i].clone()).collect()
        } else {
            vec![ch.bound_text(i).into_owned()]
        }
    }

    /// The chunk query through the key's index ([`TableSpec::ranges_by_index`]): one
    /// aggregate per chunk over index range scans (`LATERAL` over `unnest` of the bounds,
    /// each range in the pieces of [`TableSpec::range_pieces`]), the chunks below the first
    /// and from the last bound, and the NULL-key chunk when a key column may be NULL. Rows
    /// come out in key order; no hash table, no comparison against the bounds per row.
    pub(super) fn range_summaries_sql(
        &self,
        ch: &Chunking,
    ) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
        let spec = self;
        let n = ch.bound_count();
        let nk = spec.chunked_columns();
        let h = format!(
            "hash_record_extended({}, {CHUNK_SEED}) AS h",
            spec.row_expr()
        );
        let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut lo: Vec<Vec<String>> = vec![Vec::new(); nk];
        let mut hi: Vec<Vec<String>> = vec![Vec::new(); nk];
        for c in 1..n {
            for (i, t) in spec.bound_texts(ch, c - 1).into_iter().enumerate() {
                lo[i].push(t);
            }
            for (i, t) in spec.bound_texts(ch, c).into_iter().enumerate() {
                hi[i].push(t);
            }
        }
        let arrays: Vec<String> = (0..2 * nk).map(|i| format!("${}::text[]", i + 1)).collect();
        let (lo_cols, hi_cols, names) = range_columns(nk);
        for a in lo.into_iter().chain(hi) {
            params.push(Box::new(a));
        }
        let scalar = |params: &mut Vec<Box<dyn ToSql + Sync + Send>>, i: usize| -> Vec<String> {
            let mut refs = Vec::new();
            for t in spec.bound_texts(ch, i) {
                params.push(Box::new(t));
                refs.push(format!("${}::text", params.len()));
            }
            refs
        };
        let first = scalar(&mut params, 0);
        let last = scalar(&mut params, n - 1);
        let edge = |b: usize, pieces: &[String]| -> String {
            format!(
                "SELECT ({b}::int8 << 32) | count(*), bit_xor(u.h) FROM ({}) u HAVING count(*) > 0",
                spec.select_pieces(&h, pieces)
            )
        };
        let mut parts = vec![
            edge(0, &spec.range_pieces(None, Some(&first))),
            format!(
                "SELECT (r.o << 32) | x.c, x.h FROM unnest({arrays}) WITH ORDINALITY AS r({names}, o) \
                 CROSS JOIN LATERAL (SELECT count(*) AS c, bit_xor(u.h) AS h FROM ({u}) u) x WHERE x.c > 0",
                arrays = arrays.join(", "),
                names = names.join(", "),
                u = spec.select_pieces(&h, &spec.range_pieces(Some(&lo_cols), Some(&hi_cols))),
            ),
            edge(n, &spec.range_pieces(Some(&last), None)),
        ];
        if spec.key[..nk].iter().any(|c| !c.not_null) {
            parts.push(edge(n + 1, &[spec.key_null_sql()]));
        }
        (parts.join(" UNION ALL "), params)
    }

    pub(super) fn key_select(&self) -> String {
        self.key
            .iter()
            .map(|c| expr::select_expr(c, Some("t")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The parameters of [`TableSpec::bucket_sql`].
pub(super) enum BucketParams {
    None,
    Ints(Vec<i64>),
    /// One `text[]` per key column.
    Texts(Vec<Vec<String>>),
}

impl BucketParams {
    pub(super) fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            BucketParams::None => Vec::new(),
            BucketParams::Ints(v) => vec![v as &(dyn ToSql + Sync)],
            BucketParams::Texts(v) => v.iter().map(|a| a as &(dyn ToSql + Sync)).collect(),
        }
    }
}

/// The columns of an `unnest(...) AS r(lo0.., hi0.., ...)` of chunk ranges over `nk` key
/// columns: `r.lo{i}`, `r.hi{i}`, and the names `lo0.., hi0..` to declare.
pub(super) fn range_columns(nk: usize) -> (Vec<String>, Vec<String>, Vec<String>) {
    let lo: Vec<String> = (0..nk).map(|i| format!("lo{i}")).collect();
    let hi: Vec<String> = (0..nk).map(|i| format!("hi{i}")).collect();
    let r = |v: &[String]| v.iter().map(|c| format!("r.{c}")).collect::<Vec<_>>();
    let (lo_cols, hi_cols) = (r(&lo), r(&hi));
    (lo_cols, hi_cols, lo.into_iter().chain(hi).collect())
}
