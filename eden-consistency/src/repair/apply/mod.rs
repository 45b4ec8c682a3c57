//! Applying a fix plan: guarded, archived, batched writes.
//!
//! # Guarantees
//!
//! * **Batches are transactions.** Per region, the plan's writes are cut into batches of at
//!   most `batch_size` rows of one table and one kind; each batch is ONE transaction, so a
//!   crash (even `SIGKILL`) leaves every region before or after each batch.
//! * **Guarded.** Every write is a single set-based statement whose `WHERE` clause holds
//!   the guard: an update or delete touches a row only while `to_jsonb(row)::text` is still
//!   exactly the image read when planning (PostgreSQL re-evaluates that condition on the
//!   newest row version after waiting for a concurrent writer, so a row changed meanwhile is
//!   skipped, never overwritten); an insert is `INSERT ... ON CONFLICT DO NOTHING`, so a row
//!   inserted concurrently is kept. Rows skipped by a guard are reported as `changed` and
//!   re-planned by the next run.
//! * **Archived.** The same statement (a data-modifying CTE) writes one record per row it
//!   changed into `replication_conflicts`: `local_row` = the row here before the change
//!   (null for an insert into a region that lacked the row), `remote_row` = the row as
//!   written here (the winner; null for a delete), `conflict_type` (`update_differs`,
//!   `missing_row`, `delete`), `resolution`, `winner_region`, `decided_by`,
//!   `resolved_at = now()`, `run_id`. Change and record commit together or not at all.
//!   `remote_row` being the row as it ended up here (excluded columns keep this region's
//!   values) is what lets `undo` guard exactly.
//! * **Generic writes.** Inserts are `INSERT INTO t (cols) SELECT cols FROM
//!   jsonb_populate_record(NULL::t, winner)` over every non-generated, non-excluded column
//!   (`OVERRIDING SYSTEM VALUE` when the table has an identity column `GENERATED ALWAYS`);
//!   updates set every non-key, non-generated, non-identity-always, non-excluded column the
//!   same way. Excluded columns are never written.
//! * **Foreign keys.** Inserts and updates run parents first, deletes children first (order
//!   from `pg_constraint`). Tables of a foreign-key cycle whose constraints are all
//!   `DEFERRABLE` are written in one transaction per region under `SET CONSTRAINTS ALL
//!   DEFERRED`; a self-referencing table whose key is not deferrable gets each kind of write
//!   in one statement (its rows may reference each other: constraints are checked at the
//!   end of the statement); other non-deferrable cycles are reported in the plan and a write
//!   that breaks a constraint fails its batch with a message naming the cycle.
//! * **`manual` tables** are never written: an unresolved record (`resolved_at` null,
//!   `resolution` and `decided_by` = `manual`) is written per region, once: a later run does
//!   not repeat a record identical to an open one (same table, key and row image).
//! * **Unique values swapped between rows.** A batch of updates that fails on a unique
//!   constraint (winners swapping a unique value between two rows collide midway) is
//!   written again as delete-then-insert of those rows in one transaction, when no foreign
//!   key references the table (a delete could cascade); it commits only if every row it
//!   deleted was inserted again, and its archive records are those of an update.
//! * **Unique collisions.** An insert that writes nothing because another row (another key)
//!   holds the same values of a unique constraint is reported under the table's
//!   `collisions` (region, constraint, columns, both keys), counted unresolved (exit 1),
//!   never retried as "changed since read". A table whose rule says
//!   `unique_collisions: resolve` has them resolved by its rule after applying (see
//!   `repair::collision`): the losing row archived and deleted, the winner inserted.
//! * **Rows rewritten on write.** Inserts and updates compare each row as stored with the
//!   row written, on the written columns; when a trigger (or a rule) changed it, the batch
//!   is rolled back (nothing written, nothing archived), the table is not written again in
//!   this run, and the error names the table's enabled triggers.
//! * **Closing records.** After applying, the open records of every key whose writes all
//!   went through (and, with the re-check, that now agrees) are closed in every region
//!   (`resolved_at`, `resolution`, `winner_region`, this `run_id`).
//! * **Tie-break refusal.** [`run_fix`] with a config file leaves unresolved the keys that
//!   a rule ordered by commit timestamps decided by tie order alone, unless
//!   [`FixRun::allow_tiebreak`].
//! * **Retries.** A batch that hits a deadlock, a serialization failure or a lock timeout is
//!   retried (up to 5 times, with back-off); other errors fail the batch, are reported, and
//!   the run goes on with the next batch.
//! * **Throttle.** `max_rows_per_second` paces batches per region.
//! * **`no_replicate`.** Each region's write session runs under a replication origin of its
//!   own, `eden_reconcile:<run_id>:<region>` (created with `pg_replication_origin_create`,
//!   set up with `pg_replication_origin_session_setup`, dropped at the end: origins are
//!   cluster-wide, so regions or runs sharing a cluster never collide), so replication that filters by origin
//!   (pglogical `forward_origins = '{}'`, native subscriptions with `origin = none`) does not
//!   send the repair back to the other regions (each region is repaired directly). This
//!   needs a superuser, or a role granted `EXECUTE` on `pg_replication_origin_create`,
//!   `pg_replication_origin_session_setup` and `pg_replication_origin_drop` (and `SELECT` on
//!   `pg_replication_origin`); otherwise the server's reason is reported before anything is
//!   written.
//! * **Re-check.** After applying, every planned key is read again in every region and
//!   compared (excluded and generated columns aside); the report's `consistent` is true only
//!   when every region agrees on every key and nothing was left unresolved or unplanned.
//!
//! `--sql-out` ([`write_sql_scripts`]) renders exactly the same statements, with the batch's
//! data inlined as literals, into one psql script per region.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::repair::plan::{ActionKind, FixPlan, KeyMap, TableShape};

