//! Keyed sources: where the diff engine gets chunk digests, per-row digests and rows.
//!
//! The engine ([`crate::check`]) serves any *keyed source*: something that, for aligned key
//! ranges ([`Chunking`]), can give a digest per range ([`ChunkSummary`]: count and combined
//! hash), the `(key, 128-bit row digest)` pairs of chosen ranges, and the full rows of
//! chosen keys ([`KeyedSource`]). PostgreSQL tables are served by [`PgSource`]; other
//! stores (Redis keyspaces, stored trees) can implement the same trait.
//!
//! # PostgreSQL, two modes
//!
//! * **pushdown**: the server does the hashing; one scan per region and table:
//!   `SELECT chunk(k), count(*), bit_xor(hash_record_extended(ROW(cols), 1))
//!   FROM t GROUP BY 1` (`chunk(k)` is `width_bucket(k, $bounds)` or, for evenly spread
//!   integer keys, arithmetic; see "Speed of the chunk query"), so only a few bytes per chunk cross the network. Rows of differing
//!   chunks are then read through the key's index (a `LATERAL` join over `unnest($lo, $hi)`
//!   ranges, never LIMIT/OFFSET) as `(key, hash_record_extended(.., 1), hash_record_extended(.., 2))`:
//!   128 bits per row. Seeds are never 0: with seed 0 a float `0.0` hashes like a NULL field. Columns are hashed in a canonical order (sorted by name, excluded
//!   columns dropped), so column order and dropped columns never matter; collatable columns
//!   are hashed `COLLATE "C"` (bytes, whatever the region's collation); `json` is hashed as
//!   `jsonb` (by value); a type without a hash operator class is hashed through its text
//!   form, which is canonical because every session runs with `TimeZone=UTC`,
//!   `DateStyle=ISO`, `IntervalStyle=postgres`, `extra_float_digits=3` (see
//!   [`crate::pg::connect`]). The chunk level keeps 64 bits per chunk (plus the count); a
//!   false "equal" chunk needs a 2^-64 collision.
//! * **stream**: `COPY (SELECT cols FROM t) TO STDOUT (FORMAT binary)`; every row is
//!   hashed client-side with blake3 ([`crate::row::digest`]) on a thread per region, while the
//!   bytes keep arriving; each row is put in its chunk by comparing its key
//!   with the bounds as values ([`Value::compare`], text in byte order, the same as
//!   `COLLATE "C"`).
//!
//! Both modes then fetch the differing keys' rows and compare them column by column as
//! values ([`crate::row::digest::encode_value`] bytes), which names `changed_columns` and drops
//! any row whose hash differed while its values are equal, so both modes report the same
//! differences. Columns are hashed through [`expr::pushdown_exprs`], which casts the types
//! whose server hash is looser than [`Value`] equality (intervals, arrays' bounds, money,
//! types without a hash) so that the two equalities agree.
//!
//! # Chunks
//!
//! Chunks are ranges of the **key**, identical in every region: of its only column, or of
//! the whole composite key compared column by column (when all its columns are in byte
//! order), so a composite key whose first column has few values still gets small, even
//! chunks. A range of a composite key is read as disjoint pieces of plain per-column
//! conditions (`k1 = $1 AND k2 >= $2 AND k2 < $4` when both bounds share the first value;
//! see [`TableSpec::range_pieces`]), never as a row comparison, whose upper end does not
//! stop a B-tree scan on PostgreSQL 15. The
//! bounds are taken from the first region (all keys of a small table, else a
//! `TABLESAMPLE SYSTEM` sample; for integer keys a small sample plus the true min/max,
//! split by interpolation between sampled quantiles), sorted by value (`COLLATE "C"` for
//! text), and sent to every region. Chunk `i` holds `bounds[i-1] <= k < bounds[i]`
//! (`width_bucket` semantics); chunk `bounds.len() + 1` holds keys with a NULL column
//! (possible only with configured `key_columns`). The chunk size is adaptive: about
//! `sqrt(N)`-proportional so that the chunk digests and the rows of differing chunks
//! together stay near 1 % of the table's bytes at 0.1 % drift (see [`target_chunks`]).
//!
//! # Speed of the chunk query
//!
//! The floor is the server reading and hashing every row once
//! (`SELECT sum(hash_record_extended(t, 0)) FROM t`); the chunk query adds only the chunk
//! number and a hash aggregate with one group per chunk:
//!
//! * **Integer keys spread evenly** (the sample's distribution is within 0.2 of uniform,
//!   Kolmogorov-Smirnov) get evenly spaced bounds `lo + i·width`, and the chunk number is
//!   int8 arithmetic, equal to `width_bucket` over those bounds ([`even_chunking`]).
//!   `width_bucket` over ~40k bounds is a binary search of fmgr comparisons per row and
//!   cost as much CPU as hashing the row itself; other keys still use it.
//! * The planner guesses one group per key, so it would sort whole rows (spilling hundreds
//!   of MB) or size hash tables for millions of groups; the query runs with
//!   `enable_sort = off`, `work_mem` sized for the chunk count and `jit = off` (JIT
//!   compilation cost ~90 ms per process at 1M rows and gained nothing), all `SET LOCAL` in
//!   the read-only snapshot transaction. Parallel workers stay on: each runs a partial
//!   aggregate over its share of the pages.
//! * The server sorts its one row per chunk (`ORDER BY 1` over the aggregate: about 3 %
//!   of the query at 30M rows, 0.8 s of 24 s), so that every region's chunk rows stream to the engine
//!   in chunk order and are compared as they arrive: the client keeps no per-chunk
//!   summaries ([`KeyedSource::ordered_summaries`]). Evenly spaced bounds are kept as
//!   three numbers, other integer bounds as one `i64` each, text bounds as one string
//!   each ([`Chunking`]), so the
//!   client's memory does not grow with the table for an evenly spread integer key.
//! * Rows of differing chunks are read through the key's index, one range scan per chunk
//!   (per piece of a composite key's range; `LATERAL` over `unnest` of the bounds), when
//!   the key is in byte order (not
//!   collatable, or collated `C`/`POSIX`); a key in another collation (the database's
//!   default included) cannot use its index for byte-order ranges, and those rows are
//!   picked by one more scan of the table instead.

