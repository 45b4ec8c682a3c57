//! `check --incremental`: re-hash only the chunks that may have changed since the last
//! pass (see `docs/incremental.md`).
//!
//! Per table and region the state file ([`super::state`]) keeps the chunk bounds, each
//! chunk's row count and digest, and the time from which changes must be looked for. An
//! incremental pass reuses the stored bounds and, in every region:
//!
//! * finds the chunks holding a row whose tracking column is at least that time minus a
//!   safety margin (`SELECT DISTINCT chunk(k) FROM t WHERE tracking >= $1`, through an
//!   index on the tracking column);
//! * counts the rows of about [`COUNT_RANGES`] key ranges of consecutive chunks (one
//!   index range scan of the key each, an index-only scan where the visibility map allows),
//!   so that deletes and inserts that did not set the tracking column show as a changed
//!   count;
//!
//! then re-hashes, in every region, the union of those chunks plus the chunks that differed
//! between regions last time (a region that received a change late, or that `fix` repaired
//! with an older tracking value, is covered by them). A range whose count differs from the
//! sum of its chunks' counts (stored, or new for the chunks just re-hashed) has its chunks
//! counted one by one, and those whose count changed are re-hashed too ([`pick_chunks`]).
//! Every other chunk keeps its stored digest. The comparison across regions then proceeds
//! as in a full pass.
//!
//! A full pass is taken instead, and said why in the report, when the table has no
//! timestamp tracking column, no index leading with it, when there is no usable stored
//! entry (first run, unreadable or other-version file, columns / key / filter / mode /
//! tool version changed, another server, TRUNCATE or VACUUM FULL), in stream mode, and at
//! least every `full_every` runs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::future::join_all;
use serde::Serialize;

use super::TableCheck;
use super::report::TableStatus;
use super::state::{self, EvenBounds, RegionState, StateFile, TableState};
use crate::config::Resolution;
use crate::error::Result;
use crate::pg::schema::{Column, TableSchema};
use crate::pg::types::{self, oid};
use crate::row::value::Value;
use crate::source::merkle::{self, ChunkSummary};
use crate::source::{Chunking, Mode, PgSource, RegionMarks, TableSpec};

/// `--incremental` settings.
#[derive(Debug, Clone)]
pub struct IncrementalOptions {
    /// The state file (`--state`; default: `$EDEN_RECONCILE_STATE`, else the XDG state directory; see `docs/incremental.md`).
    pub state_path: PathBuf,
    /// A full pass at least every this many runs of a table (`--full-every`, default 7; 1
    /// makes every run a full pass that refreshes the state).
    pub full_every: u32,
    /// Rows whose tracking value is at most this much older than the last pass's
    /// snapshot are looked at again (`--change-margin`, default 15 minutes): it must
    /// exceed the longest write transaction and the clock skew between the writers and the
    /// servers.
    pub margin: Duration,
}

impl Default for IncrementalOptions {
    fn default() -> Self {
        IncrementalOptions {
            state_path: state::default_path(),
            full_every: 7,
            margin: Duration::from_secs(15 * 60),
        }
    }
}

/// The `incremental` object of a table's report entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncrementalReport {
    /// Every chunk was hashed (no usable state, or the periodic full pass).
    pub full_pass: bool,
    /// Why a full pass, or what an incremental pass looked for.
    pub reason: String,
    /// Chunks the table is cut into.
    pub chunks_total: u64,
    /// Chunks hashed in this run (all of them for a full pass).
    pub chunks_rehashed: u64,
    /// Chunks holding a row whose tracking value is recent enough.
    pub chunks_changed: u64,
    /// Chunks whose row count changed (deletes, untracked inserts) in some region.
    pub chunks_count_changed: u64,
    /// Chunks that differed between regions in the last pass.
    pub chunks_differing_before: u64,
    /// Key ranges (of consecutive chunks) whose rows were counted to find deletes and
    /// untracked inserts (incremental passes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_ranges: Option<u64>,
    /// Of those, the ranges whose count disagreed with the stored one in some region,
    /// whose chunks were then counted one by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_ranges_refined: Option<u64>,
    /// The tracking column looked at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_column: Option<String>,
    /// Rows with a tracking value from this time on were looked at (the earliest region's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes_since: Option<String>,
    /// When the last full pass ran (this run's time for a full pass).
    pub last_full_pass_at: String,
    /// Incremental passes since the last full one, this one included.
    pub runs_since_full_pass: u32,
}