mod recheck;
mod report;
mod run;
mod schedule;
mod script;
mod sql;

pub(crate) use recheck::recheck_table;
use recheck::{close_open_records, find_collisions};
use report::build_report;
pub use report::{ActionReport, ActionStatus, FixReport};
pub(crate) use run::{
    RegionOutcome, ensure_conflicts_table, finish_session, origin_name, prepare_session, run_region,
};
pub(crate) use schedule::{RegionWork, TableGroup, WriteItem, group_tables, prepare, schedule};
pub use script::write_sql_scripts;
pub(crate) use sql::conflicts_table;

/// The replication origin used by `--no-replicate`.
pub(crate) const ORIGIN_NAME: &str = "eden_reconcile";

/// How to apply a plan.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Rows per batch (one transaction). Default 500.
    pub batch_size: usize,
    /// Pace writes to at most this many rows per second per region.
    pub max_rows_per_second: Option<f64>,
    /// Write under a replication origin of the run and region (named `eden_reconcile:RUN:REGION`;
    /// see `docs/commands.md`).
    pub no_replicate: bool,
    /// Schema of `replication_conflicts` (default `public`).
    pub conflicts_schema: String,
    /// Where progress goes (nowhere by default; the CLI draws bars on a terminal).
    pub progress: crate::progress::ProgressSink,
    /// Re-read the planned keys after applying and compare regions (default true).
    pub recheck: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            batch_size: 500,
            max_rows_per_second: None,
            no_replicate: false,
            conflicts_schema: "public".into(),
            progress: None,
            recheck: true,
        }
    }
}

/// True for the rules that order versions by their commit timestamps (no tracking column):
/// when those are unknown (`track_commit_timestamp` off), every version ties and the region
/// order alone would decide. Equal values of a tracking column are a genuine tie and follow
/// the documented tie order.
fn time_ordered(rule: &crate::config::Resolution) -> bool {
    use crate::config::Resolution::*;
    matches!(
        rule,
        LastWriteWins {
            tracking_column: None
        } | FirstWriteWins {
            tracking_column: None
        } | ColumnMerge {
            tracking_column: None,
            ..
        }
    )
}

/// Turns every decision that only the tie order made under a rule ordered by commit
/// timestamps (e.g. with `track_commit_timestamp` off) into a key for a human: nothing is
/// written for it, it is recorded unresolved, and `fix` exits 1.
pub(crate) fn refuse_tiebreaks(plan: &mut FixPlan, config: &crate::config::Config, db: &str) {
    use crate::repair::plan::PlannedAction;
    for t in &mut plan.tables {
        let rule = config.rule_or_default(db, &t.table).resolution;
        if !time_ordered(&rule) {
            continue;
        }
        for k in &mut t.keys {
            if k.needs_human || !k.decided_by.starts_with("tiebreak:") {
                continue;
            }
            let winner = k.winner_region.clone();
            let mut manual: Vec<PlannedAction> = Vec::new();
            if let Some(w) = &winner {
                let first_other = k
                    .actions
                    .first()
                    .map(|a| (a.region.clone(), a.current.clone()));
                manual.push(PlannedAction {
                    region: w.clone(),
                    action: ActionKind::Manual,
                    current: k.winner_row.clone(),
                    other: first_other,
                    possible_undelete: false,
                });
            }
            for a in &k.actions {
                manual.push(PlannedAction {
                    region: a.region.clone(),
                    action: ActionKind::Manual,
                    current: a.current.clone(),
                    other: winner.clone().map(|w| (w, k.winner_row.clone())),
                    possible_undelete: false,
                });
            }
            k.actions = manual;
            k.needs_human = true;
            k.winner_region = None;
        }
    }
}

