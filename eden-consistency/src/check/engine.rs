//! The comparison engine: one algorithm over any [`KeyedSource`] (a PostgreSQL table, a
//! Redis keyspace, a test's in-memory rows), in named phases:
//!
//! 1. **plan** the partition ([`KeyedSource::plan`]: sampled bounds, a bucket count);
//! 2. **summaries**: every region's chunk summaries, all leaves at once (streamed in chunk
//!    order from every region and compared as they arrive, so none is kept), or level by
//!    level from the top of the tree over the chunks, descending only into nodes that
//!    differ (see [`crate::source::keyed`] for when that pays);
//! 3. **differing chunks**, cut into batches bounded by their rows;
//! 4. per batch, the **rows** (`(key, digest)`) of the batch's chunks from every region,
//!    merged into **candidate keys** (missing somewhere or not the same digest everywhere);
//! 5. **fetch & classify**: the candidates' records from every region, compared by the
//!    source's own rules ([`Classifier`]: column by column for PostgreSQL; type, value and
//!    expiry within a tolerance for Redis); equal records are dropped;
//! 6. **in-flight re-reads**: differences the classifier wants re-read are read again after
//!    the snapshot, in rounds a pause apart; those that vanish are dropped, those still
//!    moving are in flight;
//! 7. **report rows**: the count of differences is exact; only the first `max_listed` in
//!    the classifier's order are kept (all of them when the caller needs them, e.g. `fix`),
//!    so that memory is bounded by a batch, not by the number of differences.
//!
//! The caller drives the phases ([`Engine::plan`], [`Engine::summaries`],
//! [`Engine::next_batch`] / [`Engine::absorb`], [`Engine::release`], [`Engine::recheck`],
//! [`Engine::finish`]), so that it can write each batch somewhere (`--record`) between
//! them; [`Engine::run`] does all of them.

use std::cmp::Ordering;
use std::time::Duration;

use futures_util::future::join_all;

use crate::error::Result;
use crate::progress::ProgressSink;
use crate::source::keyed::{ChunkSummary, KeyedSource, PlanHint, ProgressHandle};
use crate::source::merkle;

/// How a source's candidate keys become differences.
pub(crate) trait Classifier<S: KeyedSource> {
    /// A confirmed difference.
    type Diff;
    /// The difference for `key`, given its record in each region (`None`: absent there),
    /// or `None` when the records agree.
    fn classify(&self, key: &S::Key, versions: &[Option<&S::Record>]) -> Option<Self::Diff>;
    /// Whether `d` must be re-read after the snapshot before it is reported.
    fn needs_recheck(&self, d: &Self::Diff) -> bool;
    /// `old` re-read: its records now; `None` when the difference vanished.
    fn reclassify(&self, old: Self::Diff, versions: &[Option<&S::Record>]) -> Option<Self::Diff>;
    /// The difference's key.
    fn key<'d>(&self, d: &'d Self::Diff) -> &'d S::Key;
    /// Flagged in flight.
    fn in_flight(&self, d: &Self::Diff) -> bool;
    /// The report's order.
    fn order(&self, a: &Self::Diff, b: &Self::Diff) -> Ordering;
}

/// How the engine runs.
#[derive(Debug, Clone)]
pub(crate) struct EngineOptions {
    /// Compare level by level with this fan-out (`None`: all leaves at once).
    pub descent: Option<usize>,
    /// Rows (the largest region's) read per batch of differing chunks.
    pub batch_rows: u64,
    /// Differences kept for the report (the count stays exact); `None`: all.
    pub max_listed: Option<usize>,
    /// Keep every difference whatever `max_listed` (the caller repairs them).
    pub keep_all: bool,
    /// Re-read rounds for the differences the classifier wants re-read.
    pub rounds: u32,
    /// Pause before each re-read.
    pub pause: Duration,
    /// Progress: sink, label and expected total rows.
    pub progress: ProgressSink,
    /// The work's label for progress.
    pub label: String,
    /// Expected rows over all regions (0: unknown).
    pub total: u64,
    /// Keep every region's leaf summaries (`check --incremental` stores them); leaf mode
    /// only.
    pub keep_leaves: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            descent: None,
            batch_rows: DEFAULT_BATCH_ROWS,
            max_listed: None,
            keep_all: false,
            rounds: 0,
            pause: Duration::ZERO,
            progress: None,
            label: String::new(),
            total: 0,
            keep_leaves: false,
        }
    }
}