/// One run's incremental bookkeeping: the state as loaded, and the entries this run will
/// write once it has succeeded.
pub(crate) struct RunState {
    opts: IncrementalOptions,
    database: String,
    scope: String,
    /// The state file as loaded; each table's entry is taken out when its pass begins
    /// (the file is read again to be written).
    loaded: Mutex<Option<StateFile>>,
    /// Whether a usable state file was found.
    had_file: bool,
    load_problem: Option<String>,
    staged: Mutex<Vec<(String, String, TableState)>>,
}

impl RunState {
    /// Reads the state file (a missing or unusable one means full passes).
    pub(crate) fn load(opts: &IncrementalOptions, database: &str, scope: &str) -> RunState {
        let (loaded, load_problem) = match StateFile::load(&opts.state_path) {
            Ok(f) => (f, None),
            Err(m) => (None, Some(m)),
        };
        RunState {
            opts: opts.clone(),
            database: database.to_string(),
            scope: scope.to_string(),
            had_file: loaded.is_some(),
            loaded: Mutex::new(loaded),
            load_problem,
            staged: Mutex::new(Vec::new()),
        }
    }

    /// Writes the entries of the tables that were compared (`consistent` or `divergent`)
    /// into the state file, keeping every other entry. Called only after a successful run.
    pub(crate) fn save(self: std::sync::Arc<Self>, checks: &[TableCheck]) -> Result<()> {
        let staged = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|e| e.into_inner()));
        if staged.is_empty() && self.had_file {
            return Ok(());
        }
        // The state as loaded is not needed any more (the file is read again below): the
        // last reference lets it go, so that it is not held twice at the peak.
        let path = self.opts.state_path.clone();
        drop(self);
        // Re-read: another run may have written other tables meanwhile.
        let mut file = match StateFile::load(&path) {
            Ok(Some(f)) => f,
            _ => StateFile {
                version: state::STATE_VERSION,
                ..StateFile::default()
            },
        };
        for (table, key, entry) in staged {
            let ok = checks.iter().any(|c| {
                c.table.to_string() == table
                    && matches!(
                        c.report.status,
                        TableStatus::Consistent | TableStatus::Divergent
                    )
            });
            if ok {
                file.tables.insert(key, entry);
            }
        }
        file.save(&path)
    }
}

/// The tracking column of a rule, when it names one.
fn rule_tracking(res: &Resolution) -> Option<&str> {
    match res {
        Resolution::LastWriteWins { tracking_column }
        | Resolution::FirstWriteWins { tracking_column } => tracking_column.as_deref(),
        Resolution::ColumnMerge {
            tracking_column, ..
        } => tracking_column.as_deref(),
        _ => None,
    }
}

/// A table's incremental pass in progress.
pub(crate) struct TablePass {
    table: String,
    key: String,
    fingerprint: String,
    full: bool,
    reason: String,
    marks: Vec<RegionMarks>,
    names: Vec<String>,
    /// The stored entry's last full pass and incremental runs since.
    prev: Option<(chrono::DateTime<chrono::Utc>, u32)>,
    tracking: Option<String>,
    snapshot_unix_us: i64,
    counts: [u64; 4],
    coarse: Option<(u64, u64)>,
    since: Option<i64>,
}

