//! Comparing a cache's keyspace across regions, in both directions, through the same engine
//! as a PostgreSQL table's check (`crate::check::engine`), with the keyspace as the source
//! (`super::source`).
//!
//! Every region is scanned (every master of a cluster, in parallel); each key arrives with
//! its type, content digest and absolute expiry. Keys are grouped into buckets by a hash of
//! the key: a bucket whose digest (over its keys and records) is equal in every region is
//! skipped, and only the keys of differing buckets are compared one by one (presence, type,
//! value, expiry within the tolerance). Differing keys are re-read `rounds` times a pause
//! apart: a difference that vanishes is dropped, one whose records moved between reads is
//! in flight. `max_differences` caps the listed differences, never the counts.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Serialize;

use super::connect::CacheRegion;
use super::digest::{self, DigestCtx, Rec};
use super::source::{RedisKey, RedisSource, read_region};
use crate::check::engine::{Classifier, Engine, EngineOptions};
use crate::check::report::RegionMap;
use crate::error::{Error, Result};
use crate::source::keyed::PlanHint;

/// How to check a cache.
#[derive(Debug, Clone)]
pub struct CacheCheckOptions {
    /// Only keys matching one of these globs (Redis `MATCH` syntax); all keys when empty.
    pub matches: Vec<String>,
    /// Re-reads of differing keys (default 3).
    pub rounds: u32,
    /// Pause before each re-read (default 1 s; the CLI takes the config's
    /// `10 × sync_interval_ms` when larger).
    pub round_pause: Duration,
    /// Expiries further apart than this differ (default 5 s).
    pub ttl_tolerance: Duration,
    /// Throttle: at most this many keys per second per region.
    pub max_keys_per_second: Option<u64>,
    /// `SCAN ... COUNT` per step (default 1000).
    pub scan_count: u32,
    /// Collections with more elements are digested in pages by the client.
    pub big_elements: u64,
    /// Strings longer than this are digested in pages by the client.
    pub big_bytes: u64,
    /// Never use server-side scripts (compute every digest here).
    pub client_side_only: bool,
    /// List at most this many differences (counts stay exact).
    pub max_differences: Option<usize>,
    /// Where progress is reported (keys read so far), if anywhere.
    pub progress: crate::progress::ProgressSink,
    /// The run id (a new one when `None`).
    pub run_id: Option<String>,
}

impl Default for CacheCheckOptions {
    fn default() -> Self {
        CacheCheckOptions {
            matches: Vec::new(),
            rounds: 3,
            round_pause: Duration::from_secs(1),
            ttl_tolerance: Duration::from_secs(5),
            max_keys_per_second: None,
            scan_count: 1000,
            big_elements: digest::DEFAULT_BIG_ELEMENTS,
            big_bytes: digest::DEFAULT_BIG_BYTES,
            client_side_only: false,
            max_differences: None,
            progress: None,
            run_id: None,
        }
    }
}

/// One differing key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheDifference {
    /// The key; a key that is not UTF-8 is written with redis-cli's `\xNN` escapes.
    pub key: String,
    /// The key's bytes in base64, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// Regions lacking the key.
    pub missing_in: Vec<String>,
    /// What differs among the regions holding it: `type` (alone, plus `ttl`), or
    /// `value` and/or `ttl`.
    pub changed: Vec<String>,
    /// The key changed between re-reads: still being written.
    pub in_flight: bool,
    /// The key's bytes.
    #[serde(skip)]
    pub raw_key: Vec<u8>,
    /// Each region's record at the last read (region order).
    #[serde(skip)]
    pub records: Vec<Option<Rec>>,
}

/// Per-region figures of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheRegionStats {
    /// Masters read (1 unless the region runs Redis Cluster).
    pub masters: usize,
    /// `server` (Lua next to the data) or `client` (values read in pages).
    pub digest: String,
    /// Server version.
    pub version: String,
    /// Time to scan the region.
    pub scan_ms: u64,
}

/// The result of a cache check (serializes to the contract's Redis report).
#[derive(Debug, Clone, Serialize)]
pub struct CacheReport {
    /// The cache database's name.
    pub database: String,
    /// Always `redis`.
    pub kind: &'static str,
    /// Regions in order.
    pub regions: Vec<String>,
    /// True when no confirmed difference was found.
    pub consistent: bool,
    /// Keys compared per region.
    pub key_counts: RegionMap<u64>,
    /// Confirmed differences (in-flight ones not counted).
    pub difference_count: u64,
    /// Keys still being written during the re-reads.
    pub in_flight_count: u64,
    /// Differences, confirmed and in flight, sorted by key.
    pub differences: Vec<CacheDifference>,
    /// This run's id.
    pub run_id: String,
    /// Re-reads done.
    pub rounds: u32,
    /// Buckets compared and how many differed.
    pub buckets: BucketStats,
    /// Per region: masters, digest side, version, scan time.
    pub stats: RegionMap<CacheRegionStats>,
    /// Wall time of the check.
    pub elapsed_ms: u64,
}