/// Rows of differing chunks read and compared at a time.
pub(crate) const DEFAULT_BATCH_ROWS: u64 = 16_384;
/// At most this many chunks per batch (bounds the size of the queries).
const MAX_BATCH_CHUNKS: usize = 4096;

/// What a comparison found.
#[derive(Debug)]
pub(crate) struct Outcome<D> {
    /// Differences in the report's order: the first `max_listed` (all with `keep_all`).
    pub listed: Vec<D>,
    /// Every difference, in-flight ones included (never capped).
    pub difference_count: u64,
    /// Differences flagged in flight.
    pub in_flight_count: u64,
    /// Rows per region (from the summaries).
    pub row_counts: Vec<u64>,
    /// Chunks of the plan.
    pub chunks: u64,
    /// Chunks that differed.
    pub chunks_differing: u64,
    /// Re-read rounds done.
    pub rounds: u32,
}

/// One comparison over every region's source of one table (see the module docs).
pub(crate) struct Engine<'a, S: KeyedSource, C: Classifier<S>> {
    sources: &'a mut [S],
    cls: &'a C,
    opts: EngineOptions,
    plan: Option<S::Plan>,
    row_counts: Vec<u64>,
    /// Differing chunks with their largest row count.
    differing: Vec<(usize, u64)>,
    next: usize,
    listed: Vec<C::Diff>,
    pending: Vec<C::Diff>,
    count: u64,
    in_flight: u64,
    rounds: u32,
    progress: ProgressHandle,
    /// Every region's leaf summaries, with `keep_leaves` or [`Engine::use_summaries`].
    leaves: Vec<Vec<ChunkSummary>>,
}

impl<'a, S: KeyedSource, C: Classifier<S>> Engine<'a, S, C> {
    /// An engine over `sources` (one per region, in region order).
    pub(crate) fn new(sources: &'a mut [S], cls: &'a C, opts: EngineOptions) -> Self {
        let progress = ProgressHandle {
            sink: opts.progress.clone(),
            label: opts.label.clone(),
            done: Default::default(),
        };
        Engine {
            sources,
            cls,
            opts,
            plan: None,
            row_counts: Vec::new(),
            differing: Vec::new(),
            next: 0,
            listed: Vec::new(),
            pending: Vec::new(),
            count: 0,
            in_flight: 0,
            rounds: 0,
            progress,
            leaves: Vec::new(),
        }
    }

    /// The sources.
    pub(crate) fn sources(&self) -> &[S] {
        self.sources
    }

    /// Every phase, without looking at the batches.
    pub(crate) async fn run(mut self, hint: PlanHint) -> Result<Outcome<C::Diff>> {
        self.plan(hint).await?;
        self.summaries().await?;
        while let Some(batch) = self.next_batch().await? {
            self.absorb(batch);
        }
        self.release().await;
        self.recheck().await?;
        Ok(self.finish())
    }

    /// Phase 1: plans the partition.
    pub(crate) async fn plan(&mut self, hint: PlanHint) -> Result<()> {
        if let Some(p) = &self.opts.progress {
            p.start(&self.opts.label, self.opts.total);
        }
        for s in self.sources.iter_mut() {
            s.watch(self.progress.clone());
        }
        self.plan = Some(S::plan(self.sources, hint).await?);
        Ok(())
    }

