//! The keyed-source trait: what the one comparison engine ([`crate::check`]'s `engine`) asks
//! of a PostgreSQL table, a Redis keyspace, or (later) a stored tree.
//!
//! A source holds *records* under *keys* ([`KeyedSource::Key`], an ordered value: a
//! PostgreSQL key is a list of [`crate::Value`]s compared by their canonical bytes, a Redis
//! key is its bytes). Every region's source of one table is cut into the **same** ordered
//! chunks by a partition *plan* ([`KeyedSource::Plan`]): for PostgreSQL, ranges of the first
//! key column between sampled bounds (values; their PostgreSQL text form stays inside the
//! PostgreSQL source, for SQL parameters); for Redis, buckets of a hash of the key. Planning
//! is part of the trait ([`KeyedSource::plan`]) and sees every region's source.
//!
//! A source answers, for the plan:
//! * a summary ([`ChunkSummary`]: row count and an order-independent combined digest) per
//!   chunk ([`KeyedSource::chunk_summaries`]), or per *range of chunks*, a node of the tree
//!   over the chunks ([`KeyedSource::range_summaries`]), so that the engine can compare the
//!   regions level by level, asking below a node only when it differs;
//! * the `(key, 128-bit digest)` pairs of chosen chunks ([`KeyedSource::chunk_rows`]);
//! * the records of chosen keys inside the read's snapshot ([`KeyedSource::fetch`]) and, for
//!   the in-flight re-reads, again after it ([`KeyedSource::refetch`]).
//!
//! # Level by level, or leaves at once?
//!
//! Comparing leaves in a line costs one summary per chunk from each region (for a 1M-row
//! table about 38k chunks, ~0.8 MB per region) in a single pass. Descending a tree of
//! fan-out `F` costs `F` summaries per differing node per level, so at low drift far fewer
//! bytes, but one round trip per level, and for PostgreSQL each level is a query of its own
//! (a "range summary" is one query grouping the rows by coarse bounds, so the top level is a
//! full scan of the table and every further level re-reads the rows under the differing
//! nodes). It therefore pays when bytes are dear and scans cheap: a WAN link between regions,
//! few differences, a table that fits in the servers' cache. It does not pay on a local
//! network, at high drift, or when the source digests on the client anyway (PostgreSQL's
//! stream mode, a Redis keyspace, whose records are all read once by `SCAN`): for those,
//! range summaries are combined from the leaves on the client and save nothing. The engine
//! does either (`descent` option); the leaves-at-once pass is the default.

use std::future::Future;

use super::RegionStats;
pub(crate) use super::merkle::ChunkSummary;
use crate::error::Result;
use crate::progress::ProgressSink;

/// What planning the partition may use: the caller's estimate of the rows per region and
/// a forced number of chunks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlanHint {
    /// Estimated rows (or keys) per region; 0 when unknown.
    pub estimated_rows: u64,
    /// Forces about this many chunks (default: the source's own choice).
    pub chunks: Option<usize>,
}

/// Where a source reports rows read while it reads them (a Redis scan, a stream), for
/// progress bars.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProgressHandle {
    /// The sink, when anyone listens.
    pub sink: ProgressSink,
    /// The work's label (a table, a cache database).
    pub label: String,
    /// Rows read so far by every source of the comparison.
    pub done: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl ProgressHandle {
    /// `n` more rows read.
    pub(crate) fn add(&self, n: u64) {
        let total = self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
        if let Some(p) = &self.sink {
            p.update(&self.label, total);
        }
    }
}

/// A keyed source in one region (see the module docs).
pub(crate) trait KeyedSource: Send {
    /// A key: ordered so that every region's rows of a chunk can be merged.
    type Key: Clone + Ord + Send + Sync;
    /// What [`KeyedSource::fetch`] returns for a key (a row, a Redis record).
    type Record: Send + Sync;
    /// The partition every region's source is cut by.
    type Plan: Send + Sync;

    /// The region's name.
    fn region(&self) -> &str;

    /// Plans the partition for `sources` (every region's source of one table).
    fn plan(
        sources: &mut [Self],
        hint: PlanHint,
    ) -> impl Future<Output = Result<Self::Plan>> + Send
    where
        Self: Sized;

    /// Number of chunks of a plan (leaves of the tree).
    fn chunk_count(plan: &Self::Plan) -> usize;

    /// One summary per chunk (`chunk_count` of them).
    fn chunk_summaries(
        &mut self,
        plan: &Self::Plan,
    ) -> impl Future<Output = Result<Vec<ChunkSummary>>> + Send;