fn fingerprint(spec: &TableSpec, mode: Mode, tracking: Option<&str>, names: &[String]) -> String {
    let mut h = blake3::Hasher::new();
    let mut put = |s: &str| {
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    put(env!("CARGO_PKG_VERSION"));
    put(&state::STATE_VERSION.to_string());
    put(mode.as_str());
    put(&spec.table.to_string());
    for c in spec.key.iter().chain(&spec.columns) {
        put(&c.name);
        put(&c.type_name);
        put(c.collation.as_deref().unwrap_or(""));
    }
    // Chunks of the whole composite key (bounds stored as arrays), not of its first column.
    put(if spec.composite() {
        "whole-key chunks"
    } else {
        ""
    });
    put(spec.filter.as_deref().unwrap_or(""));
    put(tracking.unwrap_or(""));
    for n in names {
        put(n);
    }
    h.finalize().to_hex()[..32].to_string()
}

/// The bounds as stored: as PostgreSQL prints them, or for whole-key (composite) chunks a
/// JSON array of the columns' texts per bound.
fn stored_bounds(chunking: &Chunking) -> Vec<String> {
    if chunking.tuple_text.is_empty() {
        return chunking.bound_texts();
    }
    (0..chunking.bound_count())
        .map(|i| {
            let texts: Vec<&String> = chunking.tuple_text.iter().map(|col| &col[i]).collect();
            serde_json::to_string(&texts).unwrap_or_default()
        })
        .collect()
}

fn micros_to_text(us: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_default()
}

/// Decides between a full and an incremental pass for one table and, for an incremental
/// one, computes every region's chunk summaries (stored ones reused, possibly changed ones
/// re-hashed). `None` as the second value: take a full pass and call
/// [`TablePass::finish`] with its result.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn begin(
    run: &RunState,
    sources: &mut [PgSource<'_>],
    spec: &TableSpec,
    first: &TableSchema,
    resolution: &Resolution,
    mode: Mode,
    names: &[String],
    snapshot_unix_us: i64,
) -> Result<(TablePass, Option<(Chunking, Vec<Vec<ChunkSummary>>)>)> {
    let table = spec.table.to_string();
    let key = state::entry_key(&run.database, &table, &run.scope);
    let mut problem: Option<String> = None;
    let tracking: Option<&Column> = match rule_tracking(resolution) {
        None => {
            problem = Some(
                "the table's rule names no tracking_column (last_write_wins / first_write_wins with tracking_column:), so changes cannot be found".into(),
            );
            None
        }
        Some(name) => match first.column(name) {
            None => {
                problem = Some(format!("tracking column {name} does not exist"));
                None
            }
            Some(c)
                if !matches!(
                    types::ColumnType::effective_oid(c),
                    oid::TIMESTAMP | oid::TIMESTAMPTZ
                ) =>
            {
                problem = Some(format!(
                    "tracking column {name} is not a timestamp ({})",
                    c.type_name
                ));
                None
            }
            Some(c) => Some(c),
        },
    };
    let tracking_name = tracking.map(|c| c.name.clone());
    let marks: Vec<RegionMarks> = join_all(
        sources
            .iter_mut()
            .map(|s| async move { s.incremental_marks(tracking).await }),
    )
    .await
    .into_iter()
    .collect::<Result<_>>()?;
    let fp = fingerprint(spec, mode, tracking_name.as_deref(), names);
    // Owned, so that the stored digests are freed once unpacked (before the new ones are
    // packed).
    let prev_entry = run
        .loaded
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
        .and_then(|f| f.tables.remove(&key));
    let prev = prev_entry.as_ref();
    let mut pass = TablePass {
        table,
        key,
        fingerprint: fp.clone(),
        full: true,
        reason: String::new(),
        marks,
        names: names.to_vec(),
        prev: prev.map(|p| (p.last_full_pass_at, p.runs_since_full)),
        tracking: tracking_name.clone(),
        snapshot_unix_us,
        counts: [0; 4],
        coarse: None,
        since: None,
    };
    let unindexed = pass
        .marks
        .iter()
        .zip(names)
        .find(|(m, _)| !m.tracking_indexed)
        .map(|(_, n)| n.clone());
    let why_full: Option<String> = if let Some(p) = &run.load_problem {
        Some(p.clone())
    } else if mode != Mode::Pushdown {
        Some("incremental re-checks need pushdown mode".into())
    } else if let Some(p) = problem {
        Some(p)
    } else if let Some(r) = unindexed.filter(|_| tracking.is_some()) {
        Some(format!(
            "no index leads with tracking column {} in region {r}; create one to allow incremental re-checks",
            tracking_name.as_deref().unwrap_or_default()
        ))
    } else if let Some(prev) = prev {
        let same_regions = prev.regions.len() == names.len()
            && prev.regions.iter().zip(names).all(|(r, n)| r.region == *n);
        let moved = prev
            .regions
            .iter()
            .zip(&pass.marks)
            .find(|(r, m)| r.system_id != m.system_id || r.filenodes != m.filenodes)
            .map(|(r, _)| r.region.clone());
        if prev.fingerprint != fp || !same_regions {
            Some("the table's columns, key, filter, regions or the tool's version changed since the stored pass".into())
        } else if let Some(r) = moved {
            Some(format!(
                "region {r}'s server or the table's storage changed since the stored pass (another server, TRUNCATE, VACUUM FULL or a restore)"
            ))
        } else if prev.runs_since_full + 1 >= run.opts.full_every.max(1) {
            Some(format!(
                "a full pass every {} runs (--full-every)",
                run.opts.full_every.max(1)
            ))
        } else {
            None
        }
    } else {
        Some("no stored state for this table (first run)".into())
    };
    if let Some(why) = why_full {
        pass.reason = why;
        return Ok((pass, None));
    }
    let (Some(prev), Some(tracking)) = (prev, tracking.cloned()) else {
        pass.reason = "no stored state for this table (first run)".into();
        return Ok((pass, None));
    };

    // Stored bounds and summaries.
    let t0 = std::time::Instant::now();
    let int_key = matches!(
        types::ColumnType::effective_oid(&spec.key[0]),
        oid::INT2 | oid::INT4 | oid::INT8
    );
    let mut chunking = Chunking::default();
    if let Some(e) = prev.even_bounds.filter(|e| {
        // The last bound must fit in 64 bits.
        let last = i64::try_from(e.count.saturating_sub(1))
            .ok()
            .and_then(|c| c.checked_mul(e.width))
            .and_then(|d| d.checked_add(e.lo));
        int_key && e.width > 0 && prev.bounds.is_empty() && last.is_some()
    }) {
        chunking = Chunking::even(e.lo, e.width, e.count);
    } else if prev.even_bounds.is_some() {
        pass.reason = "the stored chunk bounds are unusable".into();
        return Ok((pass, None));
    }
    if spec.composite() {
        // Whole-key bounds: each stored as a JSON array of its columns' texts.
        chunking.tuple_text = vec![Vec::new(); spec.key.len()];
        for b in &prev.bounds {
            match serde_json::from_str::<Vec<String>>(b) {
                Ok(texts) if texts.len() == spec.key.len() => {
                    chunking.push_bound(Value::Text(texts[0].clone()), texts[0].clone());
                    for (col, t) in chunking.tuple_text.iter_mut().zip(texts) {
                        col.push(t);
                    }
                }
                _ => {
                    pass.reason = "the stored chunk bounds are unusable".into();
                    return Ok((pass, None));
                }
            }
        }
    }
    for b in prev.bounds.iter().filter(|_| !spec.composite()) {
        let v = if int_key {
            match b.parse::<i64>() {
                Ok(x) => Value::Int(x),
                Err(_) => {
                    pass.reason = "the stored chunk bounds are unusable".into();
                    return Ok((pass, None));
                }
            }
        } else {
            Value::Text(b.clone())
        };
        chunking.push_bound(v, b.clone());
    }
    let mut stored: Vec<Vec<ChunkSummary>> = Vec::new();
    for r in &prev.regions {
        match r.unpack().filter(|s| s.len() == chunking.len()) {
            Some(s) => stored.push(s),
            None => {
                pass.reason = "the stored chunk digests are unusable".into();
                return Ok((pass, None));
            }
        }
    }
    chunking.detect_arith();
    tracing::debug!(
        chunks = chunking.len(),
        ms = t0.elapsed().as_millis() as u64,
        "incremental: stored state unpacked"
    );
    let margin = run.opts.margin.as_micros().min(i64::MAX as u128) as i64;
    let thresholds: Vec<i64> = prev
        .regions
        .iter()
        .map(|r| r.changes_since_us.saturating_sub(margin))
        .collect();
    let by_index = pass.marks.iter().all(|m| m.key_indexed);
    let picked = pick_chunks(sources, &chunking, &tracking, &thresholds, stored, by_index).await?;
    let summaries = picked.summaries;
    for s in sources.iter_mut() {
        // Every chunk is accounted for; the reused ones were not read again.
        s.stats.chunks = chunking.len() as u64;
    }
    pass.full = false;
    pass.counts = [
        picked.rehashed,
        picked.changed,
        picked.count_changed,
        picked.before,
    ];
    pass.coarse = Some((picked.coarse_ranges, picked.coarse_refined));
    pass.since = thresholds.iter().copied().min();
    pass.reason = format!(
        "re-hashed the chunks holding rows whose {} is at least {} (the last pass's snapshot minus a {}s margin), whose row count changed (counted by key range), or that differed last time",
        tracking.name,
        pass.since.map(micros_to_text).unwrap_or_default(),
        run.opts.margin.as_secs()
    );
    Ok((pass, Some((chunking, summaries))))
}

/// About this many key ranges are counted per region to find deletes (and untracked
/// inserts); each covers `chunks / COUNT_RANGES` consecutive chunks.
const COUNT_RANGES: usize = 1000;

/// What [`pick_chunks`] found and computed.
struct Picked {
    /// Every region's summaries: stored ones, re-hashed ones replaced.
    summaries: Vec<Vec<ChunkSummary>>,
    rehashed: u64,
    changed: u64,
    count_changed: u64,
    before: u64,
    coarse_ranges: u64,
    coarse_refined: u64,
}

/// Re-hashes, in every region, the chunks that may have changed, and returns every
/// region's summaries (the stored ones elsewhere):
///
/// 1. per region, the chunks holding rows whose tracking value is recent enough, and the
///    row count of each of about [`COUNT_RANGES`] key ranges of consecutive chunks (one
///    index range scan each, or one scan grouping by range without a usable key index);
/// 2. those chunks and the ones that differed last time are re-hashed;
/// 3. a range whose count differs from the sum of its chunks' counts (stored ones, and
///    the new ones of the chunks just re-hashed) lost rows (or gained untracked ones) in
///    a chunk not re-hashed: its chunks are counted one by one (or, without a key index,
///    all re-hashed), and those whose count changed re-hashed.
async fn pick_chunks(
    sources: &mut [PgSource<'_>],
    chunking: &Chunking,
    tracking: &Column,
    thresholds: &[i64],
    stored: Vec<Vec<ChunkSummary>>,
    by_index: bool,
) -> Result<Picked> {
    let t0 = std::time::Instant::now();
    // Re-hashing reads whole-key ranges through the key's index; counting by index reads
    // ranges of the first key column only, so a table chunked by its whole key counts in
    // one grouping scan.
    let count_by_index = by_index && sources.iter().all(|s| !s.whole_key_chunks());
    let m = chunking.bound_count().div_ceil(COUNT_RANGES).max(1);
    let (coarse, groups) = chunking.coarsen(m);
    let found: Vec<(Vec<usize>, Vec<u64>)> =
        join_all(sources.iter_mut().zip(thresholds).map(|(s, &since)| {
            let (ch, co) = (chunking, &coarse);
            async move {
                let changed = s.changed_chunks(ch, tracking, since).await?;
                let counts = if count_by_index {
                    let all: Vec<usize> = (0..co.len()).collect();
                    s.range_counts(co, &all).await?
                } else {
                    s.chunk_counts(co).await?
                };
                Ok::<_, crate::error::Error>((changed, counts))
            }
        }))
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let changed: BTreeSet<usize> = found
        .iter()
        .flat_map(|(ch, _)| ch.iter().copied())
        .filter(|&c| c < chunking.len())
        .collect();
    tracing::debug!(
        changed = changed.len(),
        ranges = groups.len(),
        ms = t0.elapsed().as_millis() as u64,
        "incremental: changed chunks found, ranges counted"
    );
    let before: BTreeSet<usize> = merkle::differing_chunks(&stored).into_iter().collect();
    let first: BTreeSet<usize> = changed.union(&before).copied().collect();
    let mut summaries = stored;
    let mut count_changed = rehash(sources, chunking, &first, &mut summaries, by_index).await?;
    tracing::debug!(
        chunks = first.len(),
        ms = t0.elapsed().as_millis() as u64,
        "incremental: changed chunks re-hashed"
    );

    // Ranges whose count is off: their chunks not re-hashed yet are counted (or re-hashed).
    let mut refined: BTreeSet<usize> = BTreeSet::new();
    let mut to_count: Vec<Vec<usize>> = vec![Vec::new(); sources.len()];
    let mut more: BTreeSet<usize> = BTreeSet::new();
    for (ri, (_, counts)) in found.iter().enumerate() {
        for (j, &(a, b)) in groups.iter().enumerate() {
            let expected: u64 = summaries[ri][a..b].iter().map(|s| s.count).sum();
            if counts.get(j).copied().unwrap_or(0) == expected {
                continue;
            }
            refined.insert(j);
            let rest = (a..b).filter(|c| !first.contains(c));
            if count_by_index && b - a > 1 {
                to_count[ri].extend(rest);
            } else {
                more.extend(rest);
            }
        }
    }
    if to_count.iter().any(|c| !c.is_empty()) {
        let fine: Vec<Vec<u64>> =
            join_all(sources.iter_mut().zip(&to_count).map(|(s, cs)| async move {
                if cs.is_empty() {
                    Ok(Vec::new())
                } else {
                    s.range_counts(chunking, cs).await
                }
            }))
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        for (ri, (cs, counts)) in to_count.iter().zip(&fine).enumerate() {
            for (&c, &now) in cs.iter().zip(counts) {
                if summaries[ri][c].count != now {
                    more.insert(c);
                }
            }
        }
    }
    let more: BTreeSet<usize> = more.difference(&first).copied().collect();
    count_changed.extend(rehash(sources, chunking, &more, &mut summaries, by_index).await?);
    tracing::debug!(
        refined = refined.len(),
        chunks = more.len(),
        ms = t0.elapsed().as_millis() as u64,
        "incremental: ranges refined, chunks whose count changed re-hashed"
    );
    Ok(Picked {
        summaries,
        rehashed: (first.len() + more.len()) as u64,
        changed: changed.len() as u64,
        count_changed: count_changed.len() as u64,
        before: before.len() as u64,
        coarse_ranges: groups.len() as u64,
        coarse_refined: refined.len() as u64,
    })
}

/// Re-hashes `chunks` in every region into `summaries`; returns those whose row count
/// changed in some region.
async fn rehash(
    sources: &mut [PgSource<'_>],
    chunking: &Chunking,
    chunks: &BTreeSet<usize>,
    summaries: &mut [Vec<ChunkSummary>],
    by_index: bool,
) -> Result<BTreeSet<usize>> {
    let mut count_changed = BTreeSet::new();
    if chunks.is_empty() {
        return Ok(count_changed);
    }
    let list: Vec<usize> = chunks.iter().copied().collect();
    let fresh: Vec<Vec<(usize, ChunkSummary)>> = join_all(
        sources
            .iter_mut()
            .map(|s| s.summaries_of(chunking, &list, by_index)),
    )
    .await
    .into_iter()
    .collect::<Result<_>>()?;
    for (sums, f) in summaries.iter_mut().zip(fresh) {
        let old: Vec<u64> = list
            .iter()
            .map(|&c| sums.get(c).map_or(0, |s| s.count))
            .collect();
        for &c in &list {
            if let Some(slot) = sums.get_mut(c) {
                *slot = ChunkSummary::default();
            }
        }
        for (c, s) in f {
            if let Some(slot) = sums.get_mut(c) {
                *slot = s;
            }
        }
        for (&c, o) in list.iter().zip(old) {
            if sums.get(c).map_or(0, |s| s.count) != o {
                count_changed.insert(c);
            }
        }
    }
    Ok(count_changed)
}

impl TablePass {
    /// Stages the table's new state entry (written when the run succeeds) and returns the
    /// report's `incremental` object.
    pub(crate) fn finish(
        self,
        run: &RunState,
        chunking: &Chunking,
        summaries: &[Vec<ChunkSummary>],
    ) -> IncrementalReport {
        let now = chrono::Utc::now();
        let (last_full, runs) = match (self.prev, self.full) {
            (Some((at, runs)), false) => (at, runs + 1),
            _ => (now, 0),
        };
        let regions: Vec<RegionState> = self
            .names
            .iter()
            .zip(&self.marks)
            .zip(summaries)
            .map(|((n, m), s)| RegionState {
                region: n.clone(),
                system_id: m.system_id.clone(),
                filenodes: m.filenodes.clone(),
                changes_since_us: [
                    Some(self.snapshot_unix_us),
                    Some(m.txn_start_us),
                    m.oldest_xact_us,
                    m.max_tracking_us,
                ]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(self.snapshot_unix_us),
                summaries: RegionState::pack(s),
            })
            .collect();
        // Only a table with a usable tracking column can be re-checked incrementally;
        // others keep no state (they always take a full pass).
        if self.tracking.is_some() {
            let entry = TableState {
                database: run.database.clone(),
                table: self.table.clone(),
                scope: run.scope.clone(),
                fingerprint: self.fingerprint.clone(),
                bounds: if chunking.arith().is_some() {
                    Vec::new()
                } else {
                    stored_bounds(chunking)
                },
                even_bounds: chunking.arith().map(|(lo, width)| EvenBounds {
                    lo,
                    width,
                    count: chunking.bound_count(),
                }),
                regions,
                last_full_pass_at: last_full,
                runs_since_full: runs,
                checked_at: now,
            };
            run.staged.lock().unwrap_or_else(|e| e.into_inner()).push((
                self.table.clone(),
                self.key.clone(),
                entry,
            ));
        }
        let total = chunking.len() as u64;
        IncrementalReport {
            full_pass: self.full,
            reason: self.reason,
            chunks_total: total,
            chunks_rehashed: if self.full { total } else { self.counts[0] },
            chunks_changed: self.counts[1],
            chunks_count_changed: self.counts[2],
            chunks_differing_before: self.counts[3],
            count_ranges: self.coarse.map(|c| c.0),
            count_ranges_refined: self.coarse.map(|c| c.1),
            tracking_column: self.tracking,
            changes_since: self.since.map(micros_to_text),
            last_full_pass_at: last_full.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            runs_since_full_pass: runs,
        }
    }
}

impl super::Checker {
    /// With `--incremental`: loads the state for this run.
    pub(super) fn begin_incremental(&self, opts: &super::CheckOptions) {
        let run = opts.incremental.as_ref().map(|o| {
            let scope = opts
                .shard
                .as_ref()
                .map_or_else(|| "all".to_string(), |s| s.shard.to_string());
            std::sync::Arc::new(RunState::load(o, &self.database, &scope))
        });
        *self.inc_run.lock().unwrap_or_else(|e| e.into_inner()) = run;
    }

    /// The run's incremental state, if any.
    pub(super) fn incremental_run(&self) -> Option<std::sync::Arc<RunState>> {
        self.inc_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// After a successful run: the shard ranges into the reports, the state file written.
    pub(super) fn finish_run(
        &self,
        mut checks: Vec<TableCheck>,
        opts: &super::CheckOptions,
    ) -> Result<Vec<TableCheck>> {
        for c in &mut checks {
            c.report.shard_range = self.shard_range(&c.table, opts).map(|(r, _)| r);
        }
        if let Some(run) = self
            .inc_run
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            run.save(&checks)?;
        }
        Ok(checks)
    }
}
