//! A cache's keyspace in one region as a keyed source ([`crate::source::keyed`]), so that
//! the cache check runs through the same engine as a PostgreSQL table's.
//!
//! * **Plan**: a number of buckets (a power of two, about one per 16 keys of the largest
//!   region by `DBSIZE`); a key's bucket is the top bits of a hash of its name. Nothing is
//!   sampled: `SCAN` returns keys in no useful order.
//! * **Summaries**: the region is scanned once (every master of a cluster at once; `SCAN`
//!   pipelined with the digest script, see [`super::digest`]), each key arriving with its
//!   record (type, content digest, absolute expiry); the keys are kept compactly (one arena
//!   of names, sorted by key hash) and each bucket's summary is its key count and a sum of
//!   per-key mixes. Range summaries are combined from the buckets on the client: the whole
//!   keyspace has crossed the network once anyway, so descending a tree would save nothing.
//! * **Rows** of a bucket, and **fetch**: from the keys kept in memory (no second read).
//! * **Refetch** (the in-flight rounds): the keys' records read again from the region,
//!   routed to the master holding each.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::check::CacheCheckOptions;
use super::connect::CacheRegion;
use super::digest::{self, DigestCtx, Rec};
use crate::error::{Error, Result};
use crate::source::RegionStats;
use crate::source::keyed::{ChunkSummary, KeyedSource, PlanHint, ProgressHandle, combine_ranges};

/// A cache key: its bytes, ordered by the hash that buckets it, then by the bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RedisKey {
    h: u64,
    /// The key's bytes.
    pub bytes: Vec<u8>,
}

/// The partition of a keyspace: `2^bits` buckets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedisPlan {
    bits: u32,
}

impl RedisPlan {
    /// The plan for a keyspace of at most `keys` keys per region.
    pub(crate) fn for_keys(keys: u64) -> RedisPlan {
        let mut bits = 4u32;
        while bits < 24 && (1u64 << bits) * 16 < keys {
            bits += 1;
        }
        RedisPlan { bits }
    }

    fn buckets(&self) -> usize {
        1usize << self.bits
    }

    fn bucket(&self, h: u64) -> usize {
        (h >> (64 - self.bits)) as usize
    }
}

/// One region's keyspace.
pub(crate) struct RedisSource<'a> {
    region: &'a CacheRegion,
    /// Digest settings per master.
    pub(crate) ctx: Vec<DigestCtx>,
    script: redis::Script,
    opts: &'a CacheCheckOptions,
    keys: RegionKeys,
    /// Entry index where each bucket starts (`buckets + 1` of them).
    starts: Vec<u32>,
    leaves: Option<Vec<ChunkSummary>>,
    progress: ProgressHandle,
    stats: RegionStats,
    /// Time to scan the region.
    pub(crate) scan_ms: u64,
}