/// Bucket figures.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BucketStats {
    /// Buckets per region.
    pub total: u64,
    /// Buckets that differed somewhere.
    pub differing: u64,
}

impl CacheReport {
    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// A cache checker over connected regions: `check` compares them, `fix` repairs them.
///
/// ```no_run
/// # async fn demo() -> eden_consistency::Result<()> {
/// use eden_consistency::redis::{CacheChecker, CacheCheckOptions, RedisConfig, RedisConnectOptions};
/// let mut config = RedisConfig::default();
/// config.apply_region_flag("us-east-1", "redis://127.0.0.1:6379")?;
/// config.apply_region_flag("us-west-2", "redis://127.0.0.1:6380")?;
/// let checker = CacheChecker::connect(&config, "eden_cache", &RedisConnectOptions::default()).await?;
/// let report = checker.check(&CacheCheckOptions::default()).await?;
/// println!("{} differences", report.difference_count);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CacheChecker {
    /// The cache database's name (for reports).
    pub database: String,
    /// Connected regions, in order.
    pub regions: Vec<CacheRegion>,
}

struct Prepared {
    ctx: Vec<Vec<DigestCtx>>,
    scripts: Vec<redis::Script>,
}

impl CacheChecker {
    /// Connects to every region holding `database`.
    pub async fn connect(
        config: &super::config::RedisConfig,
        database: &str,
        opts: &super::connect::RedisConnectOptions,
    ) -> Result<CacheChecker> {
        let regions = config.regions_for(database)?;
        let regions = super::connect::connect_all(&regions, opts).await?;
        Ok(CacheChecker {
            database: database.to_string(),
            regions,
        })
    }

    /// Wraps regions already connected.
    pub fn new(database: impl Into<String>, regions: Vec<CacheRegion>) -> CacheChecker {
        CacheChecker {
            database: database.into(),
            regions,
        }
    }