    /// Phases 1 to 3 from a plan and leaf summaries obtained elsewhere (`check
    /// --incremental`: stored digests plus the re-hashed chunks).
    pub(crate) fn use_summaries(&mut self, plan: S::Plan, sums: Vec<Vec<ChunkSummary>>) {
        if let Some(p) = &self.opts.progress {
            p.start(&self.opts.label, self.opts.total);
        }
        for s in self.sources.iter_mut() {
            s.watch(self.progress.clone());
        }
        self.plan = Some(plan);
        self.row_counts = counts(&sums);
        let len = sums.iter().map(Vec::len).max().unwrap_or(0);
        self.differing = (0..len)
            .filter(|&i| differs(&sums, i))
            .map(|i| (i, max_count(&sums, i)))
            .collect();
        self.leaves = sums;
    }

    /// The plan and the leaf summaries kept (see [`EngineOptions::keep_leaves`]).
    pub(crate) fn leaves(&self) -> Option<(&S::Plan, &[Vec<ChunkSummary>])> {
        Some((self.plan.as_ref()?, &self.leaves))
    }

    /// Phase 2 and 3: summaries (leaves, or level by level) and the differing chunks.
    pub(crate) async fn summaries(&mut self) -> Result<()> {
        let plan = self.plan.as_ref().expect("plan() first");
        let n = S::chunk_count(plan);
        match self.opts.descent {
            Some(f) if f >= 2 && n > f => {
                let mut w = 1usize;
                while n.div_ceil(w) > f {
                    w = w.saturating_mul(f);
                }
                let mut ranges: Vec<(usize, usize)> =
                    (0..n).step_by(w).map(|lo| (lo, (lo + w).min(n))).collect();
                let mut top = true;
                loop {
                    let sums = all_ok(join_all(self.sources.iter_mut().map(|s| {
                        let r = &ranges;
                        async move { s.range_summaries(plan, r).await }
                    })))
                    .await?;
                    if top {
                        self.row_counts = counts(&sums);
                        top = false;
                    }
                    let diff: Vec<(usize, usize, u64)> = ranges
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| differs(&sums, *i))
                        .map(|(i, &(lo, hi))| (lo, hi, max_count(&sums, i)))
                        .collect();
                    if w == 1 || diff.is_empty() {
                        self.differing = diff.into_iter().map(|(lo, _, c)| (lo, c)).collect();
                        break;
                    }
                    w = w.div_ceil(f);
                    ranges = diff
                        .iter()
                        .flat_map(|&(lo, hi, _)| {
                            (lo..hi).step_by(w).map(move |a| (a, (a + w).min(hi)))
                        })
                        .collect();
                }
            }
            _ if !self.opts.keep_leaves => {
                let (counts, differing) = merge_leaves(self.sources, plan).await?;
                self.row_counts = counts;
                self.differing = differing;
            }
            _ => {
                let sums = all_ok(join_all(
                    self.sources
                        .iter_mut()
                        .map(|s| async move { s.chunk_summaries(plan).await }),
                ))
                .await?;
                self.row_counts = counts(&sums);
                // The leaves crossed the network already: compare them in a line.
                let len = sums.iter().map(Vec::len).max().unwrap_or(0);
                self.differing = (0..len)
                    .filter(|&i| differs(&sums, i))
                    .map(|i| (i, max_count(&sums, i)))
                    .collect();
                if self.opts.keep_leaves {
                    self.leaves = sums;
                }
            }
        }
        for s in self.sources.iter() {
            tracing::debug!(
                region = s.region(),
                label = %self.opts.label,
                chunks = n,
                differing = self.differing.len(),
                "summaries compared"
            );
        }
        let read: u64 = self.sources.iter().map(|s| s.stats().rows_read).sum();
        let done = self
            .progress
            .done
            .fetch_max(read, std::sync::atomic::Ordering::Relaxed)
            .max(read);
        if let Some(p) = &self.opts.progress {
            p.update(&self.opts.label, done);
        }
        Ok(())
    }

    /// Phases 4 and 5 for the next batch of differing chunks: the batch's differences
    /// (before any re-read), or `None` when every differing chunk is done.
    pub(crate) async fn next_batch(&mut self) -> Result<Option<Vec<C::Diff>>> {
        if self.next >= self.differing.len() {
            return Ok(None);
        }
        let plan = self.plan.as_ref().expect("plan() first");
        let mut chunks = Vec::new();
        let mut rows = 0u64;
        while let Some(&(c, n)) = self.differing.get(self.next) {
            if !chunks.is_empty()
                && (rows + n > self.opts.batch_rows || chunks.len() >= MAX_BATCH_CHUNKS)
            {
                break;
            }
            chunks.push(c);
            rows += n;
            self.next += 1;
        }
        let lists = all_ok(join_all(self.sources.iter_mut().map(|s| {
            let ch = &chunks;
            async move { s.chunk_rows(plan, ch).await }
        })))
        .await?;
        let lists: Vec<Vec<(S::Key, u128)>> = lists
            .into_iter()
            .map(|mut l| {
                l.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                l.dedup_by(|a, b| a.0 == b.0);
                l
            })
            .collect();
        let candidates: Vec<S::Key> = merkle::diff_rows(&lists)
            .into_iter()
            .map(|d| d.key)
            .collect();
        drop(lists);
        let fetched = fetch_all(self.sources, &candidates, false).await?;
        let mut out = Vec::new();
        for k in &candidates {
            let versions = versions_of(&fetched, k);
            if let Some(d) = self.cls.classify(k, &versions) {
                out.push(d);
            }
        }
        Ok(Some(out))
    }

    /// Takes a batch's differences (after the caller looked at them): kept for re-reading,
    /// or counted and, when among the first `max_listed`, listed.
    pub(crate) fn absorb(&mut self, batch: Vec<C::Diff>) {
        for d in batch {
            if self.opts.rounds > 0 && self.cls.needs_recheck(&d) {
                self.pending.push(d);
            } else {
                self.settle(d);
            }
        }
    }

    fn settle(&mut self, d: C::Diff) {
        self.count += 1;
        if self.cls.in_flight(&d) {
            self.in_flight += 1;
        }
        self.listed.push(d);
        if !self.opts.keep_all {
            if let Some(max) = self.opts.max_listed {
                if self.listed.len() > 2 * max.max(512) {
                    self.trim(max);
                }
            }
        }
    }

    /// Takes the differences settled so far (unsorted), so that the caller can stream
    /// them to the report instead of the engine keeping them (with no `max_listed` and no
    /// `keep_all`: the count stays exact; [`Engine::finish`] returns the rest).
    pub(crate) fn take_settled(&mut self) -> Vec<C::Diff> {
        std::mem::take(&mut self.listed)
    }

    fn trim(&mut self, max: usize) {
        let cls = self.cls;
        self.listed.sort_by(|a, b| cls.order(a, b));
        self.listed.truncate(max);
    }

    /// The snapshot is over: tells every source (PostgreSQL ends its transaction).
    pub(crate) async fn release(&mut self) {
        if let Some(p) = &self.opts.progress {
            p.finish(&self.opts.label);
        }
        join_all(self.sources.iter_mut().map(|s| s.release())).await;
    }

    /// Phase 6: re-reads the differences kept for it, in rounds a pause apart.
    pub(crate) async fn recheck(&mut self) -> Result<()> {
        for _ in 0..self.opts.rounds {
            if self.pending.is_empty() {
                break;
            }
            tokio::time::sleep(self.opts.pause).await;
            self.rounds += 1;
            let keys: Vec<S::Key> = self
                .pending
                .iter()
                .map(|d| self.cls.key(d).clone())
                .collect();
            let fetched = fetch_all(self.sources, &keys, true).await?;
            let old = std::mem::take(&mut self.pending);
            for (d, k) in old.into_iter().zip(&keys) {
                let versions = versions_of(&fetched, k);
                if let Some(d) = self.cls.reclassify(d, &versions) {
                    self.pending.push(d);
                }
            }
        }
        Ok(())
    }

    /// The differences still pending after [`Engine::recheck`] (they go into the result
    /// at [`Engine::finish`]).
    pub(crate) fn pending(&self) -> &[C::Diff] {
        &self.pending
    }

    /// Phase 7: the result.
    pub(crate) fn finish(mut self) -> Outcome<C::Diff> {
        for d in std::mem::take(&mut self.pending) {
            self.settle(d);
        }
        let cls = self.cls;
        self.listed.sort_by(|a, b| cls.order(a, b));
        if !self.opts.keep_all {
            if let Some(max) = self.opts.max_listed {
                self.listed.truncate(max);
            }
        }
        let chunks = self.plan.as_ref().map_or(0, |p| S::chunk_count(p)) as u64;
        Outcome {
            listed: self.listed,
            difference_count: self.count,
            in_flight_count: self.in_flight,
            row_counts: self.row_counts,
            chunks,
            chunks_differing: self.differing.len() as u64,
            rounds: self.rounds,
        }
    }
}