mod chunking;
mod ranges;
mod sample;
mod spec;
pub(crate) use chunking::*;
pub(crate) use ranges::RegionMarks;
pub(crate) use spec::TableSpec;

use std::sync::Arc;
use std::time::Instant;

use futures_util::{StreamExt, pin_mut};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::RegionStats;
use super::keyed::{KeyedSource, PlanHint, SummaryBatch};
use crate::error::{Error, Result};
use crate::pg::copy::{self, CopyBinaryParser};
use crate::pg::ident::{TableName, quote_ident};
use crate::pg::schema::Column;
use crate::pg::types::{self, oid};
use crate::pg::{decode, expr};
use crate::row::digest::{self, ChunkDigest};
use crate::row::value::Value;
use crate::source::merkle::ChunkSummary;

/// Rows hashed per parallel batch in stream mode.
const STREAM_BATCH_ROWS: usize = 8192;

/// Seed of the per-chunk row hashes in pushdown mode (never 0: see the module docs).
const CHUNK_SEED: i64 = 1;
/// Seeds of the two 64-bit halves of a row's 128-bit hash in pushdown mode.
const ROW_SEEDS: [i64; 2] = [1, 2];

/// How digests are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Pushdown where the server supports it (PostgreSQL 14+: `hash_record_extended`),
    /// else stream.
    #[default]
    Auto,
    /// Chunk digests computed in the server.
    Pushdown,
    /// Rows streamed in binary and hashed client-side.
    Stream,
}

impl Mode {
    /// `auto`, `pushdown`, `stream`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Pushdown => "pushdown",
            Mode::Stream => "stream",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "pushdown" => Ok(Mode::Pushdown),
            "stream" => Ok(Mode::Stream),
            _ => Err(format!(
                "unknown mode '{s}' (expected auto, pushdown or stream)"
            )),
        }
    }
}

/// A row of a differing chunk: its key and 128-bit digest.
#[derive(Debug, Clone)]
pub(crate) struct KeyedRow {
    /// The chunk.
    #[allow(dead_code)]
    pub chunk: usize,
    /// Key values.
    pub key: Vec<Value>,
    /// The row digest.
    pub digest: u128,
}

/// A row fetched by key: key, compared columns' values (in [`TableSpec::columns`] order)
/// and the version time for the in-flight rule.
#[derive(Debug, Clone)]
pub(crate) struct FetchedRow {
    /// Key values.
    pub key: Vec<Value>,
    /// Key values as PostgreSQL prints them (UTC session).
    pub key_text: Vec<Option<String>>,
    /// Compared columns.
    pub values: Vec<Value>,
    /// Version time, microseconds since 2000-01-01 UTC, when known.
    pub version_time: Option<i64>,
}

/// A key of a PostgreSQL table: its values, ordered and compared by their canonical bytes
/// ([`digest::key_bytes`]). Their PostgreSQL text form, needed only as SQL parameters, is
/// made inside this module when the key is fetched.
#[derive(Debug, Clone)]
pub(crate) struct PgKey {
    /// Key values, in key order.
    pub values: Vec<Value>,
    bytes: Vec<u8>,
}

impl PgKey {
    /// The key of `values`.
    pub(crate) fn new(values: Vec<Value>) -> PgKey {
        let bytes = digest::key_bytes(&values);
        PgKey { values, bytes }
    }

    fn text(&self) -> Vec<Option<String>> {
        self.values.iter().map(|v| v.pg_text()).collect()
    }
}