    /// The region index of `name`.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    async fn prepare(&self, opts: &CacheCheckOptions) -> Prepared {
        let mut ctx = Vec::new();
        let mut scripts = Vec::new();
        for r in &self.regions {
            let redis7 = r.has_pexpiretime;
            scripts.push(digest::digest_script(redis7));
            let mut per = Vec::new();
            for n in &r.nodes {
                let server_side = !opts.client_side_only
                    && digest::probe_script(&mut n.conn.clone(), redis7).await;
                if !server_side && !opts.client_side_only {
                    tracing::info!(
                        "region {} ({}): scripts refused or Lua order not bytewise; digests computed by the client",
                        r.name,
                        n.addr
                    );
                }
                per.push(DigestCtx {
                    big_elements: opts.big_elements,
                    big_bytes: opts.big_bytes,
                    has_pexpiretime: r.has_pexpiretime,
                    server_side,
                });
            }
            ctx.push(per);
        }
        Prepared { ctx, scripts }
    }

    /// Compares every key (or those matching `opts.matches`) in every region, through the
    /// same engine as a PostgreSQL table ([`crate::Checker`]): the keyspace is the source,
    /// a bucket of key hashes is a chunk.
    pub async fn check(&self, opts: &CacheCheckOptions) -> Result<CacheReport> {
        let start = Instant::now();
        if self.regions.is_empty() {
            return Err(Error::Usage("no Redis regions to compare".into()));
        }
        let prep = self.prepare(opts).await;
        let mut sizes = Vec::new();
        for r in &self.regions {
            sizes.push(RedisSource::dbsize(r).await);
        }
        let mut sources: Vec<RedisSource<'_>> = self
            .regions
            .iter()
            .zip(prep.ctx.iter().cloned().zip(prep.scripts.iter().cloned()))
            .map(|(r, (ctx, script))| RedisSource::new(r, ctx, script, opts))
            .collect();
        let tol = opts.ttl_tolerance.as_millis() as i64;
        let cls = RedisClassifier { tol };
        let engine_opts = EngineOptions {
            max_listed: opts.max_differences,
            rounds: opts.rounds,
            pause: opts.round_pause,
            progress: opts.progress.clone(),
            label: self.database.clone(),
            total: sizes.iter().sum(),
            ..EngineOptions::default()
        };
        let out = Engine::new(&mut sources, &cls, engine_opts)
            .run(PlanHint {
                estimated_rows: sizes.iter().copied().max().unwrap_or(0),
                chunks: None,
            })
            .await?;
        let scan_ms: Vec<u64> = sources.iter().map(|s| s.scan_ms).collect();
        drop(sources);
        let names: Vec<String> = self.regions.iter().map(|r| r.name.clone()).collect();
        let key_counts = RegionMap(names.iter().cloned().zip(out.row_counts).collect());
        let mut differences = Vec::new();
        for d in out.listed {
            let Some((missing, changed)) = classify(&d.recs, tol) else {
                continue;
            };
            let (key, key_base64) = display_key(&d.key.bytes);
            differences.push(CacheDifference {
                key,
                key_base64,
                missing_in: missing.iter().map(|&i| names[i].clone()).collect(),
                changed: changed.iter().map(|s| s.to_string()).collect(),
                in_flight: d.in_flight,
                raw_key: d.key.bytes,
                records: d.recs,
            });
        }
        let in_flight_count = out.in_flight_count;
        let difference_count = out.difference_count - in_flight_count;
        let stats = RegionMap(
            self.regions
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let server = prep.ctx[i].iter().all(|c| c.server_side);
                    (
                        r.name.clone(),
                        CacheRegionStats {
                            masters: r.nodes.len(),
                            digest: if server { "server" } else { "client" }.into(),
                            version: r.version.clone(),
                            scan_ms: scan_ms[i],
                        },
                    )
                })
                .collect(),
        );
        Ok(CacheReport {
            database: self.database.clone(),
            kind: "redis",
            regions: names,
            consistent: difference_count == 0,
            key_counts,
            difference_count,
            in_flight_count,
            differences,
            run_id: opts
                .run_id
                .clone()
                .unwrap_or_else(crate::repair::plan::new_run_id),
            rounds: out.rounds,
            buckets: BucketStats {
                total: out.chunks,
                differing: out.chunks_differing,
            },
            stats,
            elapsed_ms: start.elapsed().as_millis() as u64,
        })
    }

    /// Every region's record of each key (region order, then key order).
    async fn read_records(&self, prep: &Prepared, keys: &[&[u8]]) -> Result<Vec<Vec<Option<Rec>>>> {
        let mut per_region = Vec::new();
        for (ri, r) in self.regions.iter().enumerate() {
            per_region.push(read_region(r, &prep.ctx[ri], &prep.scripts[ri], keys).await?);
        }
        Ok((0..keys.len())
            .map(|k| per_region.iter().map(|v| v[k]).collect())
            .collect())
    }

    /// Current records of `keys` in every region (for fix guards and re-checks).
    pub(crate) async fn read_now(
        &self,
        opts: &CacheCheckOptions,
        keys: &[&[u8]],
    ) -> Result<Vec<Vec<Option<Rec>>>> {
        let prep = self.prepare(opts).await;
        self.read_records(&prep, keys).await
    }

    pub(crate) async fn contexts(
        &self,
        opts: &CacheCheckOptions,
    ) -> (Vec<Vec<DigestCtx>>, Vec<redis::Script>) {
        let p = self.prepare(opts).await;
        (p.ctx, p.scripts)
    }
}

/// How two regions' records of a key differ: presence, type, content digest, and expiry
/// beyond the tolerance. Every difference is re-read in rounds (when `rounds > 0`); one that
/// vanishes is dropped, one whose records moved between reads is in flight.
pub(crate) struct RedisClassifier {
    /// Expiry tolerance, milliseconds.
    pub tol: i64,
}

/// A differing key with every region's last record.
pub(crate) struct RedisDiff {
    key: RedisKey,
    recs: Vec<Option<Rec>>,
    in_flight: bool,
}

impl Classifier<RedisSource<'_>> for RedisClassifier {
    type Diff = RedisDiff;

    fn classify(&self, key: &RedisKey, versions: &[Option<&Rec>]) -> Option<RedisDiff> {
        let recs: Vec<Option<Rec>> = versions.iter().map(|r| r.copied()).collect();
        classify(&recs, self.tol)?;
        Some(RedisDiff {
            key: key.clone(),
            recs,
            in_flight: false,
        })
    }

    fn needs_recheck(&self, _: &RedisDiff) -> bool {
        true
    }

    fn reclassify(&self, old: RedisDiff, versions: &[Option<&Rec>]) -> Option<RedisDiff> {
        let recs: Vec<Option<Rec>> = versions.iter().map(|r| r.copied()).collect();
        classify(&recs, self.tol)?;
        let moved = old
            .recs
            .iter()
            .zip(&recs)
            .any(|(a, b)| !same_record(a, b, self.tol));
        Some(RedisDiff {
            key: old.key,
            recs,
            in_flight: old.in_flight || moved,
        })
    }

    fn key<'d>(&self, d: &'d RedisDiff) -> &'d RedisKey {
        &d.key
    }

    fn in_flight(&self, d: &RedisDiff) -> bool {
        d.in_flight
    }

    fn order(&self, a: &RedisDiff, b: &RedisDiff) -> std::cmp::Ordering {
        a.key.bytes.cmp(&b.key.bytes)
    }
}