async fn all_ok<T>(f: impl std::future::Future<Output = Vec<Result<T>>>) -> Result<Vec<T>> {
    f.await.into_iter().collect()
}

/// Every region's leaves compared while they stream in, in chunk order
/// ([`KeyedSource::ordered_summaries`]): the rows per region and the differing chunks with
/// their largest row count. Memory is a few batches per region, whatever the chunk count.
async fn merge_leaves<S: KeyedSource>(
    sources: &mut [S],
    plan: &S::Plan,
) -> Result<(Vec<u64>, Vec<(usize, u64)>)> {
    let n = sources.len();
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| tokio::sync::mpsc::channel(4)).unzip();
    let producers = join_all(
        sources
            .iter_mut()
            .zip(txs)
            .map(|(s, tx)| s.ordered_summaries(plan, tx)),
    );
    let consumer = async move {
        let mut cursors: Vec<Cursor> = rxs.into_iter().map(Cursor::new).collect();
        let mut counts = vec![0u64; n];
        let mut differing = Vec::new();
        let mut heads = vec![None; n];
        loop {
            for (h, c) in heads.iter_mut().zip(cursors.iter_mut()) {
                *h = c.peek().await?;
            }
            let Some(i) = heads.iter().flatten().map(|h| h.0).min() else {
                break;
            };
            let mut first = None;
            let (mut differs, mut max) = (false, 0);
            for ((h, c), count) in heads.iter().zip(cursors.iter_mut()).zip(counts.iter_mut()) {
                let s = match h {
                    Some((j, s)) if *j == i => {
                        c.advance();
                        *s
                    }
                    _ => ChunkSummary::default(),
                };
                *count += s.count;
                max = max.max(s.count);
                differs |= *first.get_or_insert(s) != s;
            }
            if differs {
                differing.push((i, max));
            }
        }
        Ok::<_, crate::Error>((counts, differing))
    };
    let (produced, merged) = futures_util::join!(producers, consumer);
    for r in produced {
        r?;
    }
    merged
}

