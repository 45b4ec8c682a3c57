//! Comparing a cache's keyspace across regions, in both directions.
//!
//! Every region is scanned (every master of a cluster, in parallel); each key arrives with
//! its type, content digest and absolute expiry. Keys are then grouped into buckets by a
//! hash of the key: a bucket whose digest (over its keys and records) is equal in every
//! region is skipped, and only the keys of differing buckets are compared one by one.
//! Differing keys are re-read `rounds` times a pause apart: a difference that vanishes is
//! dropped, one whose records moved between reads is in flight.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Serialize;

use super::connect::CacheRegion;
use super::digest::{self, DigestCtx, Rec};
use crate::check::report::RegionMap;
use crate::error::{Error, Result};

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
    pub progress: crate::check::progress::ProgressSink,
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

/// The keys of one region, compactly: names in one arena, sorted by key hash.
#[derive(Default)]
struct RegionKeys {
    arena: Vec<u8>,
    entries: Vec<Entry>,
}

#[derive(Clone, Copy)]
struct Entry {
    h: u64,
    off: u32,
    len: u32,
    rec: Rec,
}

impl RegionKeys {
    fn push(&mut self, key: &[u8], rec: Rec) {
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(key);
        self.entries.push(Entry {
            h: key_hash(key),
            off,
            len: key.len() as u32,
            rec,
        });
    }

    /// Adds another master's keys (a cluster region is read master by master).
    fn append(&mut self, other: RegionKeys) {
        if self.entries.is_empty() {
            *self = other;
            return;
        }
        let base = self.arena.len() as u32;
        self.arena.extend_from_slice(&other.arena);
        self.entries
            .extend(other.entries.into_iter().map(|e| Entry {
                off: e.off + base,
                ..e
            }));
    }

    fn key(&self, e: &Entry) -> &[u8] {
        &self.arena[e.off as usize..e.off as usize + e.len as usize]
    }
}

