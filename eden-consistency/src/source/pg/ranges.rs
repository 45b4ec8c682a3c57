//! Queries over chosen chunks of stored [`Chunking`]s, for incremental re-checks (see
//! `docs/incremental.md`): which chunks hold rows changed since a time (through an index
//! on the tracking column), how many rows some key ranges hold now (one index range scan
//! per range through the key's index, an index-only scan where the visibility map allows;
//! or, without a usable index, one scan grouping the rows by range), and the pushdown
//! digests of chosen chunks only (index range scans). A partial digest of a chunk equals
//! what [`PgSource::chunk_summaries`] computes for it in pushdown mode: same row
//! expression, same seed, same bucket rule.

use tokio_postgres::types::ToSql;

use super::{CHUNK_SEED, Chunking, PgSource, TableSpec};
use crate::error::Result;
use crate::pg::ident::quote_ident;
use crate::pg::schema::Column;
use crate::source::merkle::ChunkSummary;

/// Inner chunks re-hashed per query.
const RANGES_PER_QUERY: usize = 5000;
/// Chunks counted per query.
const COUNTS_PER_QUERY: usize = 20000;

impl PgSource<'_> {
    /// True when the table is chunked by its whole (composite) key.
    pub(crate) fn whole_key_chunks(&self) -> bool {
        self.spec.composite()
    }

    /// The chunks holding a row whose `tracking` column is at least `since_us`
    /// (microseconds since the Unix epoch, UTC), under the `--where` filter.
    pub(crate) async fn changed_chunks(
        &mut self,
        chunking: &Chunking,
        tracking: &Column,
        since_us: i64,
    ) -> Result<Vec<usize>> {
        let spec = self.spec.clone();
        let (bucket, params) = spec.bucket_sql(chunking);
        let mut refs = params.refs();
        refs.push(&since_us);
        let cond = format!(
            "t.{} >= (timestamptz 'epoch' + ${}::int8 * interval '1 microsecond')::{}",
            quote_ident(&tracking.name),
            refs.len(),
            tracking.type_name
        );
        let sql = format!(
            "SELECT DISTINCT ({bucket})::int4 FROM {} t{}",
            spec.table.quoted(),
            spec.where_sql(&[cond])
        );
        self.counting_settings().await;
        let rows = self.query("finding changed rows of", &sql, &refs).await?;
        let mut out: Vec<usize> = rows
            .iter()
            .map(|r| r.get::<_, i32>(0).max(0) as usize)
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Rows per chunk now (length `chunking.len()`), reading only the first key column:
    /// one scan grouping every row by its chunk ([`TableSpec::bucket_sql`]: arithmetic
    /// for evenly spaced integer bounds, else `width_bucket`). Meant for a coarse chunking
    /// (about a thousand bounds); without an index on the key, the fallback of
    /// [`PgSource::range_counts`].
    pub(crate) async fn chunk_counts(&mut self, chunking: &Chunking) -> Result<Vec<u64>> {
        let spec = self.spec.clone();
        let (bucket, params) = spec.bucket_sql(chunking);
        let sql = format!(
            "SELECT ({bucket})::int4, count(*) FROM {} t{} GROUP BY 1",
            spec.table.quoted(),
            spec.where_sql(&[])
        );
        self.counting_settings().await;
        let rows = self.query("counting rows of", &sql, &params.refs()).await?;
        let mut out = vec![0u64; chunking.len()];
        for r in &rows {
            let b = r.get::<_, i32>(0).max(0) as usize;
            if let Some(c) = out.get_mut(b) {
                *c = r.get::<_, i64>(1).max(0) as u64;
            }
        }
        Ok(out)
    }

    /// No JIT for the counting queries (compiling costs more than they run), and a hash
    /// aggregate rather than a sort.
    async fn counting_settings(&mut self) {
        let _ = self
            .client
            .batch_execute("SET LOCAL jit = off; SET LOCAL enable_sort = off")
            .await;
    }

    /// Rows now in each of the chunks `chunks` (in the order given), one index range
    /// scan of the first key column per chunk (an index-only scan where the visibility map
    /// allows): no per-row comparison against the bounds, no aggregate over the table.
    /// Needs a B-tree index leading with the key in byte order
    /// ([`RegionMarks::key_indexed`]).
    pub(crate) async fn range_counts(
        &mut self,
        chunking: &Chunking,
        chunks: &[usize],
    ) -> Result<Vec<u64>> {
        let spec = self.spec.clone();
        let n = chunking.bound_count();
        let k0 = spec.k0_expr();
        let ty = &spec.key[0].type_name;
        let tbl = spec.table.quoted();
        let mut out: std::collections::HashMap<usize, u64> = std::collections::HashMap::new();
        let (mut lo, mut hi, mut idx) = (Vec::new(), Vec::new(), Vec::new());
        self.counting_settings().await;
        for &c in chunks {
            if c >= 1 && c < n {
                lo.push(chunking.bound_text(c - 1).into_owned());
                hi.push(chunking.bound_text(c).into_owned());
                idx.push(c as i32);
                continue;
            }
            let (cond, param) = if c == n + 1 {
                if spec.key[0].not_null {
                    out.insert(c, 0);
                    continue;
                }
                (
                    format!("{} IS NULL", TableSpec::col_ref(&spec.key[0])),
                    None,
                )
            } else if n == 0 {
                (
                    format!("{} IS NOT NULL", TableSpec::col_ref(&spec.key[0])),
                    None,
                )
            } else if c == 0 {
                (
                    format!("{k0} < $1::text::{ty}"),
                    Some(chunking.bound_text(0).into_owned()),
                )
            } else if c == n {
                (
                    format!("{k0} >= $1::text::{ty}"),
                    Some(chunking.bound_text(n - 1).into_owned()),
                )
            } else {
                continue;
            };
            let sql = format!("SELECT count(*) FROM {tbl} t{}", spec.where_sql(&[cond]));
            let rows = match param {
                Some(p) => self.query("counting rows of", &sql, &[&p]).await?,
                None => self.query("counting rows of", &sql, &[]).await?,
            };
            out.insert(c, rows[0].get::<_, i64>(0).max(0) as u64);
        }
        for ((lo, hi), idx) in lo
            .chunks(COUNTS_PER_QUERY)
            .zip(hi.chunks(COUNTS_PER_QUERY))
            .zip(idx.chunks(COUNTS_PER_QUERY))
        {
            let sql = format!(
                "SELECT r.i, (SELECT count(*) FROM {tbl} t{w}) FROM unnest($1::text[], $2::text[], $3::int4[]) AS r(lo, hi, i)",
                w = spec.where_sql(&[format!("{k0} >= r.lo::{ty}"), format!("{k0} < r.hi::{ty}")]),
            );
            let rows = self
                .query(
                    "counting rows of",
                    &sql,
                    &[&lo.to_vec(), &hi.to_vec(), &idx.to_vec()],
                )
                .await?;
            for r in &rows {
                out.insert(
                    r.get::<_, i32>(0).max(0) as usize,
                    r.get::<_, i64>(1).max(0) as u64,
                );
            }
        }
        Ok(chunks
            .iter()
            .map(|c| out.get(c).copied().unwrap_or(0))
            .collect())
    }

    /// The pushdown summaries of the chunks `chunks` only: each chunk read through the
    /// key's index when `by_index` (a B-tree index leads with the key in byte order,
    /// [`RegionMarks::key_indexed`]), else one scan keeping the wanted chunks.
    pub(crate) async fn summaries_of(
        &mut self,
        chunking: &Chunking,
        chunks: &[usize],
        by_index: bool,
    ) -> Result<Vec<(usize, ChunkSummary)>> {
        let spec = self.spec.clone();
        let n = chunking.bound_count();
        let hash = format!("hash_record_extended({}, {CHUNK_SEED})", spec.row_expr());
        let tbl = spec.table.quoted();
        let mut out: Vec<(usize, ChunkSummary)> = Vec::new();
        let push = |rows: &[tokio_postgres::Row], out: &mut Vec<(usize, ChunkSummary)>| {
            for r in rows {
                let b = r.get::<_, i32>(0).max(0) as usize;
                let c: i64 = r.get(1);
                let h: Option<i64> = r.get(2);
                out.push((
                    b,
                    ChunkSummary {
                        count: c.max(0) as u64,
                        hash: h.unwrap_or(0) as u64 as u128,
                    },
                ));
            }
        };
        if n == 0 || !by_index || !spec.key_in_byte_order() {
            // One scan, keeping the wanted chunks.
            let (bucket, params) = spec.bucket_sql(chunking);
            let wanted: Vec<i32> = chunks.iter().map(|&c| c as i32).collect();
            let mut refs = params.refs();
            refs.push(&wanted);
            let sql = format!(
                "SELECT b, count(*), bit_xor(h) FROM (SELECT ({bucket})::int4 AS b, {hash} AS h FROM {tbl} t{w}) s \
                 WHERE b = ANY(${p}::int4[]) GROUP BY b",
                w = spec.where_sql(&[]),
                p = refs.len(),
            );
            let rows = self.query("hashing changed chunks of", &sql, &refs).await?;
            push(&rows, &mut out);
        } else {
            let nk = spec.chunked_columns();
            let row_hash = hash.clone();
            let hash = format!("{hash} AS h");
            let (mut lo, mut hi, mut idx) =
                (vec![Vec::new(); nk], vec![Vec::new(); nk], Vec::new());
            for &c in chunks {
                if c == 0 || c == n || c == n + 1 {
                    let ends: Vec<String> = (1..=nk).map(|i| format!("${i}::text")).collect();
                    let (pieces, texts) = if c == 0 {
                        (
                            spec.range_pieces(None, Some(&ends)),
                            spec.bound_texts(chunking, 0),
                        )
                    } else if c == n {
                        (
                            spec.range_pieces(Some(&ends), None),
                            spec.bound_texts(chunking, n - 1),
                        )
                    } else {
                        (vec![spec.key_null_sql()], Vec::new())
                    };
                    let sql = format!(
                        "SELECT {c}::int4, count(*), bit_xor(u.h) FROM ({}) u",
                        spec.select_pieces(&hash, &pieces)
                    );
                    let refs: Vec<&(dyn ToSql + Sync)> =
                        texts.iter().map(|t| t as &(dyn ToSql + Sync)).collect();
                    let rows = self.query("hashing changed chunks of", &sql, &refs).await?;
                    push(&rows, &mut out);
                } else {
                    for (i, t) in spec.bound_texts(chunking, c - 1).into_iter().enumerate() {
                        lo[i].push(t);
                    }
                    for (i, t) in spec.bound_texts(chunking, c).into_iter().enumerate() {
                        hi[i].push(t);
                    }
                    idx.push(c as i32);
                }
            }
            let (lo_cols, hi_cols, names) = super::spec::range_columns(nk);
            let arrays: Vec<String> = (0..=2 * nk)
                .map(|i| {
                    format!(
                        "${}::{}[]",
                        i + 1,
                        if i == 2 * nk { "int4" } else { "text" }
                    )
                })
                .collect();
            let sql = if nk == 1 {
                // One key column: the aggregate runs inside each chunk's index range scan.
                let k0 = spec.k0_expr();
                let ty = &spec.key[0].type_name;
                format!(
                    "SELECT r.i, x.c, x.h FROM unnest($1::text[], $2::text[], $3::int4[]) AS r(lo0, hi0, i) \
                     CROSS JOIN LATERAL (SELECT count(*) AS c, bit_xor({row_hash}) AS h FROM {tbl} t{w}) x \
                     WHERE x.c > 0",
                    w = spec.where_sql(&[
                        format!("{k0} >= r.lo0::{ty}"),
                        format!("{k0} < r.hi0::{ty}")
                    ]),
                )
            } else {
                format!(
                    "SELECT r.i, count(x.h), bit_xor(x.h) FROM unnest({arrays}) AS r({names}, i) \
                     CROSS JOIN LATERAL ({u}) x GROUP BY r.i",
                    arrays = arrays.join(", "),
                    names = names.join(", "),
                    u = spec
                        .select_pieces(&hash, &spec.range_pieces(Some(&lo_cols), Some(&hi_cols))),
                )
            };
            let mut start = 0;
            while start < idx.len() {
                let end = (start + RANGES_PER_QUERY).min(idx.len());
                let slices: Vec<Vec<String>> = lo
                    .iter()
                    .chain(&hi)
                    .map(|a| a[start..end].to_vec())
                    .collect();
                let ids = idx[start..end].to_vec();
                let mut refs: Vec<&(dyn ToSql + Sync)> =
                    slices.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
                refs.push(&ids);
                let rows = self.query("hashing changed chunks of", &sql, &refs).await?;
                push(&rows, &mut out);
                start = end;
            }
        }
        self.stats.chunks += chunks.len() as u64;
        self.stats.rows_read += out.iter().map(|(_, s)| s.count).sum::<u64>();
        Ok(out)
    }

    /// What the incremental state remembers of this region at the current snapshot:
    /// the transaction's start (no later than the snapshot), the oldest write transaction
    /// still running that this role can see, the newest tracking value (finite ones only),
    /// the server's system identifier (when this role may read it) and the table's storage
    /// files (a TRUNCATE, VACUUM FULL or restore changes them). Times in microseconds since
    /// the Unix epoch.
    pub(crate) async fn incremental_marks(
        &mut self,
        tracking: Option<&Column>,
    ) -> Result<RegionMarks> {
        let spec = self.spec.clone();
        let us = |e: &str| format!("(extract(epoch FROM ({e})::timestamptz) * 1000000)::int8");
        let max_tracking = match tracking {
            Some(c) => format!(
                "(SELECT CASE WHEN isfinite(m) THEN {} END FROM (SELECT max(t.{}) AS m FROM {} t) s)",
                us("m"),
                quote_ident(&c.name),
                spec.table.quoted()
            ),
            None => "NULL::int8".into(),
        };
        let sql = format!(
            "SELECT {now}, \
             (SELECT {xs} FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()), \
             {max_tracking}, \
             CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') \
                  THEN (SELECT system_identifier::text FROM pg_control_system()) END, \
             (SELECT string_agg(COALESCE(pg_relation_filenode(r)::text, '-'), ',' ORDER BY r::oid) \
                FROM (SELECT $1::text::regclass AS r UNION SELECT relid FROM pg_partition_tree($1::text::regclass)) p), \
             EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
                       ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                     WHERE i.indrelid = $1::text::regclass AND a.attname = $2 AND i.indpred IS NULL), \
             EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
                       ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                     JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam \
                     JOIN pg_opclass oc ON oc.oid = i.indclass[0] \
                     WHERE i.indrelid = $1::text::regclass AND a.attname = $3 AND i.indpred IS NULL \
                       AND am.amname = 'btree' AND oc.opcdefault \
                       AND (i.indcollation[0] = 0 OR i.indcollation[0] IN \
                            (SELECT oid FROM pg_collation WHERE collname IN ('C', 'POSIX', 'ucs_basic'))))",
            now = us("now()"),
            xs = us("min(xact_start)"),
        );
        let name = spec.table.quoted();
        let col = tracking.map(|c| c.name.clone()).unwrap_or_default();
        let key = spec.key[0].name.clone();
        let rows = self
            .query("reading the change marks of", &sql, &[&name, &col, &key])
            .await?;
        let r = &rows[0];
        Ok(RegionMarks {
            txn_start_us: r.get(0),
            oldest_xact_us: r.get(1),
            max_tracking_us: r.get(2),
            system_id: r.get(3),
            filenodes: r.get::<_, Option<String>>(4).unwrap_or_default(),
            tracking_indexed: r.get(5),
            key_indexed: spec.key_in_byte_order() && r.get::<_, bool>(6),
        })
    }
}

/// See [`PgSource::incremental_marks`].
#[derive(Debug, Clone)]
pub(crate) struct RegionMarks {
    /// `now()` of the reading transaction.
    pub txn_start_us: i64,
    /// The oldest running write transaction's start, when visible.
    pub oldest_xact_us: Option<i64>,
    /// The newest finite tracking value.
    pub max_tracking_us: Option<i64>,
    /// `pg_control_system().system_identifier`, when readable.
    pub system_id: Option<String>,
    /// The table's (and partitions') file nodes.
    pub filenodes: String,
    /// An index (not partial) leads with the tracking column.
    pub tracking_indexed: bool,
    /// A B-tree index (not partial, default operator class) leads with the first key
    /// column, which is in byte order (not collatable, or collated `C`): key ranges can
    /// be read through it ([`PgSource::range_counts`]).
    pub key_indexed: bool,
}
