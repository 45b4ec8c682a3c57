//! Queries over chosen chunks of stored [`Chunking`]s, for incremental re-checks (see
//! `docs/incremental.md`): which chunks hold rows changed since a time (through an index
//! on the tracking column), how many rows each chunk holds now (a key-only scan, an
//! index-only scan where the visibility map allows), and the pushdown digests of chosen
//! chunks only (index range scans). A partial digest of a chunk equals what
//! [`PgSource::chunk_summaries`] computes for it in pushdown mode: same row expression,
//! same seed, same bucket rule.

use tokio_postgres::types::ToSql;

use super::{CHUNK_SEED, Chunking, PgSource};
use crate::error::Result;
use crate::pg::ident::quote_ident;
use crate::pg::schema::Column;
use crate::source::merkle::ChunkSummary;

/// Inner chunks re-hashed per query.
const RANGES_PER_QUERY: usize = 5000;

impl PgSource<'_> {
    /// The chunks holding a row whose `tracking` column is at least `since_us`
    /// (microseconds since the Unix epoch, UTC), under the `--where` filter.
    pub(crate) async fn changed_chunks(
        &mut self,
        chunking: &Chunking,
        tracking: &Column,
        since_us: i64,
    ) -> Result<Vec<usize>> {
        let spec = self.spec.clone();
        let cond = format!(
            "t.{} >= (timestamptz 'epoch' + $1::int8 * interval '1 microsecond')::{}",
            quote_ident(&tracking.name),
            tracking.type_name
        );
        let (bucket, params) = spec.bucket_sql(chunking);
        let np = params.refs().len();
        let sql = format!(
            "SELECT DISTINCT ({bucket})::int4 FROM {} t{}",
            spec.table.quoted(),
            spec.where_sql(&[cond.replace("$1", &format!("${}", np + 1))])
        );
        let mut refs = params.refs();
        refs.push(&since_us);
        let rows = self.query("finding changed rows of", &sql, &refs).await?;
        let mut out: Vec<usize> = rows
            .iter()
            .map(|r| r.get::<_, i32>(0).max(0) as usize)
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Rows per chunk now (length `chunking.len()`), reading only the first key column.
    pub(crate) async fn chunk_counts(&mut self, chunking: &Chunking) -> Result<Vec<u64>> {
        let spec = self.spec.clone();
        let (bucket, params) = spec.bucket_sql(chunking);
        let sql = format!(
            "SELECT ({bucket})::int4, count(*) FROM {} t{} GROUP BY 1",
            spec.table.quoted(),
            spec.where_sql(&[])
        );
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

    /// The pushdown summaries of the chunks `chunks` only (each chunk read through the
    /// key's index where it is in byte order).
    pub(crate) async fn summaries_of(
        &mut self,
        chunking: &Chunking,
        chunks: &[usize],
    ) -> Result<Vec<(usize, ChunkSummary)>> {
        let spec = self.spec.clone();
        let n = chunking.bounds.len();
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
        if n == 0 || !spec.key_in_byte_order() {
            // One scan, keeping the wanted chunks.
            let (bucket, params) = spec.bucket_sql(chunking);
            let wanted: Vec<i32> = chunks.iter().map(|&c| c as i32).collect();
            let sql = format!(
                "SELECT b, count(*), bit_xor(h) FROM (SELECT ({bucket})::int4 AS b, {hash} AS h FROM {tbl} t{w}) s \
                 WHERE b = ANY(${p}::int4[]) GROUP BY b",
                w = spec.where_sql(&[]),
                p = params.refs().len() + 1,
            );
            let mut refs = params.refs();
            refs.push(&wanted);
            let rows = self.query("hashing changed chunks of", &sql, &refs).await?;
            push(&rows, &mut out);
        } else {
            let nk = spec.chunked_columns();
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
            let lo_cols: Vec<String> = (0..nk).map(|i| format!("r.lo{i}")).collect();
            let hi_cols: Vec<String> = (0..nk).map(|i| format!("r.hi{i}")).collect();
            let names: Vec<String> = (0..nk)
                .map(|i| format!("lo{i}"))
                .chain((0..nk).map(|i| format!("hi{i}")))
                .collect();
            let arrays: Vec<String> = (0..=2 * nk)
                .map(|i| {
                    format!(
                        "${}::{}[]",
                        i + 1,
                        if i == 2 * nk { "int4" } else { "text" }
                    )
                })
                .collect();
            let sql = format!(
                "SELECT r.i, count(x.h), bit_xor(x.h) FROM unnest({arrays}) AS r({names}, i) \
                 CROSS JOIN LATERAL ({u}) x GROUP BY r.i",
                arrays = arrays.join(", "),
                names = names.join(", "),
                u = spec.select_pieces(&hash, &spec.range_pieces(Some(&lo_cols), Some(&hi_cols))),
            );
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
                     WHERE i.indrelid = $1::text::regclass AND a.attname = $2 AND i.indpred IS NULL)",
            now = us("now()"),
            xs = us("min(xact_start)"),
        );
        let name = spec.table.quoted();
        let col = tracking.map(|c| c.name.clone()).unwrap_or_default();
        let rows = self
            .query("reading the change marks of", &sql, &[&name, &col])
            .await?;
        let r = &rows[0];
        Ok(RegionMarks {
            txn_start_us: r.get(0),
            oldest_xact_us: r.get(1),
            max_tracking_us: r.get(2),
            system_id: r.get(3),
            filenodes: r.get::<_, Option<String>>(4).unwrap_or_default(),
            tracking_indexed: r.get(5),
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
}