/// What `eden-reconcile fix` does after parsing its flags.
#[derive(Default)]
pub struct FixRun {
    /// `--dry-run`: plan and report, change nothing.
    pub dry_run: bool,
    /// `--sql-out FILE`: write the scripts instead of applying.
    pub sql_out: Option<PathBuf>,
    /// Planning options (`--table`, registry of Rust resolvers, run id).
    pub fix: crate::repair::plan::FixOptions,
    /// Applying options (`--batch-size`, `--max-rows-per-second`, `--no-replicate`).
    pub apply: ApplyOptions,
    /// `--allow-tiebreak`: apply decisions that only the tie order made for a time-ordered
    /// rule. Without it (and with a config file), such keys are left unresolved.
    pub allow_tiebreak: bool,
}

/// The whole `fix` command as a library call: check, plan, then report (`dry_run`), write
/// scripts (`sql_out`) or apply and re-check. The report serializes to the JSON of
/// `docs/reports.md` (`serde_json::to_string(&report)`); exit with [`FixReport::exit_code`].
///
/// ```no_run
/// # async fn f() -> eden_consistency::Result<()> {
/// use eden_consistency::{run_fix, FixRun};
/// use eden_consistency::{CheckOptions, Checker};
/// use eden_consistency::Config;
///
/// let config = Config::load(std::path::Path::new("postgresql-multi-region.yaml"))?;
/// let checker = Checker::connect(config, "eden_vault").await?;
/// let report = run_fix(&checker, &CheckOptions::default(), &FixRun { dry_run: true, ..Default::default() }).await?;
/// println!("{}", serde_json::to_string_pretty(&report).unwrap());
/// std::process::exit(report.exit_code());
/// # }
/// ```
pub async fn run_fix(
    checker: &crate::check::Checker,
    check: &crate::check::CheckOptions,
    run: &FixRun,
) -> Result<FixReport> {
    let (_check_report, mut plan) =
        crate::repair::plan::plan_fix_checked(checker, check, &run.fix).await?;
    if !run.dry_run && !run.allow_tiebreak && checker.config().file.is_some() {
        refuse_tiebreaks(&mut plan, checker.config(), checker.database());
    }
    for t in &plan.tables {
        tracing::info!(
            table = %t.table,
            resolution = %t.resolution,
            keys = t.keys.len(),
            deferred = t.deferred.len(),
            "planned"
        );
    }
    if let Some(file) = &run.sql_out {
        return write_sql_scripts(&plan, file, &run.apply);
    }
    if run.dry_run {
        return Ok(FixReport::from_plan(&plan));
    }
    let mut report = apply_plan(checker.regions(), &plan, &run.apply).await?;
    crate::repair::collision::resolve_collisions(checker, &plan, &mut report, run).await?;
    for t in &report.tables {
        tracing::info!(
            table = %t.table,
            applied = t.applied,
            unresolved = t.unresolved,
            changed = t.changed,
            errors = t.errors.len(),
            still_differing = t.still_differing.len(),
            "applied and re-checked"
        );
    }
    Ok(report)
}