    /// Every chunk's summary in increasing chunk order (empty chunks may be left out), sent
    /// to `out` in batches as they arrive, so that the engine compares the regions' leaves
    /// while they stream in and keeps none of them. Stops quietly when `out` is closed.
    /// Default: [`KeyedSource::chunk_summaries`], then sent.
    fn ordered_summaries(
        &mut self,
        plan: &Self::Plan,
        out: SummarySender,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            let sums = self.chunk_summaries(plan).await?;
            send_in_order(sums, out).await;
            Ok(())
        }
    }

    /// One summary per range of chunks `[lo, hi)` (ranges sorted and disjoint). Two regions'
    /// summaries of the same range are equal exactly when (but for a 2^-64 collision) their
    /// chunk summaries are all equal.
    fn range_summaries(
        &mut self,
        plan: &Self::Plan,
        ranges: &[(usize, usize)],
    ) -> impl Future<Output = Result<Vec<ChunkSummary>>> + Send;

    /// The `(key, digest)` pairs of the chunks `chunks` (increasing), in any order.
    fn chunk_rows(
        &mut self,
        plan: &Self::Plan,
        chunks: &[usize],
    ) -> impl Future<Output = Result<Vec<(Self::Key, u128)>>> + Send;

    /// The records of `keys` that exist, read in the comparison's snapshot.
    fn fetch(
        &mut self,
        keys: &[Self::Key],
    ) -> impl Future<Output = Result<Vec<(Self::Key, Self::Record)>>> + Send;

    /// The snapshot is over (no more `chunk_rows` or `fetch`): end the transaction, drop
    /// what was kept for it.
    fn release(&mut self) -> impl Future<Output = ()> + Send;

    /// The records of `keys` that exist now (after [`KeyedSource::release`]: in-flight
    /// re-reads).
    fn refetch(
        &mut self,
        keys: &[Self::Key],
    ) -> impl Future<Output = Result<Vec<(Self::Key, Self::Record)>>> + Send;

    /// Where to report rows read while reading (default: nowhere).
    fn watch(&mut self, _progress: ProgressHandle) {}

    /// Work done so far.
    fn stats(&self) -> RegionStats;
}

/// Where [`KeyedSource::ordered_summaries`] sends its batches.
pub(crate) type SummarySender = tokio::sync::mpsc::Sender<Vec<(usize, ChunkSummary)>>;

/// Summaries batched for a [`SummarySender`] (one channel message per batch, not per
/// chunk).
pub(crate) struct SummaryBatch {
    out: SummarySender,
    buf: Vec<(usize, ChunkSummary)>,
}

impl SummaryBatch {
    const LEN: usize = 4096;

    pub(crate) fn new(out: SummarySender) -> Self {
        SummaryBatch {
            out,
            buf: Vec::with_capacity(Self::LEN),
        }
    }

    /// Adds chunk `i`'s summary; `false` when the receiver is gone (stop reading).
    pub(crate) async fn push(&mut self, i: usize, s: ChunkSummary) -> bool {
        self.buf.push((i, s));
        if self.buf.len() < Self::LEN {
            return true;
        }
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(Self::LEN));
        self.out.send(full).await.is_ok()
    }

    /// Sends what is left.
    pub(crate) async fn flush(self) {
        if !self.buf.is_empty() {
            let _ = self.out.send(self.buf).await;
        }
    }
}

/// Sends every non-empty summary of `sums` (chunk `i` at `i`) in chunk order.
pub(crate) async fn send_in_order(sums: Vec<ChunkSummary>, out: SummarySender) {
    let mut batch = SummaryBatch::new(out);
    for (i, s) in sums.into_iter().enumerate() {
        if s != ChunkSummary::default() && !batch.push(i, s).await {
            return;
        }
    }
    batch.flush().await;
}

/// Combines leaf summaries into range summaries on the client: the node hash of a range
/// is a blake3 hash over its leaves (a region lacking a chunk's rows compares as empty).
/// For sources whose leaves are computed on the client anyway.
pub(crate) fn combine_ranges(
    leaves: &[ChunkSummary],
    ranges: &[(usize, usize)],
) -> Vec<ChunkSummary> {
    ranges
        .iter()
        .map(|&(lo, hi)| {
            let mut h = blake3::Hasher::new();
            let mut count = 0u64;
            for s in leaves.get(lo..hi.min(leaves.len())).unwrap_or_default() {
                count += s.count;
                h.update(&s.count.to_le_bytes());
                h.update(&s.hash.to_le_bytes());
            }
            let mut b = [0u8; 16];
            b.copy_from_slice(&h.finalize().as_bytes()[..16]);
            ChunkSummary {
                count,
                hash: u128::from_le_bytes(b),
            }
        })
        .collect()
}
