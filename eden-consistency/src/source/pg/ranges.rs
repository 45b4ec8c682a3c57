//! Queries over chosen chunks of stored [`Chunking`]s, for incremental re-checks (see
//! `docs/incremental.md`): which chunks hold rows changed since a time (through an index
//! on the tracking column), how many rows each chunk holds now (a key-only scan, an
//! index-only scan where the visibility map allows), and the pushdown digests of chosen
//! chunks only (index range scans). A partial digest of a chunk equals what
//! [`PgSource::chunk_summaries`] computes for it in pushdown mode: same row expression,
//! same seed, same bucket rule.

use tokio_postgres::types::ToSql;

use super::{CHUNK_SEED, Chunking, PgSource, TableSpec};
use crate::error::Result;
use crate::pg::ident::quote_ident;
use crate::pg::schema::Column;
use crate::row::value::Value;
use crate::source::merkle::ChunkSummary;

/// Inner chunks re-hashed per query.
const RANGES_PER_QUERY: usize = 5000;

impl TableSpec {
    /// `COALESCE(width_bucket(k0, $1), n + 1)`: the chunk of a row, as in pushdown mode.
    fn bucket_expr(&self, chunking: &Chunking) -> String {
        let n = chunking.bounds.len();
        if n == 0 {
            format!(
                "CASE WHEN {} IS NULL THEN 1 ELSE 0 END",
                TableSpec::col_ref(&self.key[0])
            )
        } else {
            format!(
                "COALESCE(width_bucket({}, {}), {})",
                self.k0_expr(),
                self.bounds_param(),
                n + 1
            )
        }
    }
}

impl PgSource<'_> {
    /// The bounds as the `$1` parameter of [`TableSpec::bucket_expr`].
    fn bounds_values(&self, chunking: &Chunking) -> Box<dyn ToSql + Sync> {
        if self.spec.int_key() {
            Box::new(
                chunking
                    .bounds
                    .iter()
                    .map(|b| if let Value::Int(x) = b { *x } else { 0 })
                    .collect::<Vec<i64>>(),
            )
        } else {
            Box::new(chunking.bounds_text.clone())
        }
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
        let n = chunking.bounds.len();
        let cond = format!(
            "t.{} >= (timestamptz 'epoch' + $2::int8 * interval '1 microsecond')::{}",
            quote_ident(&tracking.name),
            tracking.type_name
        );
        let since = since_us;
        let rows = if n == 0 {
            let sql = format!(
                "SELECT DISTINCT ({})::int4 FROM {} t{}",
                spec.bucket_expr(chunking),
                spec.table.quoted(),
                spec.where_sql(&[cond.replace("$2", "$1")])
            );
            self.query("finding changed rows of", &sql, &[&since])
                .await?
        } else {
            let sql = format!(
                "SELECT DISTINCT ({})::int4 FROM {} t{}",
                spec.bucket_expr(chunking),
                spec.table.quoted(),
                spec.where_sql(&[cond])
            );
            let b = self.bounds_values(chunking);
            self.query("finding changed rows of", &sql, &[b.as_ref(), &since])
                .await?
        };
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
        let n = chunking.bounds.len();
        let sql = format!(
            "SELECT ({})::int4, count(*) FROM {} t{} GROUP BY 1",
            spec.bucket_expr(chunking),
            spec.table.quoted(),
            spec.where_sql(&[])
        );
        let rows = if n == 0 {
            self.query("counting rows of", &sql, &[]).await?
        } else {
            let b = self.bounds_values(chunking);
            self.query("counting rows of", &sql, &[b.as_ref()]).await?
        };
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
            let bucket = spec.bucket_expr(chunking);
            let wanted: Vec<i32> = chunks.iter().map(|&c| c as i32).collect();
            let sql = format!(
                "SELECT b, count(*), bit_xor(h) FROM (SELECT ({bucket})::int4 AS b, {hash} AS h FROM {tbl} t{w}) s \
                 WHERE b = ANY({p}::int4[]) GROUP BY b",
                w = spec.where_sql(&[]),
                p = if n == 0 { "$1" } else { "$2" },
            );
            let rows = if n == 0 {
                self.query("hashing changed chunks of", &sql, &[&wanted])
                    .await?
            } else {
                let b = self.bounds_values(chunking);
                self.query("hashing changed chunks of", &sql, &[b.as_ref(), &wanted])
                    .await?
            };
            push(&rows, &mut out);
        } else {
            let k0 = spec.k0_expr();
            let ty = &spec.key[0].type_name;
            let (mut lo, mut hi, mut idx) = (Vec::new(), Vec::new(), Vec::new());
            for &c in chunks {
                if c == 0 || c == n || c == n + 1 {
                    let (cond, param) = if c == 0 {
                        (
                            format!("{k0} < $1::text::{ty}"),
                            Some(&chunking.bounds_text[0]),
                        )
                    } else if c == n {
                        (
                            format!("{k0} >= $1::text::{ty}"),
                            Some(&chunking.bounds_text[n - 1]),
                        )
                    } else {
                        (
                            format!("{} IS NULL", TableSpec::col_ref(&spec.key[0])),
                            None,
                        )
                    };
                    let sql = format!(
                        "SELECT {c}::int4, count(*), bit_xor({hash}) FROM {tbl} t{w}",
                        w = spec.where_sql(&[cond])
                    );
                    let rows = match param {
                        Some(p) => self.query("hashing changed chunks of", &sql, &[p]).await?,
                        None => self.query("hashing changed chunks of", &sql, &[]).await?,
                    };
                    push(&rows, &mut out);
                } else {
                    lo.push(chunking.bounds_text[c - 1].clone());
                    hi.push(chunking.bounds_text[c].clone());
                    idx.push(c as i32);
                }
            }
            for ((lo, hi), idx) in lo
                .chunks(RANGES_PER_QUERY)
                .zip(hi.chunks(RANGES_PER_QUERY))
                .zip(idx.chunks(RANGES_PER_QUERY))
            {
                let sql = format!(
                    "SELECT r.i, count(x.h), bit_xor(x.h) FROM unnest($1::text[], $2::text[], $3::int4[]) AS r(lo, hi, i) \
                     CROSS JOIN LATERAL (SELECT {hash} AS h FROM {tbl} t{w}) x GROUP BY r.i",
                    w = spec
                        .where_sql(&[format!("{k0} >= r.lo::{ty}"), format!("{k0} < r.hi::{ty}")]),
                );
                let rows = self
                    .query(
                        "hashing changed chunks of",
                        &sql,
                        &[&lo.to_vec(), &hi.to_vec(), &idx.to_vec()],
                    )
                    .await?;
                push(&rows, &mut out);
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
