//! `check --incremental`: re-hash only the chunks that may have changed since the last
//! pass (see `docs/incremental.md`).
//!
//! Per table and region the state file ([`super::state`]) keeps the chunk bounds, each
//! chunk's row count and digest, and the time from which changes must be looked for. An
//! incremental pass reuses the stored bounds and, in every region:
//!
//! * finds the chunks holding a row whose tracking column is at least that time minus a
//!   safety margin (`SELECT DISTINCT width_bucket(k, bounds) FROM t WHERE tracking >= $1`,
//!   through an index on the tracking column);
//! * counts the rows of every chunk (reading the key only: an index-only scan where the
//!   visibility map allows), so that deletes and inserts that did not set the tracking
//!   column show as a changed count;
//!
//! then re-hashes, in every region, the union of those chunks plus the chunks that differed
//! between regions last time (a region that received a change late, or that `fix` repaired
//! with an older tracking value, is covered by them), and reuses the stored digests of
//! every other chunk. The comparison across regions then proceeds as in a full pass.
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
use super::state::{self, RegionState, StateFile, TableState};
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
    loaded: Option<StateFile>,
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
            loaded,
            load_problem,
            staged: Mutex::new(Vec::new()),
        }
    }

    /// Writes the entries of the tables that were compared (`consistent` or `divergent`)
    /// into the state file, keeping every other entry. Called only after a successful run.
    pub(crate) fn save(&self, checks: &[TableCheck]) -> Result<()> {
        let staged = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|e| e.into_inner()));
        if staged.is_empty() && self.loaded.is_some() {
            return Ok(());
        }
        // Re-read: another run may have written other tables meanwhile.
        let mut file = match StateFile::load(&self.opts.state_path) {
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
        file.save(&self.opts.state_path)
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
    prev: Option<TableState>,
    tracking: Option<String>,
    snapshot_unix_us: i64,
    counts: [u64; 4],
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
        return chunking.bounds_text.clone();
    }
    (0..chunking.bounds_text.len())
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
    let prev = run
        .loaded
        .as_ref()
        .and_then(|f| f.tables.get(&key))
        .cloned();
    let mut pass = TablePass {
        table,
        key,
        fingerprint: fp.clone(),
        full: true,
        reason: String::new(),
        marks,
        names: names.to_vec(),
        prev: prev.clone(),
        tracking: tracking_name.clone(),
        snapshot_unix_us,
        counts: [0; 4],
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
    } else if let Some(prev) = &prev {
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
    let int_key = matches!(
        types::ColumnType::effective_oid(&spec.key[0]),
        oid::INT2 | oid::INT4 | oid::INT8
    );
    let mut chunking = Chunking::default();
    if spec.composite() {
        // Whole-key bounds: each stored as a JSON array of its columns' texts.
        chunking.tuple_text = vec![Vec::new(); spec.key.len()];
        for b in &prev.bounds {
            match serde_json::from_str::<Vec<String>>(b) {
                Ok(texts) if texts.len() == spec.key.len() => {
                    chunking.bounds.push(Value::Text(texts[0].clone()));
                    chunking.bounds_text.push(texts[0].clone());
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
        chunking.bounds.push(v);
        chunking.bounds_text.push(b.clone());
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
    let margin = run.opts.margin.as_micros().min(i64::MAX as u128) as i64;
    let thresholds: Vec<i64> = prev
        .regions
        .iter()
        .map(|r| r.changes_since_us.saturating_sub(margin))
        .collect();
    let found: Vec<(Vec<usize>, Vec<u64>)> =
        join_all(sources.iter_mut().zip(&thresholds).map(|(s, &since)| {
            let ch = &chunking;
            let tr = &tracking;
            async move {
                let changed = s.changed_chunks(ch, tr, since).await?;
                let counts = s.chunk_counts(ch).await?;
                Ok::<_, crate::error::Error>((changed, counts))
            }
        }))
        .await
        .into_iter()
        .collect::<Result<_>>()?;
    let mut changed: BTreeSet<usize> = BTreeSet::new();
    let mut recounted: BTreeSet<usize> = BTreeSet::new();
    for (ri, (ch, counts)) in found.iter().enumerate() {
        changed.extend(ch.iter().copied().filter(|&c| c < chunking.len()));
        for (c, (&now, old)) in counts.iter().zip(&stored[ri]).enumerate() {
            if now != old.count {
                recounted.insert(c);
            }
        }
    }
    let before: BTreeSet<usize> = merkle::differing_chunks(&stored).into_iter().collect();
    let rehash: Vec<usize> = changed
        .iter()
        .chain(&recounted)
        .chain(&before)
        .copied()
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect();
    let fresh: Vec<Vec<(usize, ChunkSummary)>> = if rehash.is_empty() {
        vec![Vec::new(); sources.len()]
    } else {
        join_all(sources.iter_mut().map(|s| {
            let ch = &chunking;
            let rh = &rehash;
            async move { s.summaries_of(ch, rh).await }
        }))
        .await
        .into_iter()
        .collect::<Result<_>>()?
    };
    let mut summaries = stored;
    for (ri, f) in fresh.into_iter().enumerate() {
        for &c in &rehash {
            summaries[ri][c] = ChunkSummary::default();
        }
        for (c, s) in f {
            if let Some(slot) = summaries[ri].get_mut(c) {
                *slot = s;
            }
        }
    }
    for (s, (_, counts)) in sources.iter_mut().zip(&found) {
        // Every chunk was counted; the reused ones were not read again.
        s.stats.chunks = chunking.len() as u64;
        let _ = counts;
    }
    pass.full = false;
    pass.counts = [
        rehash.len() as u64,
        changed.len() as u64,
        recounted.len() as u64,
        before.len() as u64,
    ];
    pass.since = thresholds.iter().copied().min();
    pass.reason = format!(
        "re-hashed the chunks holding rows whose {} is at least {} (the last pass's snapshot minus a {}s margin), whose row count changed, or that differed last time",
        tracking.name,
        pass.since.map(micros_to_text).unwrap_or_default(),
        run.opts.margin.as_secs()
    );
    Ok((pass, Some((chunking, summaries))))
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
        let (last_full, runs) = match (&self.prev, self.full) {
            (Some(p), false) => (p.last_full_pass_at, p.runs_since_full + 1),
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
                bounds: stored_bounds(chunking),
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