impl<'a> RedisSource<'a> {
    /// A source over `region` with its digest settings.
    pub(crate) fn new(
        region: &'a CacheRegion,
        ctx: Vec<DigestCtx>,
        script: redis::Script,
        opts: &'a CacheCheckOptions,
    ) -> RedisSource<'a> {
        RedisSource {
            region,
            ctx,
            script,
            opts,
            keys: RegionKeys::default(),
            starts: Vec::new(),
            leaves: None,
            progress: ProgressHandle::default(),
            stats: RegionStats::default(),
            scan_ms: 0,
        }
    }

    /// Keys in the region (`DBSIZE`, summed over masters).
    pub(crate) async fn dbsize(region: &CacheRegion) -> u64 {
        let mut n = 0;
        for node in &region.nodes {
            let c: redis::RedisResult<u64> = redis::cmd("DBSIZE")
                .query_async(&mut node.conn.clone())
                .await;
            n += c.unwrap_or(0);
        }
        n
    }

    /// Scans every master at once into `self.keys`, sorted by key hash, each key once.
    async fn scan(&mut self) -> Result<()> {
        let start = Instant::now();
        let r = self.region;
        let mut tasks = Vec::new();
        for (ni, n) in r.nodes.iter().enumerate() {
            let conn = n.conn.clone();
            let ctx = self.ctx[ni].clone();
            let script = self.script.clone();
            let opts = self.opts.clone();
            let rate = opts
                .max_keys_per_second
                .map(|k| (k as f64 / r.nodes.len() as f64).max(1.0));
            let progress = self.progress.clone();
            tasks.push(tokio::spawn(async move {
                scan_node(conn, ctx, script, opts, rate, progress).await
            }));
        }
        let mut first_err = None;
        for t in tasks {
            match t.await {
                Ok(Ok(found)) => self.keys.append(found),
                Ok(Err(e)) => {
                    first_err.get_or_insert(r.query_err("scanning the keyspace", &e));
                }
                Err(e) => {
                    first_err.get_or_insert(Error::Usage(format!("scan task failed: {e}")));
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // A key is listed once per region even if SCAN returned it twice.
        let rk = &mut self.keys;
        let arena = std::mem::take(&mut rk.arena);
        let name = |e: &Entry| &arena[e.off as usize..(e.off + e.len) as usize];
        rk.entries
            .sort_unstable_by(|a, b| a.h.cmp(&b.h).then_with(|| name(a).cmp(name(b))));
        rk.entries.dedup_by(|a, b| a.h == b.h && name(a) == name(b));
        rk.arena = arena;
        self.scan_ms = start.elapsed().as_millis() as u64;
        self.stats.rows_read = rk.entries.len() as u64;
        self.stats.time_ms += self.scan_ms;
        Ok(())
    }

    fn bucket_entries(&self, b: usize) -> &[Entry] {
        match (self.starts.get(b), self.starts.get(b + 1)) {
            (Some(&lo), Some(&hi)) => &self.keys.entries[lo as usize..hi as usize],
            _ => &[],
        }
    }
}

impl KeyedSource for RedisSource<'_> {
    type Key = RedisKey;
    type Record = Rec;
    type Plan = RedisPlan;

    fn region(&self) -> &str {
        &self.region.name
    }

    /// Buckets for the largest region's `DBSIZE` (or the hint, when given).
    async fn plan(sources: &mut [Self], hint: PlanHint) -> Result<RedisPlan> {
        if let Some(c) = hint.chunks {
            return Ok(RedisPlan::for_keys(c as u64 * 16));
        }
        let mut max = hint.estimated_rows;
        for s in sources.iter() {
            max = max.max(Self::dbsize(s.region).await);
        }
        Ok(RedisPlan::for_keys(max))
    }

    fn chunk_count(plan: &RedisPlan) -> usize {
        plan.buckets()
    }

    async fn chunk_summaries(&mut self, plan: &RedisPlan) -> Result<Vec<ChunkSummary>> {
        self.scan().await?;
        let nb = plan.buckets();
        let mut sums = vec![ChunkSummary::default(); nb];
        let mut starts = vec![0u32; nb + 1];
        for e in &self.keys.entries {
            let i = plan.bucket(e.h);
            sums[i].hash = (sums[i].hash as u64).wrapping_add(entry_mix(e)) as u128;
            sums[i].count += 1;
            starts[i + 1] += 1;
        }
        for i in 0..nb {
            starts[i + 1] += starts[i];
        }
        self.starts = starts;
        self.stats.chunks = nb as u64;
        self.leaves = Some(sums.clone());
        Ok(sums)
    }

    async fn range_summaries(
        &mut self,
        plan: &RedisPlan,
        ranges: &[(usize, usize)],
    ) -> Result<Vec<ChunkSummary>> {
        if self.leaves.is_none() {
            self.chunk_summaries(plan).await?;
        }
        Ok(combine_ranges(
            self.leaves.as_deref().unwrap_or_default(),
            ranges,
        ))
    }

    async fn chunk_rows(
        &mut self,
        _plan: &RedisPlan,
        chunks: &[usize],
    ) -> Result<Vec<(RedisKey, u128)>> {
        self.stats.chunks_differing += chunks.len() as u64;
        Ok(chunks
            .iter()
            .flat_map(|&b| self.bucket_entries(b))
            .map(|e| {
                (
                    RedisKey {
                        h: e.h,
                        bytes: self.keys.key(e).to_vec(),
                    },
                    entry_mix(e) as u128,
                )
            })
            .collect())
    }

    /// From the keys read by the scan.
    async fn fetch(&mut self, keys: &[RedisKey]) -> Result<Vec<(RedisKey, Rec)>> {
        let rk = &self.keys;
        Ok(keys
            .iter()
            .filter_map(|k| {
                let at = rk
                    .entries
                    .partition_point(|e| (e.h, rk.key(e)) < (k.h, k.bytes.as_slice()));
                rk.entries
                    .get(at)
                    .filter(|e| e.h == k.h && rk.key(e) == k.bytes.as_slice())
                    .map(|e| (k.clone(), e.rec))
            })
            .collect())
    }

    async fn release(&mut self) {
        self.keys = RegionKeys::default();
        self.starts = Vec::new();
        self.leaves = None;
    }

    async fn refetch(&mut self, keys: &[RedisKey]) -> Result<Vec<(RedisKey, Rec)>> {
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.bytes.as_slice()).collect();
        let recs = read_region(self.region, &self.ctx, &self.script, &refs).await?;
        Ok(keys
            .iter()
            .zip(recs)
            .filter_map(|(k, r)| r.map(|r| (k.clone(), r)))
            .collect())
    }

    fn watch(&mut self, progress: ProgressHandle) {
        self.progress = progress;
    }

    fn stats(&self) -> RegionStats {
        self.stats.clone()
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

async fn scan_node(
    mut conn: redis::aio::MultiplexedConnection,
    ctx: DigestCtx,
    script: redis::Script,
    opts: CacheCheckOptions,
    rate: Option<f64>,
    progress: ProgressHandle,
) -> redis::RedisResult<RegionKeys> {
    let mut out = RegionKeys::default();
    let patterns: Vec<Option<&str>> = if opts.matches.is_empty() {
        vec![None]
    } else {
        opts.matches.iter().map(|m| Some(m.as_str())).collect()
    };
    let start = Instant::now();
    let scanned = AtomicU64::new(0);
    // SCAN and the digests of the keys it returned are pipelined on the connection: up to
    // three batches are being digested while the next SCAN step runs, so the server never
    // waits for this client between batches.
    use futures_util::StreamExt;
    const IN_FLIGHT: usize = 3;
    let mut pending = futures_util::stream::FuturesOrdered::new();
    let take = |mut found: Vec<(Vec<u8>, Option<Rec>)>, out: &mut RegionKeys| {
        // The run lock is no cache content: never compared, repaired nor archived.
        found.retain(|(k, _)| !k.starts_with(super::lock::LOCK_PREFIX));
        let n = found.iter().filter(|(_, r)| r.is_some()).count() as u64;
        progress.add(n);
        for (k, rec) in found {
            if let Some(rec) = rec {
                out.push(&k, rec);
            }
        }
        scanned.fetch_add(n, Ordering::Relaxed) + n
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