impl PartialEq for PgKey {
    fn eq(&self, o: &Self) -> bool {
        self.bytes == o.bytes
    }
}
impl Eq for PgKey {}
impl PartialOrd for PgKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for PgKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&o.bytes)
    }
}

/// A PostgreSQL table in one region, read through one session (in whatever transaction
/// the caller opened, normally REPEATABLE READ READ ONLY).
pub(crate) struct PgSource<'a> {
    /// The region's name (for messages).
    pub region: String,
    client: &'a Client,
    spec: Arc<TableSpec>,
    mode: Mode,
    /// Work done so far.
    pub stats: RegionStats,
    /// Rows hashed so far, for progress.
    pub progress: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The leaf summaries, kept when range summaries are combined from them (stream mode).
    leaves: Option<Vec<ChunkSummary>>,
}

fn row_bytes(row: &tokio_postgres::Row) -> u64 {
    let mut n = 7u64;
    for i in 0..row.len() {
        n += 4 + decode::raw_column(row, i)
            .ok()
            .flatten()
            .map_or(0, |b| b.len() as u64);
    }
    n
}

impl<'a> PgSource<'a> {
    /// A source over `client` (mode must be `Pushdown` or `Stream`).
    pub(crate) fn new(
        region: &str,
        client: &'a Client,
        spec: Arc<TableSpec>,
        mode: Mode,
    ) -> PgSource<'a> {
        PgSource {
            region: region.to_string(),
            client,
            spec,
            mode,
            stats: RegionStats::default(),
            progress: None,
            leaves: None,
        }
    }

    fn qerr(&self, what: &str, e: tokio_postgres::Error) -> Error {
        Error::query(&self.region, format!("{what} {}", self.spec.table), e)
            .with_table(&self.spec.table)
    }

    async fn query(
        &mut self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let t0 = Instant::now();
        tracing::debug!(region = %self.region, sql, "query");
        let rows = self
            .client
            .query(sql, params)
            .await
            .map_err(|e| self.qerr(what, e))?;
        self.stats.bytes_received += rows.iter().map(row_bytes).sum::<u64>();
        self.stats.time_ms += t0.elapsed().as_millis() as u64;
        tracing::debug!(region = %self.region, what, rows = rows.len(), ms = t0.elapsed().as_millis() as u64, "query done");
        Ok(rows)
    }

    /// The table's size from the catalog: `(reltuples, bytes)` summed over partitions
    /// (`reltuples` is 0 when never analyzed).
    pub(crate) async fn table_size(&mut self) -> Result<(u64, u64)> {
        let sql = "SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::float8, COALESCE(sum(pg_relation_size(c.oid)), 0)::int8 \
                   FROM pg_class c WHERE c.oid = $1::text::regclass \
                      OR c.oid IN (SELECT relid FROM pg_partition_tree($1::text::regclass))";
        let name = self.spec.table.quoted();
        let rows = self.query("sizing", sql, &[&name]).await?;
        let r = &rows[0];
        Ok((
            r.get::<_, f64>(0).max(0.0) as u64,
            r.get::<_, i64>(1).max(0) as u64,
        ))
    }

    async fn pushdown_summaries(&mut self, chunking: &Chunking) -> Result<Vec<ChunkSummary>> {
        let mut out = vec![ChunkSummary::default(); chunking.len()];
        self.pushdown(chunking, SummarySink::All(&mut out)).await?;
        Ok(out)
    }

    /// The pushdown query of [`PgSource::pushdown_summaries`], its rows given to `sink` (in
    /// chunk order when the sink wants them so: the server sorts its one row per chunk).
    async fn pushdown(&mut self, chunking: &Chunking, mut sink: SummarySink<'_>) -> Result<()> {
        let spec = self.spec.clone();
        let (bucket, params) = spec.bucket_sql(chunking);
        let mut sql = format!(
            "SELECT (b::int8 << 32) | count(*), bit_xor(h) FROM \
             (SELECT {bucket} AS b, hash_record_extended({row}, {CHUNK_SEED}) AS h FROM {tbl} t{w}) s GROUP BY b",
            row = spec.row_expr(),
            tbl = spec.table.quoted(),
            w = spec.where_sql(&[]),
        );
        let mut by_range = Vec::new();
        if chunking.bound_count() > 0 && chunking.arith().is_none() && spec.ranges_by_index() {
            let (q, p) = spec.range_summaries_sql(chunking);
            sql = q;
            by_range = p;
        }
        if matches!(sink, SummarySink::Ordered(_)) {
            sql = format!("SELECT * FROM ({sql}) r ORDER BY 1");
        }
        // The planner cannot know how few chunks there are (it guesses one group per key)
        // so, left alone, it sorts the whole rows (spilling hundreds of MB) or sizes hash
        // tables for millions of groups, and it compiles the expressions with JIT (~90 ms per
        // process at 1M rows). A hash aggregate sized for the chunks, never a sort, no JIT;
        // parallel workers stay on (one partial aggregate per worker).
        let kb = (chunking.len() as u64 * 200 / 1024).clamp(4096, 1 << 20);
        let _ = self
            .client
            .batch_execute(&format!(
                "SET LOCAL jit = off; SET LOCAL enable_sort = off; SET LOCAL work_mem = '{kb}kB'"
            ))
            .await;
        let params: Vec<&(dyn ToSql + Sync)> = if by_range.is_empty() {
            params.refs()
        } else {
            by_range
                .iter()
                .map(|b| b.as_ref() as &(dyn ToSql + Sync))
                .collect()
        };
        // Streamed: one small summary kept per chunk, never the result rows.
        let t0 = Instant::now();
        tracing::debug!(region = %self.region, sql, "query");
        let stream = self
            .client
            .query_raw(sql.as_str(), params.iter().copied())
            .await
            .map_err(|e| self.qerr("hashing", e))?;
        pin_mut!(stream);
        let n = chunking.len();
        while let Some(r) = stream.next().await {
            let r = r.map_err(|e| self.qerr("hashing", e))?;
            self.stats.bytes_received += row_bytes(&r);
            let bc: i64 = r.get(0);
            let (b, c) = ((bc >> 32) as usize, bc & 0xffff_ffff);
            let h: i64 = r.get(1);
            if b >= n {
                continue;
            }
            self.stats.rows_read += c as u64;
            let s = ChunkSummary {
                count: c as u64,
                hash: h as u64 as u128,
            };
            match &mut sink {
                SummarySink::All(out) => out[b] = s,
                SummarySink::Ordered(batch) => {
                    if !batch.push(b, s).await {
                        break;
                    }
                }
            }
        }
        if let SummarySink::Ordered(batch) = sink {
            batch.flush().await;
        }
        self.stats.time_ms += t0.elapsed().as_millis() as u64;
        tracing::debug!(region = %self.region, what = "hashing", ms = t0.elapsed().as_millis() as u64, "query done");
        self.stats.chunks += chunking.len() as u64;
        Ok(())
    }

    async fn stream_summaries(&mut self, chunking: &Chunking) -> Result<Vec<ChunkSummary>> {
        let spec = self.spec.clone();
        let t0 = Instant::now();
        let cols: Vec<String> = spec
            .columns
            .iter()
            .map(|c| expr::select_expr(c, Some("t")))
            .collect();
        let oids: Vec<u32> = spec
            .columns
            .iter()
            .map(types::ColumnType::effective_oid)
            .collect();
        let key_idx: Vec<usize> = spec
            .key
            .iter()
            .map(|k| {
                spec.columns
                    .iter()
                    .position(|c| c.name == k.name)
                    .unwrap_or(0)
            })
            .collect();
        let sql = format!(
            "COPY (SELECT {} FROM {} t{}) TO STDOUT (FORMAT binary)",
            cols.join(", "),
            spec.table.quoted(),
            spec.where_sql(&[])
        );
        let stream = self
            .client
            .copy_out(sql.as_str())
            .await
            .map_err(|e| self.qerr("streaming", e))?;
        pin_mut!(stream);
        let (tx, rx) = std::sync::mpsc::sync_channel::<bytes::Bytes>(64);
        let chunking2 = chunking.clone();
        let progress = self.progress.clone();
        let worker = std::thread::spawn(move || -> Result<(Vec<ChunkDigest>, u64), String> {
            // Tuples are cut into batches as bytes arrive and each batch is hashed in
            // parallel on rayon's pool; chunk digests are sums, so the order of rows within
            // a batch does not matter.
            let mut parser = CopyBinaryParser::new();
            let mut sums = vec![ChunkDigest::default(); chunking2.len()];
            let mut n = 0u64;
            for data in rx {
                parser.push(&data);
                while let Some(batch) = parser.next_batch(STREAM_BATCH_ROWS)? {
                    let hashed = batch.par_map(|t| -> Result<(usize, digest::RowDigest), String> {
                        let mut buf = Vec::with_capacity(256);
                        let d = copy::digest_copy_tuple(&t, &oids, &mut buf)?;
                        if let [i] = key_idx[..] {
                            let v = decode::decode_wire(t.fields().nth(i).flatten(), oids[i])?;
                            return Ok((chunking2.chunk_of(&v), d));
                        }
                        let fields: Vec<Option<&[u8]>> = t.fields().collect();
                        let key = key_idx
                            .iter()
                            .map(|&i| {
                                decode::decode_wire(fields.get(i).copied().flatten(), oids[i])
                            })
                            .collect::<Result<Vec<Value>, String>>()?;
                        Ok((chunking2.chunk_of_key(&key), d))
                    });
                    for h in hashed {
                        let (chunk, d) = h?;
                        sums[chunk].add(&d);
                    }
                    n += batch.len() as u64;
                    if let Some(p) = &progress {
                        p.store(n, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            Ok((sums, n))
        });
        let mut bytes = 0u64;
        let mut failed = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(b) => {
                    bytes += b.len() as u64;
                    if tx.send(b).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    failed = Some(self.qerr("streaming", e));
                    break;
                }
            }
        }
        drop(tx);
        let res = tokio::task::spawn_blocking(move || worker.join())
            .await
            .map_err(|e| Error::Internal(format!("hashing thread failed: {e}")))?
            .map_err(|_| Error::Internal("hashing thread panicked".into()))?;
        if let Some(e) = failed {
            return Err(e);
        }
        let (sums, n) = res.map_err(|m| Error::Table {
            table: spec.table.to_string(),
            message: format!("region {}: {m}", self.region),
        })?;
        self.stats.bytes_received += bytes;
        self.stats.rows_read += n;
        self.stats.chunks += chunking.len() as u64;
        self.stats.time_ms += t0.elapsed().as_millis() as u64;
        Ok(sums
            .iter()
            .map(|c| ChunkSummary {
                count: c.count,
                hash: u128::from_le_bytes(c.acc),
            })
            .collect())
    }

    /// SQL conditions selecting the chunks `chunks`: `(lateral_ranges, others)` where
    /// lateral ranges are `(lo, hi)` bound pairs and others are single-sided conditions.
    async fn rows_of_chunks(
        &mut self,
        chunking: &Chunking,
        chunks: &[usize],
    ) -> Result<Vec<KeyedRow>> {
        let spec = self.spec.clone();
        let n = chunking.bound_count();
        let sel = match self.mode {
            Mode::Stream => spec
                .columns
                .iter()
                .map(|c| expr::select_expr(c, Some("t")))
                .collect::<Vec<_>>()
                .join(", "),
            _ => format!(
                "hash_record_extended({r}, {s0}), hash_record_extended({r}, {s1})",
                r = spec.row_expr(),
                s0 = ROW_SEEDS[0],
                s1 = ROW_SEEDS[1]
            ),
        };
        let select = format!("{}, {sel}", spec.key_select());
        if n > 0 && !spec.key_in_byte_order() {
            // The key's index is in a collation other than byte order, so a byte-order range
            // cannot use it: one scan picks the rows of the differing chunks instead.
            let (bucket, params) = spec.bucket_sql(chunking);
            let np = params.refs().len();
            let sql = format!(
                "SELECT {select} FROM {tbl} t{w}",
                tbl = spec.table.quoted(),
                w = spec.where_sql(&[format!("{bucket} = ANY(${}::int4[])", np + 1)]),
            );
            let wanted: Vec<i32> = chunks.iter().map(|&c| c as i32).collect();
            let mut refs = params.refs();
            refs.push(&wanted);
            let rows = self.query("reading rows of", &sql, &refs).await?;
            let mut out = Vec::new();
            self.keyed_rows(&rows, 0, &mut out)?;
            self.stats.chunks_differing += chunks.len() as u64;
            return Ok(out);
        }
        let nk = spec.chunked_columns();
        // The texts of bound `i`, one per key column.
        let bound_texts = |i: usize| spec.bound_texts(chunking, i);
        let mut lo: Vec<Vec<String>> = vec![Vec::new(); nk];
        let mut hi: Vec<Vec<String>> = vec![Vec::new(); nk];
        let mut out = Vec::new();
        for &c in chunks {
            if n == 0 {
                let cond = if c == 0 {
                    format!("NOT {}", spec.key_null_sql())
                } else {
                    spec.key_null_sql()
                };
                let sql = format!(
                    "SELECT {select} FROM {} t{}",
                    spec.table.quoted(),
                    spec.where_sql(&[cond])
                );
                let rows = self.query("reading rows of", &sql, &[]).await?;
                self.keyed_rows(&rows, c, &mut out)?;
            } else if c == 0 || c == n || c == n + 1 {
                let params: Vec<String> = (1..=nk).map(|i| format!("${i}::text")).collect();
                let (pieces, texts) = if c == 0 {
                    (spec.range_pieces(None, Some(&params)), bound_texts(0))
                } else if c == n {
                    (spec.range_pieces(Some(&params), None), bound_texts(n - 1))
                } else {
                    (vec![spec.key_null_sql()], Vec::new())
                };
                let sql = spec.select_pieces(&select, &pieces);
                let refs: Vec<&(dyn ToSql + Sync)> =
                    texts.iter().map(|t| t as &(dyn ToSql + Sync)).collect();
                let rows = self.query("reading rows of", &sql, &refs).await?;
                self.keyed_rows(&rows, c, &mut out)?;
            } else {
                for (i, t) in bound_texts(c - 1).into_iter().enumerate() {
                    lo[i].push(t);
                }
                for (i, t) in bound_texts(c).into_iter().enumerate() {
                    hi[i].push(t);
                }
            }
        }
        // Ranges through the key's index: `unnest` of the low and high bounds (one array per
        // key column each), index range scans per chunk (its pieces).
        let lo_cols: Vec<String> = (0..nk).map(|i| format!("lo{i}")).collect();
        let hi_cols: Vec<String> = (0..nk).map(|i| format!("hi{i}")).collect();
        let arrays: Vec<String> = (0..2 * nk).map(|i| format!("${}::text[]", i + 1)).collect();
        let refs =
            |cols: &[String]| -> Vec<String> { cols.iter().map(|c| format!("r.{c}")).collect() };
        let sql = format!(
            "SELECT x.* FROM unnest({arrays}) AS r({cols}) CROSS JOIN LATERAL ({u}) x",
            arrays = arrays.join(", "),
            cols = lo_cols
                .iter()
                .chain(&hi_cols)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            u = spec.select_pieces(
                &select,
                &spec.range_pieces(Some(&refs(&lo_cols)), Some(&refs(&hi_cols)))
            ),
        );
        let total = lo[0].len();
        let mut start = 0;
        while start < total {
            let end = (start + 5000).min(total);
            let slices: Vec<Vec<String>> = lo
                .iter()
                .chain(&hi)
                .map(|a| a[start..end].to_vec())
                .collect();
            let refs: Vec<&(dyn ToSql + Sync)> =
                slices.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            let rows = self.query("reading rows of", &sql, &refs).await?;
            for r in &rows {
                self.keyed_row(r, 0, 0, &mut out)?;
            }
            start = end;
        }
        self.stats.chunks_differing += chunks.len() as u64;
        Ok(out)
    }

    fn keyed_rows(
        &self,
        rows: &[tokio_postgres::Row],
        chunk: usize,
        out: &mut Vec<KeyedRow>,
    ) -> Result<()> {
        for r in rows {
            self.keyed_row(r, 0, chunk, out)?;
        }
        Ok(())
    }

    fn keyed_row(
        &self,
        r: &tokio_postgres::Row,
        start: usize,
        chunk: usize,
        out: &mut Vec<KeyedRow>,
    ) -> Result<()> {
        let spec = &self.spec;
        let nk = spec.key.len();
        let bad = |m: String| Error::Table {
            table: spec.table.to_string(),
            message: format!("region {}: {m}", self.region),
        };
        let key = decode::decode_row(r, start, &spec.key).map_err(bad)?;
        let at = start + nk;
        let digest = match self.mode {
            Mode::Stream => {
                let vals = decode::decode_row(r, at, &spec.columns).map_err(bad)?;
                u128::from_le_bytes(digest::row_digest(&vals))
            }
            _ => {
                let h0: i64 = r.get(at);
                let h1: i64 = r.get(at + 1);
                (h0 as u64 as u128) | ((h1 as u64 as u128) << 64)
            }
        };
        out.push(KeyedRow { chunk, key, digest });
        Ok(())
    }

    async fn fetch(&mut self, keys: &[Vec<Option<String>>]) -> Result<Vec<FetchedRow>> {
        let spec = self.spec.clone();
        let nk = spec.key.len();
        let mut out = Vec::new();
        let cols: Vec<String> = spec
            .columns
            .iter()
            .map(|c| expr::select_expr(c, Some("t")))
            .collect();
        let vt = spec
            .version_time
            .clone()
            .unwrap_or_else(|| "NULL::timestamptz".into());
        let unnest_cols: Vec<String> = (0..nk).map(|i| format!("${}::text[]", i + 1)).collect();
        let aliases: Vec<String> = (0..nk).map(|i| format!("k{i}")).collect();
        let conds: Vec<String> = spec
            .key
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{} = u.k{i}::{}", TableSpec::col_ref(c), c.type_name))
            .collect();
        let sql = format!(
            "SELECT {keys}, {cols}, ({vt})::timestamptz, {texts} FROM unnest({un}) AS u({al}) JOIN {tbl} t ON {on}{w}",
            keys = spec
                .key
                .iter()
                .map(|c| expr::select_expr(c, Some("t")))
                .collect::<Vec<_>>()
                .join(", "),
            cols = cols.join(", "),
            texts = spec
                .key
                .iter()
                .map(|c| format!("{}::text", TableSpec::col_ref(c)))
                .collect::<Vec<_>>()
                .join(", "),
            un = unnest_cols.join(", "),
            al = aliases.join(", "),
            tbl = spec.table.quoted(),
            on = conds.join(" AND "),
            w = spec.where_sql(&[]),
        );
        for batch in keys.chunks(5000) {
            let arrays: Vec<Vec<Option<String>>> = (0..nk)
                .map(|i| batch.iter().map(|k| k[i].clone()).collect())
                .collect();
            let params: Vec<&(dyn ToSql + Sync)> =
                arrays.iter().map(|a| a as &(dyn ToSql + Sync)).collect();
            let rows = self
                .query("reading differing rows of", &sql, &params)
                .await?;
            for r in &rows {
                let bad = |m: String| Error::Table {
                    table: spec.table.to_string(),
                    message: format!("region {}: {m}", self.region),
                };
                let key = decode::decode_row(r, 0, &spec.key).map_err(bad)?;
                let values = decode::decode_row(r, nk, &spec.columns).map_err(bad)?;
                let t: Option<chrono::DateTime<chrono::Utc>> = r.get(nk + spec.columns.len());
                let version_time =
                    t.map(|t| t.timestamp_micros() - crate::row::value::PG_EPOCH_UNIX_MICROS);
                let base = nk + spec.columns.len() + 1;
                let key_text = (0..nk)
                    .map(|i| r.get::<_, Option<String>>(base + i))
                    .collect();
                out.push(FetchedRow {
                    key,
                    key_text,
                    values,
                    version_time,
                });
            }
        }
        Ok(out)
    }
}

/// Where the pushdown query's rows go: every chunk's slot, or batches in chunk order.
enum SummarySink<'s> {
    All(&'s mut Vec<ChunkSummary>),
    Ordered(SummaryBatch),
}

impl KeyedSource for PgSource<'_> {
    type Key = PgKey;
    type Record = FetchedRow;
    type Plan = Chunking;

    fn region(&self) -> &str {
        &self.region
    }

    /// Bounds sampled in the first region (see the module docs), sent to every region.
    async fn plan(sources: &mut [Self], hint: PlanHint) -> Result<Chunking> {
        match sources.first_mut() {
            Some(s) => s.sample_bounds_with(hint.estimated_rows, hint.chunks).await,
            None => Ok(Chunking::default()),
        }
    }

    fn chunk_count(plan: &Chunking) -> usize {
        plan.len()
    }

    async fn chunk_summaries(&mut self, chunking: &Chunking) -> Result<Vec<ChunkSummary>> {
        match self.mode {
            Mode::Stream => self.stream_summaries(chunking).await,
            _ => self.pushdown_summaries(chunking).await,
        }
    }

    /// Pushdown: the server sorts its one row per chunk, which streams to the engine.
    /// Stream: the leaves digested on the client, sent in order.
    async fn ordered_summaries(
        &mut self,
        chunking: &Chunking,
        out: super::keyed::SummarySender,
    ) -> Result<()> {
        match self.mode {
            Mode::Stream => {
                let sums = self.stream_summaries(chunking).await?;
                super::keyed::send_in_order(sums, out).await;
                Ok(())
            }
            _ => {
                self.pushdown(chunking, SummarySink::Ordered(SummaryBatch::new(out)))
                    .await
            }
        }
    }

    /// Pushdown: one query grouping the rows by the ranges' outer bounds (a scan of the
    /// table per call). Stream: combined from the leaves, streamed once.
    async fn range_summaries(
        &mut self,
        chunking: &Chunking,
        ranges: &[(usize, usize)],
    ) -> Result<Vec<ChunkSummary>> {
        if self.mode == Mode::Stream {
            if self.leaves.is_none() {
                self.leaves = Some(self.stream_summaries(chunking).await?);
            }
            return Ok(super::keyed::combine_ranges(
                self.leaves.as_deref().unwrap_or_default(),
                ranges,
            ));
        }
        let n = chunking.bound_count();
        let mut cuts: Vec<usize> = Vec::new();
        for &(lo, hi) in ranges {
            if lo > 0 && lo <= n {
                cuts.push(lo - 1);
            }
            if hi >= 1 && hi <= n {
                cuts.push(hi - 1);
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        // A subset of evenly spaced bounds is not evenly spaced.
        let coarse = chunking.select(&cuts);
        let chunks_before = self.stats.chunks;
        let sums = self.pushdown_summaries(&coarse).await?;
        self.stats.chunks = chunks_before.max(chunking.len() as u64);
        let null = sums.last().copied().unwrap_or_default();
        Ok(ranges
            .iter()
            .map(|&(lo, hi)| {
                // Chunk `c <= n` lies in coarse chunk `#{cut < c}`; chunk `n + 1` holds NULL keys.
                let mut s = if lo <= n {
                    sums[cuts.partition_point(|&x| x < lo)]
                } else {
                    ChunkSummary::default()
                };
                if hi == n + 2 {
                    s.count += null.count;
                    s.hash ^= null.hash;
                }
                s
            })
            .collect())
    }

    async fn chunk_rows(
        &mut self,
        chunking: &Chunking,
        chunks: &[usize],
    ) -> Result<Vec<(PgKey, u128)>> {
        Ok(self
            .rows_of_chunks(chunking, chunks)
            .await?
            .into_iter()
            .map(|r| (PgKey::new(r.key), r.digest))
            .collect())
    }

    async fn fetch(&mut self, keys: &[PgKey]) -> Result<Vec<(PgKey, FetchedRow)>> {
        let texts: Vec<Vec<Option<String>>> = keys.iter().map(PgKey::text).collect();
        Ok(PgSource::fetch(self, &texts)
            .await?
            .into_iter()
            .map(|r| (PgKey::new(r.key.clone()), r))
            .collect())
    }

    /// Ends the session's read-only transaction (the snapshot).
    async fn release(&mut self) {
        crate::pg::connect::end_transaction(self.client, "COMMIT").await;
    }

    /// [`KeyedSource::fetch`] outside the snapshot.
    async fn refetch(&mut self, keys: &[PgKey]) -> Result<Vec<(PgKey, FetchedRow)>> {
        KeyedSource::fetch(self, keys).await
    }

    fn stats(&self) -> RegionStats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The server's arithmetic chunk of [`TableSpec::bucket_sql`], in Rust.
    fn arith_bucket(k: i64, ch: &Chunking) -> usize {
        let (lo, w) = ch.arith().unwrap();
        let n = ch.bound_count() as i64;
        let last = lo + (n - 1) * w;
        if k < lo {
            0
        } else if k >= last {
            n as usize
        } else {
            ((k - lo) / w + 1) as usize
        }
    }

    #[test]
    fn skewed_keys_are_not_even() {
        let mut ints: Vec<i64> = (0..1000).collect();
        ints.extend((0..1000).map(|i| 1_000_000_000 + i));
        assert!(even_chunking(&ints, 100).is_none());
        let even: Vec<i64> = (0..2000).map(|i| i * 7).collect();
        let ch = even_chunking(&even, 100).unwrap();
        assert!(ch.bound_count() >= 100 && ch.bound_count() <= 102);
    }

    proptest! {
        #[test]
        fn arithmetic_chunk_is_width_bucket(
            lo in -1_000_000i64..1_000_000,
            step in 1i64..1000,
            m in 16usize..200,
            target in 2usize..500,
            probes in proptest::collection::vec(any::<i64>(), 0..50),
            near in proptest::collection::vec(-2_000_000i64..2_000_000, 0..50),
        ) {
            let ints: Vec<i64> = (0..m as i64).map(|i| lo + i * step).collect();
            let ch = even_chunking(&ints, target).unwrap();
            let bounds = ch.int_bounds().unwrap();
            prop_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
            // The same bounds listed one by one (a binary search, not arithmetic).
            let listed = ch.select(&(0..bounds.len()).collect::<Vec<_>>());
            prop_assert_eq!(listed.arith(), None);
            for k in probes.into_iter().chain(near).chain(ints.iter().copied()) {
                prop_assert_eq!(arith_bucket(k, &ch), ch.chunk_of(&Value::Int(k)));
                prop_assert_eq!(arith_bucket(k, &ch), listed.chunk_of(&Value::Int(k)));
            }
        }

        #[test]
        fn extreme_ranges_do_not_overflow(a in any::<i64>(), b in any::<i64>(), target in 2usize..5000) {
            let (lo, hi) = (a.min(b), a.max(b));
            let mut ints: Vec<i64> = (0..32).map(|i| (lo as i128 + (hi as i128 - lo as i128) * i / 31) as i64).collect();
            ints.dedup();
            if let Some(ch) = even_chunking(&ints, target) {
                for k in [i64::MIN, lo, hi, i64::MAX, 0] {
                    prop_assert_eq!(arith_bucket(k, &ch), ch.chunk_of(&Value::Int(k)));
                }
            }
        }
    }

    #[test]
    fn composite_chunk_of_key() {
        let mut ch = Chunking {
            tuples: vec![
                vec![Value::Int(1), Value::Int(10)],
                vec![Value::Int(1), Value::Int(20)],
                vec![Value::Int(2), Value::Int(5)],
            ],
            tuple_text: vec![],
            ..Chunking::default()
        };
        for b in [1, 1, 2] {
            ch.push_bound(Value::Int(b), b.to_string());
        }
        let k = |a: i64, b: i64| ch.chunk_of_key(&[Value::Int(a), Value::Int(b)]);
        assert_eq!(k(0, 99), 0);
        assert_eq!(k(1, 9), 0);
        assert_eq!(k(1, 10), 1);
        assert_eq!(k(1, 19), 1);
        assert_eq!(k(1, 20), 2);
        assert_eq!(k(2, 4), 2);
        assert_eq!(k(2, 5), 3);
        assert_eq!(k(9, 0), 3);
        assert_eq!(ch.chunk_of_key(&[Value::Int(1), Value::Null]), 4);
    }
}