/// One region's stream of ordered leaf summaries.
struct Cursor {
    rx: tokio::sync::mpsc::Receiver<Vec<(usize, ChunkSummary)>>,
    buf: Vec<(usize, ChunkSummary)>,
    pos: usize,
    last: Option<usize>,
}

impl Cursor {
    fn new(rx: tokio::sync::mpsc::Receiver<Vec<(usize, ChunkSummary)>>) -> Self {
        Cursor {
            rx,
            buf: Vec::new(),
            pos: 0,
            last: None,
        }
    }

    /// The next chunk's summary (`None`: the region has no more).
    async fn peek(&mut self) -> Result<Option<(usize, ChunkSummary)>> {
        while self.pos >= self.buf.len() {
            match self.rx.recv().await {
                Some(b) => {
                    self.buf = b;
                    self.pos = 0;
                }
                None => return Ok(None),
            }
        }
        let (i, s) = self.buf[self.pos];
        if self.last.is_some_and(|l| i <= l) {
            return Err(crate::Error::Internal(format!(
                "chunk summaries arrived out of order ({i} after {})",
                self.last.unwrap_or_default()
            )));
        }
        Ok(Some((i, s)))
    }

    fn advance(&mut self) {
        self.last = self.buf.get(self.pos).map(|h| h.0);
        self.pos += 1;
    }
}