fn key_hash(key: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

fn entry_mix(e: &Entry) -> u64 {
    mix(e.h ^ mix(e.rec.digest ^ mix(e.rec.expire_ms as u64 ^ ((e.rec.kind as u64) << 56))))
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

    /// Compares every key (or those matching `opts.matches`) in every region.
    pub async fn check(&self, opts: &CacheCheckOptions) -> Result<CacheReport> {
        let start = Instant::now();
        if self.regions.is_empty() {
            return Err(Error::Usage("no Redis regions to compare".into()));
        }
        let prep = self.prepare(opts).await;
        let total_est = self.estimate_keys().await;
        let progress = opts.progress.clone();
        if let Some(p) = &progress {
            p.start(&self.database, total_est);
        }
        let seen = Arc::new(AtomicU64::new(0));
        // Scan every region (every master) at once.
        let mut tasks = Vec::new();
        for (ri, r) in self.regions.iter().enumerate() {
            for (ni, n) in r.nodes.iter().enumerate() {
                let conn = n.conn.clone();
                let ctx = prep.ctx[ri][ni].clone();
                let script = prep.scripts[ri].clone();
                let opts = opts.clone();
                let seen = seen.clone();
                let progress = progress.clone();
                let rate = opts
                    .max_keys_per_second
                    .map(|k| (k as f64 / r.nodes.len() as f64).max(1.0));
                let region = r.clone();
                let label = self.database.clone();
                tasks.push((
                    ri,
                    tokio::spawn(async move {
                        scan_node(conn, ctx, script, opts, rate, seen, progress, label)
                            .await
                            .map_err(|e| region.query_err("scanning the keyspace", &e))
                    }),
                ));
            }
        }
        let mut keys: Vec<RegionKeys> = (0..self.regions.len())
            .map(|_| RegionKeys::default())
            .collect();
        let mut scan_ms = vec![0u64; self.regions.len()];
        let mut first_err = None;
        for (ri, t) in tasks {
            match t.await {
                Ok(Ok(found)) => {
                    keys[ri].append(found);
                    scan_ms[ri] = start.elapsed().as_millis() as u64;
                }
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(Error::Usage(format!("scan task failed: {e}")));
                }
            }
        }
        if let Some(p) = &progress {
            p.finish(&self.database);
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // A key is listed once per region even if SCAN returned it twice.
        for rk in &mut keys {
            let arena = std::mem::take(&mut rk.arena);
            rk.entries.sort_unstable_by(|a, b| {
                a.h.cmp(&b.h).then_with(|| {
                    arena[a.off as usize..(a.off + a.len) as usize]
                        .cmp(&arena[b.off as usize..(b.off + b.len) as usize])
                })
            });
            rk.entries.dedup_by(|a, b| {
                a.h == b.h
                    && arena[a.off as usize..(a.off + a.len) as usize]
                        == arena[b.off as usize..(b.off + b.len) as usize]
            });
            rk.arena = arena;
        }
        let tol = opts.ttl_tolerance.as_millis() as i64;
        let (mut candidates, buckets) = compare(&keys, tol);
        let key_counts = RegionMap(
            self.regions
                .iter()
                .zip(&keys)
                .map(|(r, k)| (r.name.clone(), k.entries.len() as u64))
                .collect(),
        );
        drop(keys);
        // Re-read the differing keys, a pause apart.
        let mut in_flight = vec![false; candidates.len()];
        let mut rounds_done = 0;
        for _ in 0..opts.rounds {
            if candidates.is_empty() {
                break;
            }
            tokio::time::sleep(opts.round_pause).await;
            rounds_done += 1;
            let key_refs: Vec<&[u8]> = candidates.iter().map(|(k, _)| k.as_slice()).collect();
            let fresh = self.read_records(&prep, &key_refs).await?;
            let mut next = Vec::new();
            let mut next_flight = Vec::new();
            for (((k, old), new), flight) in candidates.into_iter().zip(fresh).zip(in_flight) {
                if classify(&new, tol).is_none() {
                    continue;
                }
                let moved = old.iter().zip(&new).any(|(a, b)| !same_record(a, b, tol));
                next.push((k, new));
                next_flight.push(flight || moved);
            }
            candidates = next;
            in_flight = next_flight;
        }
        let names: Vec<String> = self.regions.iter().map(|r| r.name.clone()).collect();
        let mut differences = Vec::new();
        for ((k, recs), flight) in candidates.into_iter().zip(in_flight) {
            let Some((missing, changed)) = classify(&recs, tol) else {
                continue;
            };
            let (key, key_base64) = display_key(&k);
            differences.push(CacheDifference {
                key,
                key_base64,
                missing_in: missing.iter().map(|&i| names[i].clone()).collect(),
                changed: changed.iter().map(|s| s.to_string()).collect(),
                in_flight: flight,
                raw_key: k,
                records: recs,
            });
        }
        differences.sort_by(|a, b| a.raw_key.cmp(&b.raw_key));
        let in_flight_count = differences.iter().filter(|d| d.in_flight).count() as u64;
        let difference_count = differences.len() as u64 - in_flight_count;
        if let Some(max) = opts.max_differences {
            differences.truncate(max);
        }
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
            rounds: rounds_done,
            buckets,
            stats,
            elapsed_ms: start.elapsed().as_millis() as u64,
        })
    }

    async fn estimate_keys(&self) -> u64 {
        let mut n = 0;
        for r in &self.regions {
            for node in &r.nodes {
                let c: redis::RedisResult<u64> = redis::cmd("DBSIZE")
                    .query_async(&mut node.conn.clone())
                    .await;
                n += c.unwrap_or(0);
            }
        }
        n
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

/// Records of `keys` in one region, routed to the master holding each key.
pub(crate) async fn read_region(
    r: &CacheRegion,
    ctx: &[DigestCtx],
    script: &redis::Script,
    keys: &[&[u8]],
) -> Result<Vec<Option<Rec>>> {
    let mut out = vec![None; keys.len()];
    let mut by_node: Vec<Vec<usize>> = vec![Vec::new(); r.nodes.len()];
    for (i, k) in keys.iter().enumerate() {
        by_node[r.node_index(k)].push(i);
    }
    for (ni, idx) in by_node.iter().enumerate() {
        if idx.is_empty() {
            continue;
        }
        let ks: Vec<&[u8]> = idx.iter().map(|&i| keys[i]).collect();
        let mut conn = r.nodes[ni].conn.clone();
        let recs = digest::read_keys(&mut conn, &ctx[ni], script, &ks)
            .await
            .map_err(|e| r.query_err("re-reading differing keys", &e))?;
        for (&i, rec) in idx.iter().zip(recs) {
            out[i] = rec;
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn scan_node(
    mut conn: redis::aio::MultiplexedConnection,
    ctx: DigestCtx,
    script: redis::Script,
    opts: CacheCheckOptions,
    rate: Option<f64>,
    seen: Arc<AtomicU64>,
    progress: crate::check::progress::ProgressSink,
    label: String,
) -> redis::RedisResult<RegionKeys> {
    let mut out = RegionKeys::default();
    let patterns: Vec<Option<&str>> = if opts.matches.is_empty() {
        vec![None]
    } else {
        opts.matches.iter().map(|m| Some(m.as_str())).collect()
    };
    let start = Instant::now();
    let mut scanned = 0u64;
    // SCAN and the digests of the keys it returned are pipelined on the connection: up to
    // three batches are being digested while the next SCAN step runs, so the server never
    // waits for this client between batches.
    use futures_util::StreamExt;
    const IN_FLIGHT: usize = 3;
    let mut pending = futures_util::stream::FuturesOrdered::new();
    let mut take = |mut found: Vec<(Vec<u8>, Option<Rec>)>, out: &mut RegionKeys| {
        // The run lock is no cache content: never compared, repaired nor archived.
        found.retain(|(k, _)| !k.starts_with(super::lock::LOCK_PREFIX));
        let n = found.iter().filter(|(_, r)| r.is_some()).count() as u64;
        scanned += n;
        let total = seen.fetch_add(n, Ordering::Relaxed) + n;
        for (k, rec) in found {
            if let Some(rec) = rec {
                out.push(&k, rec);
            }
        }
        if let Some(p) = &progress {
            p.update(&label, total);
        }
        scanned
    };
    for pattern in patterns {
        let mut cursor = 0u64;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor);
            if let Some(p) = pattern {
                cmd.arg("MATCH").arg(p);
            }
            cmd.arg("COUNT").arg(opts.scan_count);
            let (next, keys): (u64, Vec<Vec<u8>>) = cmd.query_async(&mut conn).await?;
            if !keys.is_empty() {
                let mut c = conn.clone();
                let (ctx, script) = (ctx.clone(), script.clone());
                pending.push_back(async move {
                    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                    let recs = digest::read_keys(&mut c, &ctx, &script, &refs).await?;
                    Ok::<_, redis::RedisError>(keys.into_iter().zip(recs).collect::<Vec<_>>())
                });
            }
            while pending.len() >= IN_FLIGHT {
                if let Some(found) = pending.next().await {
                    let done = take(found?, &mut out);
                    if let Some(rate) = rate {
                        let due = Duration::from_secs_f64(done as f64 / rate);
                        let el = start.elapsed();
                        if due > el {
                            tokio::time::sleep(due - el).await;
                        }
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    while let Some(found) = pending.next().await {
        take(found?, &mut out);
    }
    Ok(out)
}

/// Candidates: keys whose records differ somewhere, with every region's record.
type Candidates = Vec<(Vec<u8>, Vec<Option<Rec>>)>;

fn compare(regions: &[RegionKeys], tol: i64) -> (Candidates, BucketStats) {
    let max = regions.iter().map(|r| r.entries.len()).max().unwrap_or(0);
    let mut bits = 4u32;
    while bits < 24 && (1usize << bits) * 16 < max {
        bits += 1;
    }
    let nb = 1usize << bits;
    let bucket = |h: u64| (h >> (64 - bits)) as usize;
    // Bucket digests and boundaries per region.
    let mut sums: Vec<Vec<(u64, u32)>> = Vec::new();
    let mut bounds: Vec<Vec<u32>> = Vec::new();
    for r in regions {
        let mut s = vec![(0u64, 0u32); nb];
        let mut b = vec![0u32; nb + 1];
        for e in &r.entries {
            let i = bucket(e.h);
            s[i].0 = s[i].0.wrapping_add(entry_mix(e));
            s[i].1 += 1;
            b[i + 1] += 1;
        }
        for i in 0..nb {
            b[i + 1] += b[i];
        }
        sums.push(s);
        bounds.push(b);
    }
    let mut out = Vec::new();
    let mut differing = 0u64;
    for bi in 0..nb {
        if sums.iter().all(|s| s[bi] == sums[0][bi]) {
            continue;
        }
        differing += 1;
        let slices: Vec<&[Entry]> = regions
            .iter()
            .zip(&bounds)
            .map(|(r, b)| &r.entries[b[bi] as usize..b[bi + 1] as usize])
            .collect();
        let mut all: Vec<(u64, &[u8])> = Vec::new();
        for (r, sl) in regions.iter().zip(&slices) {
            for e in sl.iter() {
                all.push((e.h, r.key(e)));
            }
        }
        all.sort_unstable();
        all.dedup();
        for (h, key) in all {
            let recs: Vec<Option<Rec>> = regions
                .iter()
                .zip(&slices)
                .map(|(r, sl)| {
                    let at = sl.partition_point(|e| (e.h, r.key(e)) < (h, key));
                    sl.get(at)
                        .filter(|e| e.h == h && r.key(e) == key)
                        .map(|e| e.rec)
                })
                .collect();
            if classify(&recs, tol).is_some() {
                out.push((key.to_vec(), recs));
            }
        }
    }
    (
        out,
        BucketStats {
            total: nb as u64,
            differing,
        },
    )
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