/// Whether two reads of one key in one region agree (presence, type, digest, expiry within
/// the tolerance).
pub(crate) fn same_record(a: &Option<Rec>, b: &Option<Rec>, tol: i64) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.kind == b.kind && a.digest == b.digest && same_expiry(a.expire_ms, b.expire_ms, tol)
        }
        _ => false,
    }
}

fn same_expiry(a: i64, b: i64, tol: i64) -> bool {
    match (a < 0, b < 0) {
        (true, true) => true,
        (false, false) => (a - b).abs() <= tol,
        _ => false,
    }
}

/// Missing regions and what changed, or `None` when every region agrees.
pub(crate) fn classify(recs: &[Option<Rec>], tol: i64) -> Option<(Vec<usize>, Vec<&'static str>)> {
    let missing: Vec<usize> = recs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_none())
        .map(|(i, _)| i)
        .collect();
    let present: Vec<&Rec> = recs.iter().flatten().collect();
    if present.is_empty() {
        return None; // gone everywhere: the regions agree
    }
    let mut changed = Vec::new();
    if let Some(first) = present.first() {
        if present.iter().any(|r| r.kind != first.kind) {
            changed.push("type");
        } else if present.iter().any(|r| r.digest != first.digest) {
            changed.push("value");
        }
        if present
            .iter()
            .any(|r| !same_expiry(r.expire_ms, first.expire_ms, tol))
            || expiry_spread(&present) > tol
        {
            changed.push("ttl");
        }
    }
    if missing.is_empty() && changed.is_empty() {
        None
    } else {
        Some((missing, changed))
    }
}

fn expiry_spread(present: &[&Rec]) -> i64 {
    let e: Vec<i64> = present
        .iter()
        .map(|r| r.expire_ms)
        .filter(|e| *e >= 0)
        .collect();
    match (e.iter().min(), e.iter().max()) {
        (Some(a), Some(b)) => b - a,
        _ => 0,
    }
}

/// The key as printed (redis-cli's `\xNN` escapes when it is not UTF-8) and, then, its
/// base64.
pub fn display_key(key: &[u8]) -> (String, Option<String>) {
    match std::str::from_utf8(key) {
        Ok(s) => (s.to_string(), None),
        Err(_) => (
            escape_key(key),
            Some(base64::engine::general_purpose::STANDARD.encode(key)),
        ),
    }
}

/// redis-cli's quoting of binary strings, without the surrounding quotes.
pub fn escape_key(key: &[u8]) -> String {
    let mut s = String::new();
    for &c in key {
        match c {
            b'\\' => s.push_str("\\\\"),
            b'"' => s.push_str("\\\""),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            7 => s.push_str("\\a"),
            8 => s.push_str("\\b"),
            0x20..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02x}")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(kind: u8, digest: u64, e: i64) -> Option<Rec> {
        Some(Rec {
            kind,
            digest,
            expire_ms: e,
        })
    }

    #[test]
    fn kinds_of_difference() {
        assert!(classify(&[r(b's', 1, -1), r(b's', 1, -1)], 5000).is_none());
        assert_eq!(
            classify(&[r(b's', 1, -1), None], 5000).unwrap(),
            (vec![1], vec![])
        );
        assert_eq!(
            classify(&[r(b's', 1, -1), r(b'h', 2, 10)], 5000).unwrap().1,
            vec!["type", "ttl"]
        );
        assert_eq!(
            classify(&[r(b's', 1, 1000), r(b's', 2, 7000)], 5000)
                .unwrap()
                .1,
            vec!["value", "ttl"]
        );
        assert!(classify(&[r(b's', 1, 1000), r(b's', 1, 5000)], 5000).is_none());
    }

    #[test]
    fn escapes() {
        assert_eq!(escape_key(b"a\xff\n\"b"), "a\\xff\\n\\\"b");
        assert_eq!(display_key(b"\xfe").1.as_deref(), Some("/g=="));
    }
}