fn counts(sums: &[Vec<ChunkSummary>]) -> Vec<u64> {
    sums.iter()
        .map(|s| s.iter().map(|c| c.count).sum())
        .collect()
}

/// Whether summary `i` is not the same in every region (a missing one counts as empty).
fn differs(sums: &[Vec<ChunkSummary>], i: usize) -> bool {
    let get = |s: &Vec<ChunkSummary>| s.get(i).copied().unwrap_or_default();
    let first = sums.first().map(get).unwrap_or_default();
    sums.iter().skip(1).any(|s| get(s) != first)
}

fn max_count(sums: &[Vec<ChunkSummary>], i: usize) -> u64 {
    sums.iter()
        .map(|s| s.get(i).map_or(0, |c| c.count))
        .max()
        .unwrap_or(0)
}

/// Every region's records of `keys`, each list sorted by key.
async fn fetch_all<S: KeyedSource>(
    sources: &mut [S],
    keys: &[S::Key],
    fresh: bool,
) -> Result<Vec<Vec<(S::Key, S::Record)>>> {
    if keys.is_empty() {
        return Ok(sources.iter().map(|_| Vec::new()).collect());
    }
    let lists = all_ok(join_all(sources.iter_mut().map(|s| async move {
        if fresh {
            s.refetch(keys).await
        } else {
            s.fetch(keys).await
        }
    })))
    .await?;
    Ok(lists
        .into_iter()
        .map(|mut l| {
            l.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            l
        })
        .collect())
}

