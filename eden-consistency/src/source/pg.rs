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
//!   `SELECT width_bucket(k, $bounds), count(*), bit_xor(hash_record_extended(ROW(cols), 1))
//!   FROM t GROUP BY 1`, so only a few bytes per chunk cross the network. Rows of differing
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
//!   bytes keep arriving; each row is put in its chunk by comparing its first key column
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
//! Chunks are ranges of the **first key column**, identical in every region: the bounds
//! are taken from the first region (all keys of a small table, else a `TABLESAMPLE SYSTEM`
//! sample, plus linear interpolation between sampled quantiles for integer keys, which
//! keeps the sample small), sorted by value (`COLLATE "C"` for text), and sent to every
//! region. Chunk `i` holds `bounds[i-1] <= k < bounds[i]` (`width_bucket` semantics);
//! chunk `bounds.len() + 1` holds NULL keys (possible only with configured
//! `key_columns`). The chunk size is adaptive: about `sqrt(N)`-proportional so that the
//! chunk digests and the rows of differing chunks together stay well under 1 % of the
//! table's bytes at 0.1 % drift (see [`target_chunks`]).

mod ranges;
pub(crate) use ranges::RegionMarks;

use std::sync::Arc;
use std::time::Instant;

use futures_util::{StreamExt, pin_mut};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::RegionStats;
use super::keyed::{KeyedSource, PlanHint};
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
    fn where_sql(&self, extra: &[String]) -> String {
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

    fn col_ref(c: &Column) -> String {
        format!("t.{}", quote_ident(&c.name))
    }

    /// The first key column as compared for chunking (text in byte order).
    fn k0_expr(&self) -> String {
        let k = &self.key[0];
        let mut s = Self::col_ref(k);
        if k.collation.is_some() && !k.is_array {
            s.push_str(" COLLATE \"C\"");
        }
        s
    }

    /// `ROW(...)` of the compared columns, as hashed in the server: each column through
    /// [`expr::pushdown_exprs`], so the server's hash equality is the client's value
    /// equality (text as bytes, intervals as stored, arrays with their dimensions, json by
    /// value, types without a hash through their canonical text).
    fn row_expr(&self) -> String {
        let parts: Vec<String> = self
            .columns
            .iter()
            .flat_map(|c| expr::pushdown_exprs(c, Some("t")))
            .collect();
        format!("ROW({})", parts.join(", "))
    }

    /// True when ranges of the first key column in byte order can use its index: not
    /// collatable, or collated `C` / `POSIX`.
    fn key_in_byte_order(&self) -> bool {
        let k = &self.key[0];
        k.is_array
            || k.collation
                .as_deref()
                .is_none_or(|c| matches!(c, "C" | "POSIX" | "ucs_basic"))
    }

    /// True when the first key column is an integer (bounds sent as `int8[]`).
    fn int_key(&self) -> bool {
        matches!(
            types::ColumnType::effective_oid(&self.key[0]),
            oid::INT2 | oid::INT4 | oid::INT8
        )
    }

    /// The bounds parameter `$1` as an array of the key's type. A per-row cast of a
    /// parameter would be evaluated for every row, so integers travel as `int8[]`, text
    /// as `text[]`, and other types are cast once in an init-plan.
    fn bounds_param(&self) -> String {
        let k = &self.key[0];
        if self.int_key() {
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

    fn key_select(&self) -> String {
        self.key
            .iter()
            .map(|c| expr::select_expr(c, Some("t")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Aligned key ranges: `bounds.len() + 2` chunks (the last one for NULL keys).
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunking {
    /// Bounds as PostgreSQL prints them (UTC session), sent as `text[]` and cast.
    pub bounds_text: Vec<String>,
    /// The same bounds as values, for placing streamed rows.
    pub bounds: Vec<Value>,
}

impl Chunking {
    /// Number of chunks (including the NULL-key chunk).
    pub(crate) fn len(&self) -> usize {
        self.bounds.len() + 2
    }

    /// The chunk of a first-key value.
    pub(crate) fn chunk_of(&self, k0: &Value) -> usize {
        if k0.is_null() {
            return self.bounds.len() + 1;
        }
        // Number of bounds <= k0.
        self.bounds.partition_point(|b| {
            matches!(
                b.compare(k0),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            )
        })
    }
}

/// How many chunks a table of `rows` rows is cut into: about `1.2 · rows / sqrt(1000)`,
/// i.e. ~26 rows per chunk. This balances what
/// crosses the network (one digest per chunk, plus every row of each differing chunk),
/// which at a drift of `d` rows is smallest near `sqrt(d · rows)` chunks; 0.1 % drift is
/// assumed. At most 4 million chunks.
pub(crate) fn target_chunks(rows: u64) -> usize {
    if rows < 64 {
        return 1;
    }
    (((rows as f64) * (rows as f64) / 1000.0).sqrt() * 1.2).clamp(2.0, 4_000_000.0) as usize
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

    /// Chooses the chunk bounds from this region's keys, for a table of about
    /// `estimated_rows` rows (0: estimated from the catalog), or in `chunks` chunks when
    /// given (tests and tuning).
    pub(crate) async fn sample_bounds_with(
        &mut self,
        estimated_rows: u64,
        chunks: Option<usize>,
    ) -> Result<Chunking> {
        let estimated_rows = if estimated_rows > 0 {
            estimated_rows
        } else {
            let (tuples, bytes) = self.table_size().await?;
            if tuples > 0 { tuples } else { bytes / 100 }
        };
        let spec = self.spec.clone();
        let k0 = &spec.key[0];
        let target = chunks.unwrap_or_else(|| target_chunks(estimated_rows));
        if target <= 1 {
            return Ok(Chunking::default());
        }
        let is_int = matches!(
            types::ColumnType::effective_oid(k0),
            oid::INT2 | oid::INT4 | oid::INT8
        );
        // Integer keys: a small sample, interpolated; other keys: one sampled key per chunk.
        let want = if is_int { target.min(2048) } else { target };
        let sample = if estimated_rows <= 4 * want as u64 || estimated_rows < 20_000 {
            String::new()
        } else {
            let pct = (want as f64 * 150.0 / estimated_rows as f64).min(100.0);
            format!(" TABLESAMPLE SYSTEM ({pct:.6})")
        };
        let sql = format!(
            "SELECT {sel}, s.k::text AS kt FROM (SELECT DISTINCT {k0raw} AS k FROM {tbl} t{sample}{w}) s ORDER BY s.k{coll}",
            sel = expr::select_expr(
                &Column {
                    name: "k".into(),
                    ..k0.clone()
                },
                Some("s")
            ),
            k0raw = TableSpec::col_ref(k0),
            tbl = spec.table.quoted(),
            w = spec.where_sql(&[format!("{} IS NOT NULL", TableSpec::col_ref(k0))]),
            coll = if k0.collation.is_some() && !k0.is_array {
                " COLLATE \"C\""
            } else {
                ""
            },
        );
        let rows = self.query("sampling the keys of", &sql, &[]).await?;
        let mut keys: Vec<(Value, String)> = Vec::with_capacity(rows.len());
        for r in &rows {
            let v = decode::decode(r, 0, k0).map_err(|m| Error::Table {
                table: spec.table.to_string(),
                message: m,
            })?;
            let t: String = r.get(1);
            keys.push((v, t));
        }
        if keys.len() < 2 {
            return Ok(Chunking::default());
        }
        let mut ch = Chunking::default();
        if is_int {
            // SYSTEM sampling returns whole pages, i.e. runs of neighbouring keys: take about
            // one quantile per sampled page, add the true minimum and maximum (two index
            // probes), and split every gap linearly.
            let mut ints: Vec<i64> = keys
                .iter()
                .filter_map(|(v, _)| {
                    if let Value::Int(x) = v {
                        Some(*x)
                    } else {
                        None
                    }
                })
                .collect();
            let mm = format!(
                "SELECT min({k})::int8, max({k})::int8 FROM {tbl} t{w}",
                k = TableSpec::col_ref(k0),
                tbl = spec.table.quoted(),
                w = spec.where_sql(&[]),
            );
            let r = self.query("reading the key range of", &mm, &[]).await?;
            if let (Some(lo), Some(hi)) =
                (r[0].get::<_, Option<i64>>(0), r[0].get::<_, Option<i64>>(1))
            {
                ints.push(lo);
                ints.push(hi);
            }
            ints.sort_unstable();
            ints.dedup();
            let q = (ints.len() / 40).clamp(1, want);
            let step = (ints.len() - 1) as f64 / q as f64;
            let quant: Vec<i64> = (0..=q)
                .map(|i| ints[((i as f64 * step).round() as usize).min(ints.len() - 1)])
                .collect();
            // Sub-chunks per gap: mostly by the gap's share of the key range (exact for
            // evenly spread keys, and immune to the page clustering of the sample), partly
            // by its share of the sample (for skewed keys).
            let span = (quant[q] as f64 - quant[0] as f64).max(1.0);
            let per_gap = |a: i64, b: i64| -> i128 {
                let share = 0.75 * (b as f64 - a as f64) / span + 0.25 / q as f64;
                ((target as f64 * share).round() as i128).max(1)
            };
            let mut last: Option<i64> = None;
            let mut push = |x: i64, ch: &mut Chunking| {
                if last.is_none_or(|l| x > l) {
                    ch.bounds.push(Value::Int(x));
                    ch.bounds_text.push(x.to_string());
                    last = Some(x);
                }
            };
            for w in quant.windows(2) {
                let (a, b) = (w[0] as i128, w[1] as i128);
                let m = per_gap(w[0], w[1]);
                for j in 0..m {
                    push((a + (b - a) * j / m) as i64, &mut ch);
                }
            }
            if let Some(&max) = quant.last() {
                push(max.saturating_add(1), &mut ch);
            }
        } else {
            let step = (keys.len() as f64 / target as f64).max(1.0);
            let mut i = step;
            while (i as usize) < keys.len() {
                let (v, t) = &keys[i as usize];
                ch.bounds.push(v.clone());
                ch.bounds_text.push(t.clone());
                i += step;
            }
        }
        Ok(ch)
    }

    async fn pushdown_summaries(&mut self, chunking: &Chunking) -> Result<Vec<ChunkSummary>> {
        let spec = self.spec.clone();
        let n = chunking.bounds.len() as i32;
        let bucket = if n == 0 {
            format!(
                "CASE WHEN {} IS NULL THEN 1 ELSE 0 END",
                TableSpec::col_ref(&spec.key[0])
            )
        } else {
            format!(
                "COALESCE(width_bucket({}, {}), {})",
                spec.k0_expr(),
                spec.bounds_param(),
                n + 1
            )
        };
        let sql = format!(
            "SELECT (b::int8 << 32) | count(*), bit_xor(h) FROM \
             (SELECT {bucket} AS b, hash_record_extended({row}, {CHUNK_SEED}) AS h FROM {tbl} t{w}) s GROUP BY b",
            row = spec.row_expr(),
            tbl = spec.table.quoted(),
            w = spec.where_sql(&[]),
        );
        let ints: Vec<i64> = if spec.int_key() {
            chunking
                .bounds
                .iter()
                .map(|b| if let Value::Int(x) = b { *x } else { 0 })
                .collect()
        } else {
            Vec::new()
        };
        let params: Vec<&(dyn ToSql + Sync)> = if n == 0 {
            Vec::new()
        } else if spec.int_key() {
            vec![&ints]
        } else {
            vec![&chunking.bounds_text]
        };
        // Streamed: one small summary kept per chunk, never the result rows.
        let t0 = Instant::now();
        let stream = self
            .client
            .query_raw(sql.as_str(), params.iter().copied())
            .await
            .map_err(|e| self.qerr("hashing", e))?;
        pin_mut!(stream);
        let mut out = vec![ChunkSummary::default(); chunking.len()];
        while let Some(r) = stream.next().await {
            let r = r.map_err(|e| self.qerr("hashing", e))?;
            self.stats.bytes_received += row_bytes(&r);
            let bc: i64 = r.get(0);
            let (b, c) = (bc >> 32, bc & 0xffff_ffff);
            let h: i64 = r.get(1);
            if let Some(s) = out.get_mut(b as usize) {
                s.count = c as u64;
                s.hash = h as u64 as u128;
                self.stats.rows_read += c as u64;
            }
        }
        self.stats.time_ms += t0.elapsed().as_millis() as u64;
        tracing::debug!(region = %self.region, what = "hashing", ms = t0.elapsed().as_millis() as u64, "query done");
        self.stats.chunks += chunking.len() as u64;
        Ok(out)
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
        let k0_idx = spec
            .columns
            .iter()
            .position(|c| c.name == spec.key[0].name)
            .unwrap_or(0);
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
                        let k0 = t.fields().nth(k0_idx).flatten();
                        let v = decode::decode_wire(k0, oids[k0_idx])?;
                        Ok((chunking2.chunk_of(&v), d))
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
        let n = chunking.bounds.len();
        let k0 = spec.k0_expr();
        let ty = &spec.key[0].type_name;
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
            let sql = format!(
                "SELECT {select} FROM {tbl} t{w}",
                tbl = spec.table.quoted(),
                w = spec.where_sql(&[format!(
                    "COALESCE(width_bucket({k0}, {}), {}) = ANY($2::int4[])",
                    spec.bounds_param(),
                    n + 1
                )]),
            );
            let wanted: Vec<i32> = chunks.iter().map(|&c| c as i32).collect();
            let rows = self
                .query("reading rows of", &sql, &[&chunking.bounds_text, &wanted])
                .await?;
            let mut out = Vec::new();
            self.keyed_rows(&rows, 0, &mut out)?;
            self.stats.chunks_differing += chunks.len() as u64;
            return Ok(out);
        }
        let mut lo = Vec::new();
        let mut hi = Vec::new();
        let mut out = Vec::new();
        for &c in chunks {
            if n == 0 {
                let cond = if c == 0 {
                    format!("{} IS NOT NULL", TableSpec::col_ref(&spec.key[0]))
                } else {
                    format!("{} IS NULL", TableSpec::col_ref(&spec.key[0]))
                };
                let sql = format!(
                    "SELECT {select} FROM {} t{}",
                    spec.table.quoted(),
                    spec.where_sql(&[cond])
                );
                let rows = self.query("reading rows of", &sql, &[]).await?;
                self.keyed_rows(&rows, c, &mut out)?;
            } else if c == 0 || c == n || c == n + 1 {
                let cond = if c == 0 {
                    format!("{k0} < $1::text::{ty}")
                } else if c == n {
                    format!("{k0} >= $1::text::{ty}")
                } else {
                    format!("{} IS NULL", TableSpec::col_ref(&spec.key[0]))
                };
                let sql = format!(
                    "SELECT {select} FROM {} t{}",
                    spec.table.quoted(),
                    spec.where_sql(&[cond])
                );
                let rows = if c == n + 1 {
                    self.query("reading rows of", &sql, &[]).await?
                } else {
                    let b = if c == 0 {
                        &chunking.bounds_text[0]
                    } else {
                        &chunking.bounds_text[n - 1]
                    };
                    self.query("reading rows of", &sql, &[b]).await?
                };
                self.keyed_rows(&rows, c, &mut out)?;
            } else {
                lo.push(chunking.bounds_text[c - 1].clone());
                hi.push(chunking.bounds_text[c].clone());
            }
        }
        for (lo, hi) in lo.chunks(5000).zip(hi.chunks(5000)) {
            let sql = format!(
                "SELECT x.* FROM unnest($1::text[], $2::text[]) AS r(lo, hi) \
                 CROSS JOIN LATERAL (SELECT {select} FROM {tbl} t{w}) x",
                tbl = spec.table.quoted(),
                w = spec.where_sql(&[format!("{k0} >= r.lo::{ty}"), format!("{k0} < r.hi::{ty}")]),
            );
            let rows = self
                .query("reading rows of", &sql, &[&lo.to_vec(), &hi.to_vec()])
                .await?;
            for r in &rows {
                self.keyed_row(r, 0, 0, &mut out)?;
            }
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
        let n = chunking.bounds.len();
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
        let coarse = Chunking {
            bounds_text: cuts
                .iter()
                .map(|&i| chunking.bounds_text[i].clone())
                .collect(),
            bounds: cuts.iter().map(|&i| chunking.bounds[i].clone()).collect(),
        };
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