/// Applies a plan: `clients` are the regions' write sessions, in the plan's region order
/// (`plan.regions`). Regions are written concurrently, each in its own order. Returns the
/// report (see `docs/reports.md`); a failed batch is reported in its table's `errors`, a lost
/// connection is an error.
pub async fn apply_plan_on(
    clients: &[&Client],
    plan: &FixPlan,
    opts: &ApplyOptions,
) -> Result<FixReport> {
    if clients.len() != plan.regions.len() {
        return Err(Error::Usage(format!(
            "apply_plan: {} sessions given for {} regions",
            clients.len(),
            plan.regions.len()
        )));
    }
    let prepared = prepare(plan, opts.batch_size);
    let shapes: Vec<&TableShape> = plan.tables.iter().map(|t| &t.shape).collect();
    let names: Vec<String> = plan.tables.iter().map(|t| t.table.to_string()).collect();
    // Every session is set up (settings, replication origin, replication_conflicts) before
    // any region is written: a role that may not use --no-replicate fails with nothing done.
    for (w, c) in prepared.work.iter().zip(clients.iter()) {
        if w.items.is_empty() {
            continue;
        }
        let origin = opts
            .no_replicate
            .then(|| origin_name(&plan.run_id, &w.region));
        if let Err(e) = prepare_session(c, &w.region, origin.as_deref()).await {
            for (w2, c2) in prepared.work.iter().zip(clients.iter()) {
                if !w2.items.is_empty() {
                    let origin = opts
                        .no_replicate
                        .then(|| origin_name(&plan.run_id, &w2.region));
                    finish_session(c2, origin.as_deref()).await;
                }
            }
            return Err(e);
        }
        ensure_conflicts_table(c, &w.region, &opts.conflicts_schema).await?;
    }
    let futs = prepared.work.iter().zip(clients.iter()).map(|(w, c)| {
        let shapes = &shapes;
        let names = &names;
        let hard = &prepared.hard_cycle_tables;
        async move {
            if w.items.is_empty() {
                return Ok(RegionOutcome::default());
            }
            let r = run_region(c, w, shapes, names, &plan.run_id, opts, hard).await;
            let origin = opts
                .no_replicate
                .then(|| origin_name(&plan.run_id, &w.region));
            finish_session(c, origin.as_deref()).await;
            r
        }
    });
    let outcomes: Vec<Result<RegionOutcome>> = futures_util::future::join_all(futs).await;
    let mut statuses = HashMap::new();
    let mut per_table: BTreeMap<usize, (Vec<String>, Vec<KeyMap>)> = BTreeMap::new();
    for (w, o) in prepared.work.iter().zip(outcomes) {
        let o = o?;
        for (i, origin) in w.origin.iter().enumerate() {
            let st = match (w.items[i].action, o.status.get(i).copied().flatten()) {
                (ActionKind::Manual, _) => ActionStatus::Unresolved,
                (_, Some(true)) => ActionStatus::Applied,
                (_, Some(false)) => ActionStatus::Changed,
                (_, None) => ActionStatus::Failed,
            };
            statuses.insert(*origin, st);
        }
        for (t, e) in o.errors {
            per_table.entry(t).or_default().0.push(e);
        }
    }
    let mut consistent = plan.not_planned.is_empty();
    for (ti, t) in plan.tables.iter().enumerate() {
        if !t.deferred.is_empty() || t.unresolved() > 0 {
            consistent = false;
        }
        if per_table.get(&ti).is_some_and(|(e, _)| !e.is_empty()) {
            consistent = false;
        }
        if !opts.recheck || t.keys.is_empty() {
            continue;
        }
        let keys: Vec<&KeyMap> = t.keys.iter().map(|k| &k.key).collect();
        let still = recheck_table(clients, &plan.regions, &t.shape, &keys).await?;
        if !still.is_empty() {
            consistent = false;
            per_table.entry(ti).or_default().1 = still;
        }
    }
    if !opts.recheck && !plan.is_empty() {
        consistent = false;
    }
    close_open_records(clients, plan, opts, &statuses, &per_table).await?;
    let collisions = find_collisions(clients, plan, &statuses).await?;
    let mut report = build_report(plan, &statuses, false, consistent, &[], &per_table);
    for (ti, ki, ai, c) in collisions {
        let index = plan.tables[ti].keys[..ki]
            .iter()
            .map(|k| k.actions.len())
            .sum::<usize>()
            + ai;
        let t = &mut report.tables[ti];
        if let Some(a) = t.actions.get_mut(index) {
            if a.status == ActionStatus::Changed {
                t.changed -= 1;
            }
            a.status = ActionStatus::Unresolved;
        }
        t.unresolved += 1;
        t.collisions.push(c);
        report.consistent = false;
    }
    Ok(report)
}

/// Applies a plan to connected regions (report: see `docs/reports.md`). Each region is written
/// through a session of its own ([`crate::pg::connect::Region::open_another`]), so the
/// replication origin of `no_replicate` and the batches' transactions stay apart from the
/// regions' main sessions. `regions` must hold every region named in the plan.
pub async fn apply_plan(
    regions: &[crate::pg::connect::Region],
    plan: &FixPlan,
    opts: &ApplyOptions,
) -> Result<FixReport> {
    let mut sessions = Vec::new();
    for name in &plan.regions {
        let r = regions.iter().find(|r| &r.name == name).ok_or_else(|| {
            Error::Usage(format!(
                "apply_plan: region {name} of the plan is not connected"
            ))
        })?;
        sessions.push(r.open_another().await?);
    }
    let refs: Vec<&Client> = sessions.iter().collect();
    apply_plan_on(&refs, plan, opts).await
}