fn versions_of<'r, K: Ord, R>(fetched: &'r [Vec<(K, R)>], key: &K) -> Vec<Option<&'r R>> {
    fetched
        .iter()
        .map(|l| {
            l.binary_search_by(|(k, _)| k.cmp(key))
                .ok()
                .map(|i| &l[i].1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The engine over in-memory sources: random row sets in 2-3 regions, exactly the
    //! differing keys, with and without level-by-level descent.

    use super::*;
    use crate::source::RegionStats;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Rows `key → value` in one region; chunks are ranges of `width` keys.
    struct Mem {
        name: String,
        rows: BTreeMap<u32, u64>,
        stats: RegionStats,
        released: bool,
    }

    fn row_digest(k: u32, v: u64) -> u128 {
        let h = blake3::hash(&[k.to_le_bytes().as_slice(), &v.to_le_bytes()].concat());
        u128::from_le_bytes(h.as_bytes()[..16].try_into().unwrap())
    }

    impl Mem {
        fn leaf(&self, plan: &MemPlan, c: usize) -> ChunkSummary {
            let lo = c as u32 * plan.width;
            let mut s = ChunkSummary::default();
            for (&k, &v) in self.rows.range(lo..lo + plan.width) {
                s.count += 1;
                s.hash = s.hash.wrapping_add(row_digest(k, v));
            }
            s
        }
    }

    struct MemPlan {
        width: u32,
        chunks: usize,
    }

    impl KeyedSource for Mem {
        type Key = u32;
        type Record = u64;
        type Plan = MemPlan;

        fn region(&self) -> &str {
            &self.name
        }

        async fn plan(sources: &mut [Self], hint: PlanHint) -> Result<MemPlan> {
            let max = sources
                .iter()
                .filter_map(|s| s.rows.keys().last().copied())
                .max()
                .unwrap_or(0);
            let width = hint.chunks.unwrap_or(8).max(1) as u32;
            Ok(MemPlan {
                width,
                chunks: (max / width) as usize + 1,
            })
        }

        fn chunk_count(plan: &MemPlan) -> usize {
            plan.chunks
        }

        async fn chunk_summaries(&mut self, plan: &MemPlan) -> Result<Vec<ChunkSummary>> {
            self.stats.bytes_received += 24 * plan.chunks as u64;
            Ok((0..plan.chunks).map(|c| self.leaf(plan, c)).collect())
        }

        async fn range_summaries(
            &mut self,
            plan: &MemPlan,
            ranges: &[(usize, usize)],
        ) -> Result<Vec<ChunkSummary>> {
            // Like a server answering one coarse query: combined over the range's rows.
            self.stats.bytes_received += 24 * ranges.len() as u64;
            Ok(ranges
                .iter()
                .map(|&(lo, hi)| {
                    let mut s = ChunkSummary::default();
                    for c in lo..hi {
                        let l = self.leaf(plan, c);
                        s.count += l.count;
                        s.hash = s.hash.wrapping_add(l.hash);
                    }
                    s
                })
                .collect())
        }

        async fn chunk_rows(
            &mut self,
            plan: &MemPlan,
            chunks: &[usize],
        ) -> Result<Vec<(u32, u128)>> {
            Ok(chunks
                .iter()
                .flat_map(|&c| {
                    let lo = c as u32 * plan.width;
                    self.rows
                        .range(lo..lo + plan.width)
                        .map(|(&k, &v)| (k, row_digest(k, v)))
                })
                .collect())
        }

        async fn fetch(&mut self, keys: &[u32]) -> Result<Vec<(u32, u64)>> {
            assert!(!self.released);
            Ok(keys
                .iter()
                .filter_map(|k| self.rows.get(k).map(|v| (*k, *v)))
                .collect())
        }

        async fn release(&mut self) {
            self.released = true;
        }

        async fn refetch(&mut self, keys: &[u32]) -> Result<Vec<(u32, u64)>> {
            Ok(keys
                .iter()
                .filter_map(|k| self.rows.get(k).map(|v| (*k, *v)))
                .collect())
        }

        fn stats(&self) -> RegionStats {
            self.stats.clone()
        }
    }

    /// A difference: key and which regions lack it.
    struct Cls;
    impl Classifier<Mem> for Cls {
        type Diff = (u32, Vec<usize>);
        fn classify(&self, key: &u32, v: &[Option<&u64>]) -> Option<Self::Diff> {
            let missing: Vec<usize> = (0..v.len()).filter(|&i| v[i].is_none()).collect();
            let present: Vec<u64> = v.iter().flatten().map(|x| **x).collect();
            (!missing.is_empty() || present.iter().any(|x| *x != present[0]))
                .then_some((*key, missing))
        }
        fn needs_recheck(&self, d: &Self::Diff) -> bool {
            d.0 % 2 == 0
        }
        fn reclassify(&self, old: Self::Diff, v: &[Option<&u64>]) -> Option<Self::Diff> {
            self.classify(&old.0, v)
        }
        fn key<'d>(&self, d: &'d Self::Diff) -> &'d u32 {
            &d.0
        }
        fn in_flight(&self, _: &Self::Diff) -> bool {
            false
        }
        fn order(&self, a: &Self::Diff, b: &Self::Diff) -> Ordering {
            a.0.cmp(&b.0)
        }
    }

    fn oracle(regions: &[BTreeMap<u32, u64>]) -> Vec<u32> {
        let mut all: Vec<u32> = regions.iter().flat_map(|r| r.keys().copied()).collect();
        all.sort();
        all.dedup();
        all.into_iter()
            .filter(|k| {
                let v: Vec<_> = regions.iter().map(|r| r.get(k)).collect();
                v.iter().any(|x| *x != v[0])
            })
            .collect()
    }

    fn run(
        regions: &[BTreeMap<u32, u64>],
        width: usize,
        descent: Option<usize>,
        max: Option<usize>,
        batch_rows: u64,
    ) -> (Outcome<(u32, Vec<usize>)>, u64) {
        let mut sources: Vec<Mem> = regions
            .iter()
            .enumerate()
            .map(|(i, r)| Mem {
                name: format!("r{i}"),
                rows: r.clone(),
                stats: RegionStats::default(),
                released: false,
            })
            .collect();
        let opts = EngineOptions {
            descent,
            max_listed: max,
            batch_rows,
            rounds: 1,
            ..EngineOptions::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let out = rt
            .block_on(Engine::new(&mut sources, &Cls, opts).run(PlanHint {
                estimated_rows: 0,
                chunks: Some(width),
            }))
            .unwrap();
        let bytes = sources.iter().map(|s| s.stats.bytes_received).sum();
        (out, bytes)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn finds_exactly_the_differing_keys(
            base in proptest::collection::btree_map(0u32..3000, any::<u64>(), 0..600),
            nregions in 2usize..=3,
            deletes in proptest::collection::vec((0u32..3000, 0usize..3), 0..20),
            updates in proptest::collection::vec((0u32..3000, 0usize..3, any::<u64>()), 0..20),
            width in 1usize..40,
            fanout in 2usize..20,
            batch_rows in 1u64..200,
            max in proptest::option::of(0usize..10),
        ) {
            let mut regions = vec![base.clone(); nregions];
            for (k, r) in deletes { if r < nregions { regions[r].remove(&k); } }
            for (k, r, v) in updates { if r < nregions { regions[r].insert(k, v); } }
            let expected = oracle(&regions);
            for descent in [None, Some(fanout)] {
                let (out, _) = run(&regions, width, descent, None, batch_rows);
                let got: Vec<u32> = out.listed.iter().map(|d| d.0).collect();
                prop_assert_eq!(&got, &expected);
                prop_assert_eq!(out.difference_count, expected.len() as u64);
                for (r, rows) in regions.iter().enumerate() {
                    prop_assert_eq!(out.row_counts[r], rows.len() as u64);
                }
                // Capped: the count stays exact, the first `max` are listed.
                let (capped, _) = run(&regions, width, descent, max, batch_rows);
                prop_assert_eq!(capped.difference_count, expected.len() as u64);
                let want: Vec<u32> = expected.iter().copied().take(max.unwrap_or(usize::MAX)).collect();
                let got: Vec<u32> = capped.listed.iter().map(|d| d.0).collect();
                prop_assert_eq!(got, want);
            }
        }
    }

    /// Leaves that arrive out of chunk order are an error, never a wrong comparison.
    #[test]
    fn out_of_order_leaves_are_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            let s = ChunkSummary { count: 1, hash: 7 };
            tx.send(vec![(3, s), (2, s)]).await.unwrap();
            drop(tx);
            let mut c = Cursor::new(rx);
            assert_eq!(c.peek().await.unwrap(), Some((3, s)));
            c.advance();
            assert!(c.peek().await.is_err());
        });
    }

    /// At low drift, the descent receives fewer summaries than the leaves.
    #[test]
    fn descent_saves_bytes_at_low_drift() {
        let base: BTreeMap<u32, u64> = (0..100_000).map(|k| (k, k as u64)).collect();
        let mut other = base.clone();
        other.insert(77_777, 1);
        other.remove(&5);
        let regions = vec![base, other];
        let (flat, flat_bytes) = run(&regions, 4, None, None, 1000);
        let (tree, tree_bytes) = run(&regions, 4, Some(16), None, 1000);
        let keys =
            |o: &Outcome<(u32, Vec<usize>)>| o.listed.iter().map(|d| d.0).collect::<Vec<_>>();
        assert_eq!(keys(&flat), vec![5, 77_777]);
        assert_eq!(keys(&tree), keys(&flat));
        assert!(tree_bytes * 20 < flat_bytes, "{tree_bytes} vs {flat_bytes}");
    }
}
