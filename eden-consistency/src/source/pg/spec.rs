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
    /// `C`/`POSIX`), so that its ranges can use the key's index.
    ///
    /// **Off for now** ([`WHOLE_KEY_CHUNKS`]): on PostgreSQL 15 a B-tree scan bounded by
    /// `ROW(k1, k2) < ROW($3, $4)` does not stop at the upper bound inside the same first
    /// column value, so each chunk's index range scan read on to the end of that value
    /// (26 ms per chunk for a 4-value first column at 1M rows: minutes per table). Ranges
    /// must first be expanded into plain per-column conditions (`k1 = $1 AND k2 >= $2 AND
    /// k2 < $4` when both bounds share the first value).
    pub(super) fn composite(&self) -> bool {
        WHOLE_KEY_CHUNKS && self.key.len() > 1 && self.key.iter().all(Self::byte_order)
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

    /// SQL that is true when some key column (of those chunked) is NULL (the last chunk).
    pub(super) fn key_null_sql(&self) -> String {
        let n = if self.composite() { self.key.len() } else { 1 };
        let parts: Vec<String> = self.key[..n]
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
        let n = ch.bounds.len();
        if n == 0 {
            return (
                format!("CASE WHEN {} THEN 1 ELSE 0 END", self.key_null_sql()),
                BucketParams::None,
            );
        }
        if let (Some((lo, w)), true) = (ch.arith, self.int_key()) {
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
            BucketParams::Ints(
                ch.bounds
                    .iter()
                    .map(|b| if let Value::Int(x) = b { *x } else { 0 })
                    .collect(),
            )
        } else {
            BucketParams::Texts(vec![ch.bounds_text.clone()])
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
            vec![ch.bounds_text[i].clone()]
        }
    }

    /// The chunk query through the key's index ([`TableSpec::ranges_by_index`]): one
    /// aggregate per chunk over an index range scan (`LATERAL` over `unnest` of the
    /// bounds), the chunks below the first and from the last bound, and the NULL-key chunk
    /// when a key column may be NULL. Rows come out in key order; no hash table, no
    /// comparison against the bounds per row.
    pub(super) fn range_summaries_sql(
        &self,
        ch: &Chunking,
    ) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
        let spec = self;
        let n = ch.bounds.len();
        let nk = if spec.composite() { spec.key.len() } else { 1 };
        let kx = spec.key_expr();
        let ty = &spec.key[0].type_name;
        let h = format!("hash_record_extended({}, {CHUNK_SEED})", spec.row_expr());
        let tbl = spec.table.quoted();
        let tuple = |texts: Vec<String>| -> String {
            if spec.composite() {
                spec.key_tuple(&texts)
            } else {
                format!("{}::{ty}", texts[0])
            }
        };
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
        let lo_cols: Vec<String> = (0..nk).map(|i| format!("r.lo{i}")).collect();
        let hi_cols: Vec<String> = (0..nk).map(|i| format!("r.hi{i}")).collect();
        let names: Vec<String> = (0..nk)
            .map(|i| format!("lo{i}"))
            .chain((0..nk).map(|i| format!("hi{i}")))
            .collect();
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
        let edge = |b: usize, cond: String| -> String {
            format!(
                "SELECT ({b}::int8 << 32) | count(*), bit_xor({h}) FROM {tbl} t{w} HAVING count(*) > 0",
                w = spec.where_sql(&[cond])
            )
        };
        let mut parts = vec![
            edge(0, format!("{kx} < {}", tuple(first))),
            format!(
                "SELECT (r.o << 32) | x.c, x.h FROM unnest({arrays}) WITH ORDINALITY AS r({names}, o) \
                 CROSS JOIN LATERAL (SELECT count(*) AS c, bit_xor({h}) AS h FROM {tbl} t{w}) x WHERE x.c > 0",
                arrays = arrays.join(", "),
                names = names.join(", "),
                w = spec.where_sql(&[
                    format!("{kx} >= {}", tuple(lo_cols)),
                    format!("{kx} < {}", tuple(hi_cols)),
                ]),
            ),
            edge(n, format!("{kx} >= {}", tuple(last))),
        ];
        if spec.key[..nk].iter().any(|c| !c.not_null) {
            parts.push(edge(n + 1, spec.key_null_sql()));
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
