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
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, Result, pg_message};
use crate::pg::ident::{escape_control, quote_ident};
use crate::repair::plan::{ActionKind, FixPlan, KeyMap, TableShape, fetch_rows, sql_literal};

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

/// What became of one planned action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Not applied (dry run, `--sql-out`).
    Planned,
    /// Written and archived.
    Applied,
    /// The row changed since it was read: left untouched, re-planned by the next run.
    Changed,
    /// Unresolved record written (or already open) for a human.
    Unresolved,
    /// Its batch failed (see the table's `errors`).
    Failed,
}

/// One action in the report (see `docs/reports.md`; plus `status`).
#[derive(Debug, Clone, Serialize)]
pub struct ActionReport {
    /// The row's key.
    pub key: KeyMap,
    /// The region written.
    pub region: String,
    /// `insert`, `update`, `delete` or `manual`.
    pub action: ActionKind,
    /// The winning region (null for `manual`).
    pub winner_region: Option<String>,
    /// What decided.
    pub decided_by: String,
    /// What became of it.
    pub status: ActionStatus,
    /// An insert into a region that lacks the row with no tombstone saying why: it may undo
    /// a delete made there on purpose (see the table's `missing_rows:` setting).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub possible_undelete: bool,
}

/// One table in the report (see `docs/reports.md`).
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    /// `schema.table`.
    pub table: String,
    /// The rule's name.
    pub resolution: String,
    /// Every planned action.
    pub actions: Vec<ActionReport>,
    /// Rows written.
    pub applied: usize,
    /// Keys left for a human (manual rule).
    pub unresolved: usize,
    /// Rows skipped because they changed since planning (re-planned by the next run).
    pub changed: usize,
    /// Keys left for a later run (in flight), with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<serde_json::Value>,
    /// Keys that still differ after applying (empty for a dry run).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub still_differing: Vec<KeyMap>,
    /// Errors of failed batches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Rows that could not be written because another row (another key) holds the same
    /// values of a unique constraint; counted in `unresolved`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub collisions: Vec<crate::repair::collision::Collision>,
}

/// The result of `fix` (see `docs/reports.md`).
#[derive(Debug, Clone, Serialize)]
pub struct FixReport {
    /// Always `postgresql` (a Redis cache's fix report says `redis`).
    pub kind: &'static str,
    /// The run's id (in every record it wrote).
    pub run_id: String,
    /// True for `--dry-run` (and `--sql-out`: nothing was applied).
    pub dry_run: bool,
    /// True when the re-check found every region equal on every key, nothing unresolved.
    pub consistent: bool,
    /// Per table, in apply order.
    pub tables: Vec<TableReport>,
    /// Tables not planned (skipped, schema mismatch, errors) with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_planned: Vec<crate::repair::plan::NotPlanned>,
    /// Foreign-key cycles met.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fk_cycles: Vec<crate::repair::plan::FkCycle>,
    /// Scripts written by `--sql-out`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sql_files: Vec<String>,
}

impl FixReport {
    /// The exit code (see `docs/commands.md`): 0 when consistent, 1 when differences or
    /// unresolved conflicts remain (always for a dry run that found any), 2 when a batch
    /// failed.
    pub fn exit_code(&self) -> i32 {
        if self.has_errors() {
            2
        } else if self.consistent {
            0
        } else {
            1
        }
    }

    /// Total rows written.
    pub fn applied(&self) -> usize {
        self.tables.iter().map(|t| t.applied).sum()
    }

    /// True when some batch failed or some table could not be handled.
    pub fn has_errors(&self) -> bool {
        self.tables.iter().any(|t| !t.errors.is_empty()) || self.not_planned.iter().any(|n| n.error)
    }

    /// The first table that could not be handled (its check or planning failed), if any.
    pub fn first_unhandled(&self) -> Option<&crate::repair::plan::NotPlanned> {
        self.not_planned.iter().find(|n| n.error)
    }

    /// A report of a plan that is not applied (dry run): every action `planned`;
    /// `consistent` only when there is nothing to do at all.
    pub fn from_plan(plan: &FixPlan) -> FixReport {
        let statuses: HashMap<(usize, usize, usize), ActionStatus> = HashMap::new();
        build_report(
            plan,
            &statuses,
            true,
            plan_is_clean(plan),
            &[],
            &BTreeMap::new(),
        )
    }
}

fn plan_is_clean(plan: &FixPlan) -> bool {
    plan.is_empty()
        && plan.not_planned.is_empty()
        && plan.tables.iter().all(|t| t.deferred.is_empty())
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

fn build_report(
    plan: &FixPlan,
    statuses: &HashMap<(usize, usize, usize), ActionStatus>,
    dry_run: bool,
    consistent: bool,
    sql_files: &[String],
    errors_and_diffs: &BTreeMap<usize, (Vec<String>, Vec<KeyMap>)>,
) -> FixReport {
    let mut tables = Vec::new();
    for (ti, t) in plan.tables.iter().enumerate() {
        let mut actions = Vec::new();
        let (mut applied, mut changed) = (0, 0);
        for (ki, k) in t.keys.iter().enumerate() {
            for (ai, a) in k.actions.iter().enumerate() {
                let default = if a.action == ActionKind::Manual {
                    ActionStatus::Unresolved
                } else {
                    ActionStatus::Planned
                };
                let status = statuses.get(&(ti, ki, ai)).copied().unwrap_or(default);
                match status {
                    ActionStatus::Applied => applied += 1,
                    ActionStatus::Changed => changed += 1,
                    _ => {}
                }
                actions.push(ActionReport {
                    key: k.key.clone(),
                    region: a.region.clone(),
                    action: a.action,
                    winner_region: k.winner_region.clone(),
                    decided_by: k.decided_by.clone(),
                    status,
                    possible_undelete: a.possible_undelete,
                });
            }
        }
        let (errors, still) = errors_and_diffs.get(&ti).cloned().unwrap_or_default();
        tables.push(TableReport {
            table: t.table.to_string(),
            resolution: t.resolution.clone(),
            actions,
            applied,
            unresolved: t.unresolved(),
            changed,
            deferred: t
                .deferred
                .iter()
                .map(|(k, why)| serde_json::json!({"key": k, "reason": why}))
                .collect(),
            still_differing: still,
            errors,
            collisions: Vec::new(),
        });
    }
    FixReport {
        kind: "postgresql",
        run_id: plan.run_id.clone(),
        dry_run,
        consistent,
        tables,
        not_planned: plan.not_planned.clone(),
        fk_cycles: plan.fk_cycles.clone(),
        sql_files: sql_files.to_vec(),
    }
}

// ---------------------------------------------------------------------------------------
// Statements

/// Bind-parameter numbers of the write statements.
const P_ITEMS: usize = 1;
const P_TABLE: usize = 2;
const P_REGION: usize = 3;
const P_RUN: usize = 4;

/// The quoted `schema.replication_conflicts`.
pub(crate) fn conflicts_table(schema: &str) -> String {
    format!(
        "{}.{}",
        quote_ident(schema),
        quote_ident("replication_conflicts")
    )
}

/// The statement for one batch of one kind on one table. `p(n)` renders parameter `n`
/// (`$n` for the library, an inlined literal for `--sql-out`). Parameters: 1 the items
/// (JSON array text), 2 the table's `schema.name`, 3 the region, 4 the run id. The result
/// has one row per item written, with the item's index (`i`); for `manual`, one row per
/// record written.
///
/// Each item is `{"i": index, "k": key map, "o": image read or null, "n": image to write or
/// null, "ct": conflict_type, "res": resolution, "wr": winner_region, "rr": remote_region,
/// "by": decided_by}`; images are `to_jsonb` text.
pub(crate) fn batch_sql(
    shape: &TableShape,
    kind: ActionKind,
    rc: &str,
    p: &dyn Fn(usize) -> String,
) -> String {
    let tbl = shape.table.quoted();
    let items = format!(
        "items AS (SELECT e.j FROM jsonb_array_elements(({})::text::jsonb) AS e(j))",
        p(P_ITEMS)
    );
    let key_of = |alias: &str| {
        format!("CROSS JOIN LATERAL jsonb_populate_record(NULL::{tbl}, {alias}.j->'k') AS k")
    };
    let new_of = |alias: &str| {
        format!(
            "CROSS JOIN LATERAL jsonb_populate_record(NULL::{tbl}, ({alias}.j->>'n')::jsonb) AS n"
        )
    };
    let rc_columns = crate::store::conflicts::archive_columns();
    let archive = |src: &str, resolved: bool| {
        format!(
            "a AS (INSERT INTO {rc} ({rc_columns}) \
             SELECT {ptable}, {src}.j->'k', {src}.j->>'ct', {pregion}, {src}.j->>'rr', ({src}.j->>'o')::jsonb, \
             {src}.after, {src}.j->>'res', {src}.j->>'wr', {src}.j->>'by', {ts}, {prun}, {src}.j->>'act' FROM {src} RETURNING 1)",
            ptable = p(P_TABLE),
            pregion = p(P_REGION),
            prun = p(P_RUN),
            ts = if resolved {
                "now()"
            } else {
                "NULL::timestamptz"
            },
        )
    };
    let guard = "to_jsonb(t)::text = (i.j->>'o')";
    // True when the row as stored differs from the row written on a written column: a
    // trigger (or a rule) rewrote it, and the regions would never converge.
    let rewritten = |src: &str, cols: &[&str]| -> String {
        if cols.is_empty() {
            return "false".to_string();
        }
        let list = cols
            .iter()
            .map(|c| sql_literal(c))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "EXISTS (SELECT 1 FROM unnest(ARRAY[{list}]::text[]) AS c(n) \
             WHERE {src}.after->c.n IS DISTINCT FROM (({src}.j->>'n')::jsonb)->c.n)"
        )
    };
    // n."col", or JSON null for json/jsonb columns listed in the item's "jn"
    let val = |c: &str| -> String {
        let q = quote_ident(c);
        if shape.columns.iter().any(|x| x.name == c && x.is_json()) {
            format!(
                "CASE WHEN (i.j->'jn') ? {} THEN 'null' ELSE n.{q} END",
                sql_literal(c)
            )
        } else {
            format!("n.{q}")
        }
    };
    match kind {
        ActionKind::Update => {
            let cols = shape.update_columns();
            let set = if cols.is_empty() {
                // Nothing writable differs (only key/excluded/generated columns): a no-op
                // update still archives and still locks.
                shape
                    .key_columns
                    .iter()
                    .map(|c| format!("{q} = t.{q}", q = quote_ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                cols.iter()
                    .map(|c| format!("{} = {}", quote_ident(c), val(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "WITH {items},\n w AS (UPDATE {tbl} AS t SET {set} FROM items AS i {k} {n} WHERE {join} AND {guard} \
                 RETURNING i.j AS j, to_jsonb(t) AS after),\n {a}\nSELECT (w.j->>'i')::int4, {rw} FROM w",
                rw = rewritten("w", &cols),
                k = key_of("i"),
                n = new_of("i"),
                join = shape.key_join("t", "k"),
                a = archive("w", true),
            )
        }
        ActionKind::Delete => format!(
            "WITH {items},\n w AS (DELETE FROM {tbl} AS t USING items AS i {k} WHERE {join} AND {guard} \
             RETURNING i.j AS j, NULL::jsonb AS after),\n {a}\nSELECT (w.j->>'i')::int4 FROM w",
            k = key_of("i"),
            join = shape.key_join("t", "k"),
            a = archive("w", true),
        ),
        ActionKind::Insert => {
            let cols = shape.insert_columns();
            let list = cols
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ");
            let vals = cols.iter().map(|c| val(c)).collect::<Vec<_>>().join(", ");
            let ret_keys = shape
                .key_columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("t.{} AS \"c{i}\"", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let match_keys = shape
                .key_columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("w.\"c{i}\" = k.{}", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(" AND ");
            let overriding = if shape.has_identity_always() {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            };
            format!(
                "WITH {items},\n w AS (INSERT INTO {tbl} AS t ({list}){overriding} SELECT {vals} FROM items AS i {n} \
                 ON CONFLICT DO NOTHING RETURNING {ret_keys}, to_jsonb(t) AS after),\n \
                 ww AS (SELECT i.j, w.after FROM w JOIN (items AS i {k}) ON {match_keys}),\n {a}\n\
                 SELECT (ww.j->>'i')::int4, {rw} FROM ww",
                rw = rewritten("ww", &cols),
                n = new_of("i"),
                k = key_of("i"),
                a = archive("ww", true),
            )
        }
        ActionKind::Manual => format!(
            "WITH {items},\n w AS (SELECT i.j, (i.j->>'n')::jsonb AS after FROM items AS i \
             WHERE NOT EXISTS (SELECT 1 FROM {rc} AS r WHERE r.table_name = {ptable} AND r.key = i.j->'k' \
             AND r.resolved_at IS NULL AND r.resolution = 'manual' AND r.local_region = {pregion} \
             AND r.local_row IS NOT DISTINCT FROM (i.j->>'o')::jsonb)),\n {a}\nSELECT (w.j->>'i')::int4 FROM w",
            ptable = p(P_TABLE),
            pregion = p(P_REGION),
            a = archive("w", false),
        ),
    }
}

/// One row to write in one region (used for fixes and for undo).
#[derive(Debug, Clone)]
pub(crate) struct WriteItem {
    /// The row's key.
    pub key: KeyMap,
    /// What to do.
    pub action: ActionKind,
    /// The image the row must still have (`None`: the row must be absent).
    pub expected: Option<String>,
    /// The image to write (insert/update), or the other side's row for `manual`.
    pub new_row: Option<String>,
    /// Recorded `conflict_type`.
    pub conflict_type: String,
    /// Recorded `resolution`.
    pub resolution: String,
    /// Recorded `winner_region`.
    pub winner_region: Option<String>,
    /// Recorded `remote_region`.
    pub remote_region: Option<String>,
    /// Recorded `decided_by`.
    pub decided_by: String,
    /// json/jsonb columns of `new_row` holding JSON `null` rather than SQL NULL.
    pub json_nulls: Vec<String>,
}

impl WriteItem {
    fn to_json(&self, i: usize) -> serde_json::Value {
        serde_json::json!({
            "i": i,
            "k": self.key,
            "o": self.expected,
            "n": self.new_row,
            "ct": self.conflict_type,
            "res": self.resolution,
            "wr": self.winner_region,
            "rr": self.remote_region,
            "by": self.decided_by,
            "act": self.action.as_str(),
            "jn": self.json_nulls,
        })
    }
}

/// A step: one table, one kind of write, some items.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// Index of the table (in the caller's list of shapes).
    pub table: usize,
    /// The kind of write.
    pub kind: ActionKind,
    /// The items (indexes into the region's item list).
    pub items: Vec<usize>,
}

/// A unit: the steps of one transaction.
#[derive(Debug, Clone, Default)]
pub(crate) struct Unit {
    /// Steps, in order.
    pub steps: Vec<Step>,
    /// Run `SET CONSTRAINTS ALL DEFERRED` first (a deferrable foreign-key cycle).
    pub deferred: bool,
}

/// All the writes of one region, cut into transactions in foreign-key order.
#[derive(Debug, Clone)]
pub(crate) struct RegionWork {
    /// The region.
    pub region: String,
    /// Every item; `Unit` steps index into it.
    pub items: Vec<WriteItem>,
    /// Where each item came from (caller's reference, e.g. table/key/action indexes).
    pub origin: Vec<(usize, usize, usize)>,
    /// Transactions in order.
    pub units: Vec<Unit>,
}

/// Groups of tables for ordering: `(first table index, table indexes)`, in apply order.
/// A group of several tables (or one self-referencing table) is a foreign-key cycle.
#[derive(Debug, Clone)]
pub(crate) struct TableGroup {
    /// Indexes of the tables of the group.
    pub tables: Vec<usize>,
    /// A cycle whose constraints are all deferrable.
    pub deferrable_cycle: bool,
    /// A cycle whose constraints are not all deferrable.
    pub hard_cycle: bool,
}

/// Cuts one region's items into transactions: inserts then updates (then manual records)
/// parents first, deletes children first; batches of `batch_size`. `groups` are in apply
/// order (parents first). Items must carry their table index in `item_table`.
pub(crate) fn schedule(
    items: &[WriteItem],
    item_table: &[usize],
    groups: &[TableGroup],
    batch_size: usize,
) -> Vec<Unit> {
    let batch_size = batch_size.max(1);
    let by = |t: usize, kind: ActionKind| -> Vec<usize> {
        (0..items.len())
            .filter(|&i| item_table[i] == t && items[i].action == kind)
            .collect()
    };
    let mut first = Vec::new();
    let mut last = Vec::new();
    for g in groups {
        if g.deferrable_cycle {
            let mut unit = Unit {
                steps: Vec::new(),
                deferred: true,
            };
            for kind in [
                ActionKind::Insert,
                ActionKind::Update,
                ActionKind::Manual,
                ActionKind::Delete,
            ] {
                for &t in &g.tables {
                    let its = by(t, kind);
                    if !its.is_empty() {
                        unit.steps.push(Step {
                            table: t,
                            kind,
                            items: its,
                        });
                    }
                }
            }
            if !unit.steps.is_empty() {
                first.push(unit);
            }
            continue;
        }
        for &t in &g.tables {
            for kind in [ActionKind::Insert, ActionKind::Update, ActionKind::Manual] {
                let its = by(t, kind);
                push_batches(
                    &mut first,
                    t,
                    kind,
                    its,
                    if g.hard_cycle { usize::MAX } else { batch_size },
                );
            }
        }
        let mut dels = Vec::new();
        for &t in g.tables.iter().rev() {
            let its = by(t, ActionKind::Delete);
            push_batches(
                &mut dels,
                t,
                ActionKind::Delete,
                its,
                if g.hard_cycle { usize::MAX } else { batch_size },
            );
        }
        last.push(dels);
    }
    for dels in last.into_iter().rev() {
        first.extend(dels);
    }
    first
}

fn push_batches(
    out: &mut Vec<Unit>,
    table: usize,
    kind: ActionKind,
    items: Vec<usize>,
    size: usize,
) {
    for chunk in items.chunks(size) {
        out.push(Unit {
            steps: vec![Step {
                table,
                kind,
                items: chunk.to_vec(),
            }],
            deferred: false,
        });
    }
}

/// What happened to one region's work.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegionOutcome {
    /// Per item: applied (true) / guard failed (false) / failed (`None` + error in
    /// `errors`), by item index.
    pub status: Vec<Option<bool>>,
    /// Errors of failed units, with the table index.
    pub errors: Vec<(usize, String)>,
    /// Rows written.
    pub written: usize,
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code().map(|c| c.code()),
        Some("40001") | Some("40P01") | Some("55P03")
    )
}

/// The replication origin of `--no-replicate` for one run in one region. Origins are
/// cluster-wide and one session at a time may use one, so each run and region has its own
/// (two regions, or two runs, sharing a cluster never collide); it is dropped at the end.
pub(crate) fn origin_name(run_id: &str, region: &str) -> String {
    let mut name = format!("{ORIGIN_NAME}:{run_id}:{region}");
    // PostgreSQL limits origin names to 512 bytes.
    while name.len() > 500 {
        name.pop();
    }
    name
}

/// Sets the session up for writing: fixed settings (so images compare exactly with the
/// ones read) and, with an `origin` (see [`origin_name`]), the replication origin.
pub(crate) async fn prepare_session(
    client: &Client,
    region: &str,
    origin: Option<&str>,
) -> Result<()> {
    crate::pg::session::apply(client, region).await?;
    if let Some(origin) = origin {
        let r = client.batch_execute(&origin_setup_sql(origin)).await;
        if let Err(e) = r {
            let hint = if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
            {
                " (this needs a superuser or a role granted EXECUTE on pg_replication_origin_create, \
                 pg_replication_origin_session_setup and pg_replication_origin_drop)"
            } else {
                ""
            };
            return Err(Error::Query {
                region: region.to_string(),
                context: "--no-replicate".into(),
                message: format!(
                    "cannot write under the replication origin {origin}: {}{hint}",
                    pg_message(&e)
                ),
            });
        }
    }
    Ok(())
}

fn origin_setup_sql(origin: &str) -> String {
    let name = sql_literal(origin);
    format!(
        "SELECT pg_catalog.pg_replication_origin_create({name}) \
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = {name}); \
         SELECT pg_catalog.pg_replication_origin_session_setup({name});"
    )
}

fn origin_cleanup_sql(origin: &str) -> String {
    let name = sql_literal(origin);
    format!(
        "SELECT pg_catalog.pg_replication_origin_session_reset() \
         WHERE pg_catalog.pg_replication_origin_session_is_setup(); \
         SELECT pg_catalog.pg_replication_origin_drop(roname) \
         FROM pg_catalog.pg_replication_origin WHERE roname = {name};"
    )
}

/// Ends the replication-origin session set up by [`prepare_session`] and drops the origin.
pub(crate) async fn finish_session(client: &Client, origin: Option<&str>) {
    if let Some(origin) = origin {
        if let Err(e) = client.batch_execute(&origin_cleanup_sql(origin)).await {
            tracing::warn!(
                "could not drop the replication origin {origin}: {}",
                pg_message(&e)
            );
        }
    }
}

/// Runs one region's units on `client` (a session prepared with [`prepare_session`]).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_region(
    client: &Client,
    work: &RegionWork,
    shapes: &[&TableShape],
    table_names: &[String],
    run_id: &str,
    opts: &ApplyOptions,
    hard_cycle_tables: &[usize],
) -> Result<RegionOutcome> {
    let rc = conflicts_table(&opts.conflicts_schema);
    let mut out = RegionOutcome {
        status: vec![None; work.items.len()],
        ..Default::default()
    };
    let started = Instant::now();
    let total: usize = work
        .units
        .iter()
        .flat_map(|u| &u.steps)
        .map(|s| s.items.len())
        .sum();
    if let Some(p) = &opts.progress {
        p.start(&work.region, total as u64);
    }
    let mut done = 0usize;
    let mut stopped: Vec<usize> = Vec::new();
    for unit in &work.units {
        if unit.steps.iter().any(|s| stopped.contains(&s.table)) {
            continue;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match run_unit(client, work, unit, shapes, table_names, run_id, &rc).await {
                Ok(UnitResult::Rewritten(t)) => {
                    let who = trigger_names(client, shapes[t]).await;
                    out.errors.push((
                        t,
                        format!(
                            "region {}: table {}: a written row does not read back as written ({who} rewrites it), \
                             so repairing would never converge; nothing more of this table is written in this run \
                             (see the README, \"Triggers that rewrite rows\")",
                            work.region,
                            table_names.get(t).map(String::as_str).unwrap_or("?"),
                        ),
                    ));
                    stopped.push(t);
                    break;
                }
                Ok(UnitResult::Done(written)) => {
                    for step in &unit.steps {
                        for &i in &step.items {
                            out.status[i] = Some(written.contains(&i));
                        }
                    }
                    out.written += unit
                        .steps
                        .iter()
                        .filter(|s| s.kind != ActionKind::Manual)
                        .flat_map(|s| &s.items)
                        .filter(|i| written.contains(i))
                        .count();
                    break;
                }
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    // Winners that swap a unique value between rows collide midway through
                    // an UPDATE (non-deferrable unique constraints are checked row by row):
                    // the batch is written again as delete-then-insert in one transaction.
                    if e.code().map(|c| c.code()) == Some("23505")
                        && unit.steps.iter().all(|s| s.kind == ActionKind::Update)
                        && !client.is_closed()
                    {
                        match run_unit_swap(client, work, unit, shapes, table_names, run_id, &rc)
                            .await
                        {
                            Ok(Some(written)) => {
                                for step in &unit.steps {
                                    for &i in &step.items {
                                        out.status[i] = Some(written.contains(&i));
                                    }
                                }
                                out.written += written.len();
                                break;
                            }
                            Ok(None) => {}
                            Err(e2) => {
                                let _ = client.batch_execute("ROLLBACK").await;
                                tracing::debug!("swap retry failed: {}", pg_message(&e2));
                            }
                        }
                    }
                    if client.is_closed() {
                        return Err(Error::Connection {
                            region: work.region.clone(),
                            addr: String::new(),
                            message: format!("connection lost while applying: {}", pg_message(&e)),
                        });
                    }
                    if retryable(&e) && attempt < 5 {
                        tracing::warn!(region = %work.region, "batch retried: {}", pg_message(&e));
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        continue;
                    }
                    let t = unit.steps.first().map(|s| s.table).unwrap_or(0);
                    let mut msg = format!(
                        "region {}: table {}: batch of {} row(s) failed: {}",
                        work.region,
                        table_names.get(t).map(String::as_str).unwrap_or("?"),
                        unit.steps.iter().map(|s| s.items.len()).sum::<usize>(),
                        pg_message(&e)
                    );
                    if e.code().map(|c| c.code()) == Some("23503") && hard_cycle_tables.contains(&t)
                    {
                        msg.push_str(
                            " (the table is in a foreign-key cycle whose constraints are not DEFERRABLE; \
                             make them DEFERRABLE so fix can write the cycle in one transaction)",
                        );
                    }
                    // Reported in the table's `errors` (and by the caller): logged, not shouted.
                    tracing::info!("{msg}");
                    out.errors.push((t, msg));
                    break;
                }
            }
        }
        done += unit.steps.iter().map(|s| s.items.len()).sum::<usize>();
        if let Some(p) = &opts.progress {
            p.update(&work.region, done as u64);
            if done == total {
                p.finish(&work.region);
            }
        }
        if let Some(rps) = opts.max_rows_per_second.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(done as f64 / rps);
            let el = started.elapsed();
            if due > el {
                tokio::time::sleep(due - el).await;
            }
        }
    }
    Ok(out)
}

async fn run_unit(
    client: &Client,
    work: &RegionWork,
    unit: &Unit,
    shapes: &[&TableShape],
    table_names: &[String],
    run_id: &str,
    rc: &str,
) -> std::result::Result<UnitResult, tokio_postgres::Error> {
    client
        .batch_execute("START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE")
        .await?;
    if unit.deferred {
        client.batch_execute("SET CONSTRAINTS ALL DEFERRED").await?;
    }
    let mut written = Vec::new();
    for step in &unit.steps {
        let shape = shapes[step.table];
        let sql = batch_sql(shape, step.kind, rc, &|n| format!("${n}"));
        let items: Vec<serde_json::Value> = step
            .items
            .iter()
            .map(|&i| work.items[i].to_json(i))
            .collect();
        let items = serde_json::Value::Array(items).to_string();
        let rows = client
            .query(
                &sql,
                &[&items, &table_names[step.table], &work.region, &run_id],
            )
            .await?;
        for r in &rows {
            if r.len() > 1 && r.get::<_, bool>(1) {
                client.batch_execute("ROLLBACK").await?;
                return Ok(UnitResult::Rewritten(step.table));
            }
        }
        for r in rows {
            let i: i32 = r.get(0);
            written.push(i as usize);
        }
    }
    client.batch_execute("COMMIT").await?;
    Ok(UnitResult::Done(written))
}

/// What one transaction did.
enum UnitResult {
    /// Committed; these items were written.
    Done(Vec<usize>),
    /// Rolled back: a written row of this table did not read back as written.
    Rewritten(usize),
}

/// The enabled user triggers of a table, for the message about rows rewritten on write.
async fn trigger_names(client: &Client, shape: &TableShape) -> String {
    let q = "SELECT string_agg(tgname::text, ', ' ORDER BY tgname) FROM pg_trigger \
             WHERE tgrelid = $1::text::regclass AND NOT tgisinternal AND tgenabled <> 'D'";
    match client.query_one(q, &[&shape.table.quoted()]).await {
        Ok(r) => r
            .get::<_, Option<String>>(0)
            .map(|t| format!("trigger(s) {t}"))
            .unwrap_or_else(|| "a rule or trigger".to_string()),
        Err(_) => "a rule or trigger".to_string(),
    }
}

/// Writes a unit of updates as delete-then-insert in one transaction, so that rows may swap
/// values of a unique constraint. Only for tables that no foreign key references (a delete
/// there could cascade); each row is deleted only while it is still exactly as read, and
/// the transaction commits only when every deleted row was inserted again (its archive
/// record is the one an update writes). `None` when the table does not qualify or the
/// rows do not all go through (rolled back, nothing changed).
async fn run_unit_swap(
    client: &Client,
    work: &RegionWork,
    unit: &Unit,
    shapes: &[&TableShape],
    table_names: &[String],
    run_id: &str,
    rc: &str,
) -> std::result::Result<Option<Vec<usize>>, tokio_postgres::Error> {
    for step in &unit.steps {
        let referenced: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' AND confrelid = $1::text::regclass)",
                &[&shapes[step.table].table.quoted()],
            )
            .await?
            .get(0);
        if referenced {
            return Ok(None);
        }
    }
    client
        .batch_execute("START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE")
        .await?;
    let mut written = Vec::new();
    for step in &unit.steps {
        let shape = shapes[step.table];
        let items: Vec<serde_json::Value> = step
            .items
            .iter()
            .map(|&i| work.items[i].to_json(i))
            .collect();
        let items = serde_json::Value::Array(items).to_string();
        let del = format!(
            "WITH items AS (SELECT e.j FROM jsonb_array_elements(($1)::text::jsonb) AS e(j)),\n \
             w AS (DELETE FROM {tbl} AS t USING items AS i \
             CROSS JOIN LATERAL jsonb_populate_record(NULL::{tbl}, i.j->'k') AS k \
             WHERE {join} AND to_jsonb(t)::text = (i.j->>'o') RETURNING i.j AS j)\n\
             SELECT (w.j->>'i')::int4 FROM w",
            tbl = shape.table.quoted(),
            join = shape.key_join("t", "k"),
        );
        let deleted: Vec<i32> = client
            .query(&del, &[&items])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let deleted_items: Vec<serde_json::Value> = deleted
            .iter()
            .map(|&i| work.items[i as usize].to_json(i as usize))
            .collect();
        let ins = batch_sql(shape, ActionKind::Insert, rc, &|n| format!("${n}"));
        let deleted_json = serde_json::Value::Array(deleted_items).to_string();
        let mut inserted: Vec<i32> = client
            .query(
                &ins,
                &[
                    &deleted_json,
                    &table_names[step.table],
                    &work.region,
                    &run_id,
                ],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        inserted.sort_unstable();
        let mut want = deleted.clone();
        want.sort_unstable();
        if inserted != want {
            client.batch_execute("ROLLBACK").await?;
            return Ok(None);
        }
        written.extend(inserted.into_iter().map(|i| i as usize));
    }
    client.batch_execute("COMMIT").await?;
    Ok(Some(written))
}

// ---------------------------------------------------------------------------------------
// From a plan

/// Everything `apply` needs from a plan: per region its work, and the table groups.
pub(crate) struct Prepared {
    /// Per region (plan order), its work.
    pub work: Vec<RegionWork>,
    /// Tables in hard (non-deferrable) cycles.
    pub hard_cycle_tables: Vec<usize>,
}

/// Groups tables for writing, following `order`: the tables of one foreign-key cycle form one
/// group (written in one transaction), every other table is a group of its own. The groups
/// hold indexes into `names`.
pub(crate) fn group_tables(
    names: &[crate::pg::ident::TableName],
    order: &[crate::pg::ident::TableName],
    cycles: &[crate::repair::plan::FkCycle],
) -> Vec<TableGroup> {
    let mut groups = Vec::new();
    let mut seen = vec![false; names.len()];
    for n in order {
        let Some(i) = names.iter().position(|x| x == n) else {
            continue;
        };
        if seen[i] {
            continue;
        }
        match cycles.iter().find(|c| c.tables.contains(n)) {
            Some(c) => {
                let members: Vec<usize> = names
                    .iter()
                    .enumerate()
                    .filter(|(_, x)| c.tables.contains(x))
                    .map(|(m, _)| m)
                    .collect();
                for &m in &members {
                    seen[m] = true;
                }
                groups.push(TableGroup {
                    tables: members,
                    deferrable_cycle: c.deferrable,
                    hard_cycle: !c.deferrable,
                });
            }
            None => {
                seen[i] = true;
                groups.push(TableGroup {
                    tables: vec![i],
                    deferrable_cycle: false,
                    hard_cycle: false,
                });
            }
        }
    }
    groups
}

/// Turns a plan into per-region work.
pub(crate) fn prepare(plan: &FixPlan, batch_size: usize) -> Prepared {
    let names: Vec<crate::pg::ident::TableName> =
        plan.tables.iter().map(|t| t.table.clone()).collect();
    let groups = group_tables(&names, &names, &plan.fk_cycles);
    let hard: Vec<usize> = groups
        .iter()
        .filter(|g| g.hard_cycle)
        .flat_map(|g| g.tables.iter().copied())
        .collect();
    let mut work = Vec::new();
    for region in &plan.regions {
        let mut items = Vec::new();
        let mut origin = Vec::new();
        let mut item_table = Vec::new();
        for (ti, t) in plan.tables.iter().enumerate() {
            for (ki, k) in t.keys.iter().enumerate() {
                for (ai, a) in k.actions.iter().enumerate() {
                    if &a.region != region {
                        continue;
                    }
                    let (new_row, remote_region) = if a.action == ActionKind::Manual {
                        // The other side for a human: the first other region's differing version.
                        (k.winner_row.clone(), k.winner_region.clone())
                    } else {
                        (k.winner_row.clone(), k.winner_region.clone())
                    };
                    items.push(WriteItem {
                        key: k.key.clone(),
                        action: a.action,
                        expected: a.current.clone(),
                        new_row: if a.action == ActionKind::Delete {
                            None
                        } else {
                            new_row
                        },
                        conflict_type: a.action.conflict_type(a.current.is_some()).to_string(),
                        resolution: t.resolution.clone(),
                        winner_region: if a.action == ActionKind::Manual {
                            None
                        } else {
                            k.winner_region.clone()
                        },
                        remote_region,
                        decided_by: if a.action == ActionKind::Manual {
                            "manual".into()
                        } else {
                            k.decided_by.clone()
                        },
                        json_nulls: k.winner_json_nulls.clone(),
                    });
                    origin.push((ti, ki, ai));
                    item_table.push(ti);
                }
            }
        }
        let units = schedule(&items, &item_table, &groups, batch_size);
        work.push(RegionWork {
            region: region.clone(),
            items,
            origin,
            units,
        });
    }
    Prepared {
        work,
        hard_cycle_tables: hard,
    }
}

/// Ensures `replication_conflicts` exists in a region (creates or upgrades it with
/// [`crate::store::conflicts::init`]).
pub(crate) async fn ensure_conflicts_table(
    client: &Client,
    region: &str,
    schema: &str,
) -> Result<()> {
    crate::store::conflicts::init(
        client,
        region,
        &crate::store::conflicts::table_name(Some(schema)),
    )
    .await
    .map(|_| ())
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

/// Inserts that were not written (`ON CONFLICT DO NOTHING` met a row) are checked for a
/// collision on another unique constraint: `(table, key, action, collision)` indexes.
async fn find_collisions(
    clients: &[&Client],
    plan: &FixPlan,
    statuses: &HashMap<(usize, usize, usize), ActionStatus>,
) -> Result<Vec<(usize, usize, usize, crate::repair::collision::Collision)>> {
    let mut out = Vec::new();
    for (ti, t) in plan.tables.iter().enumerate() {
        for (ki, k) in t.keys.iter().enumerate() {
            let Some(img) = &k.winner_row else { continue };
            for (ai, a) in k.actions.iter().enumerate() {
                if a.action != ActionKind::Insert
                    || statuses.get(&(ti, ki, ai)) != Some(&ActionStatus::Changed)
                {
                    continue;
                }
                let Some(ri) = plan.regions.iter().position(|r| *r == a.region) else {
                    continue;
                };
                let key = serde_json::Value::Object(k.key.clone());
                if let Some(c) = crate::repair::collision::find_collision(
                    clients[ri],
                    &a.region,
                    &t.shape,
                    &key,
                    img,
                )
                .await?
                {
                    out.push((ti, ki, ai, c));
                }
            }
        }
    }
    Ok(out)
}

/// Closes, in every region, the open records of the keys this run resolved: every action of
/// the key applied and the re-check (when run) found the regions equal on it.
async fn close_open_records(
    clients: &[&Client],
    plan: &FixPlan,
    opts: &ApplyOptions,
    statuses: &HashMap<(usize, usize, usize), ActionStatus>,
    per_table: &BTreeMap<usize, (Vec<String>, Vec<KeyMap>)>,
) -> Result<()> {
    use crate::store::closing::{ResolvedKey, close_resolved};
    let rc = crate::store::conflicts::table_name(Some(&opts.conflicts_schema));
    for (ti, t) in plan.tables.iter().enumerate() {
        let still = per_table.get(&ti).map(|(_, s)| s.as_slice()).unwrap_or(&[]);
        let keys: Vec<ResolvedKey> = t
            .keys
            .iter()
            .enumerate()
            .filter(|(ki, k)| {
                !k.needs_human
                    && !still.contains(&k.key)
                    && (0..k.actions.len())
                        .all(|ai| statuses.get(&(ti, *ki, ai)) == Some(&ActionStatus::Applied))
            })
            .map(|(_, k)| ResolvedKey {
                key: serde_json::Value::Object(k.key.clone()),
                winner_region: k.winner_region.clone(),
            })
            .collect();
        if keys.is_empty() {
            continue;
        }
        for (c, r) in clients.iter().zip(&plan.regions) {
            close_resolved(
                c,
                r,
                &rc,
                &t.table.to_string(),
                &t.resolution,
                &plan.run_id,
                &keys,
            )
            .await?;
        }
    }
    Ok(())
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

/// Reads `keys` in every region and returns those on which regions still differ (excluded
/// and generated columns aside).
pub(crate) async fn recheck_table(
    clients: &[&Client],
    regions: &[String],
    shape: &TableShape,
    keys: &[&KeyMap],
) -> Result<Vec<KeyMap>> {
    let mut per_region = Vec::new();
    for (c, r) in clients.iter().zip(regions) {
        let mut rows = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            rows.extend(fetch_rows(c, r, shape, chunk, false).await?);
        }
        per_region.push(rows);
    }
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let first = per_region[0][i].as_ref();
        if per_region
            .iter()
            .any(|rows| !crate::repair::plan::same_version(rows[i].as_ref(), first))
        {
            out.push((*k).clone());
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// --sql-out

/// The path of region `region`'s script for `--sql-out FILE`: the region's name is put
/// before the extension (`fix.sql` → `fix.us-east-1.sql`); a directory gets `<region>.sql`.
pub(crate) fn script_path(file: &Path, region: &str) -> PathBuf {
    let safe: String = region
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if file.is_dir() {
        return file.join(format!("{safe}.sql"));
    }
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fix".into());
    let ext = file
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sql".into());
    file.with_file_name(format!("{stem}.{safe}.{ext}"))
}

/// Renders one region's work as a psql script: the same guarded, archiving statements as
/// [`apply_plan_on`], with the data inlined, one transaction per batch.
pub(crate) fn region_script(
    work: &RegionWork,
    shapes: &[&TableShape],
    table_names: &[String],
    run_id: &str,
    database: &str,
    opts: &ApplyOptions,
    create_conflicts_sql: &str,
) -> String {
    let rc = conflicts_table(&opts.conflicts_schema);
    // Text in `--` comments is one line whatever it holds: a newline in a table name must not
    // start a line of its own (psql would run `\! cmd` there).
    let c = |t: &str| escape_control(t).into_owned();
    let (run_id_c, database, region) = (c(run_id), c(database), c(&work.region));
    let mut s = String::new();
    s.push_str(&format!(
        "-- eden-reconcile fix, run {run_id}\n-- region {}, database {database}\n\
         -- Run with: psql -X -v ON_ERROR_STOP=1 -d <{database} in {}> -f <this file>\n\
         -- Each batch is one transaction. Its statement only touches rows still equal to what\n\
         -- was read when planning (to_jsonb image), archives each row it changes into\n\
         -- replication_conflicts in the same statement, and returns the items it wrote.\n\n",
        region,
        region,
        run_id = run_id_c
    ));
    s.push_str("\\set ON_ERROR_STOP on\n");
    s.push_str(&crate::pg::session::set_script());
    s.push('\n');
    let origin = origin_name(run_id, &work.region);
    if opts.no_replicate {
        s.push_str("-- --no-replicate: write under a replication origin of this run and region\n");
        s.push_str(&origin_setup_sql(&origin));
        s.push_str("\n\n");
    }
    s.push_str(create_conflicts_sql.trim_end());
    s.push_str("\n\n");
    for (n, unit) in work.units.iter().enumerate() {
        let t = unit.steps.first().map(|st| st.table).unwrap_or(0);
        s.push_str(&format!(
            "-- batch {}: {}\nBEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE;\n",
            n + 1,
            c(table_names.get(t).map(String::as_str).unwrap_or(""))
        ));
        if unit.deferred {
            s.push_str("SET CONSTRAINTS ALL DEFERRED;\n");
        }
        for step in &unit.steps {
            let items: Vec<serde_json::Value> = step
                .items
                .iter()
                .map(|&i| work.items[i].to_json(i))
                .collect();
            let items = serde_json::Value::Array(items).to_string();
            let table_name = table_names[step.table].clone();
            let lit = |n: usize| -> String {
                match n {
                    P_ITEMS => sql_literal(&items),
                    P_TABLE => format!("{}::text", sql_literal(&table_name)),
                    P_REGION => format!("{}::text", sql_literal(&work.region)),
                    _ => format!("{}::text", sql_literal(run_id)),
                }
            };
            s.push_str(&format!(
                "-- {} {} row(s) of {}\n",
                step.kind.as_str(),
                step.items.len(),
                c(&table_name)
            ));
            s.push_str(&batch_sql(shapes[step.table], step.kind, &rc, &lit));
            s.push_str(";\n");
        }
        s.push_str("COMMIT;\n\n");
    }
    if opts.no_replicate {
        s.push_str(&origin_cleanup_sql(&origin));
        s.push('\n');
    }
    s
}

/// `--sql-out FILE`: writes one psql script per region that has writes (`FILE` with the
/// region's name inserted before the extension) and returns the report of the (unapplied) plan with the files listed.
pub fn write_sql_scripts(plan: &FixPlan, file: &Path, opts: &ApplyOptions) -> Result<FixReport> {
    let prepared = prepare(plan, opts.batch_size);
    let shapes: Vec<&TableShape> = plan.tables.iter().map(|t| &t.shape).collect();
    let names: Vec<String> = plan.tables.iter().map(|t| t.table.to_string()).collect();
    let create = crate::store::conflicts::init_sql(&crate::store::conflicts::table_name(Some(
        &opts.conflicts_schema,
    )));
    let mut files = Vec::new();
    for w in &prepared.work {
        if w.items.is_empty() {
            continue;
        }
        let text = region_script(
            w,
            &shapes,
            &names,
            &plan.run_id,
            &plan.database,
            opts,
            &create,
        );
        let path = script_path(file, &w.region);
        std::fs::write(&path, text).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: format!("cannot write the SQL script: {e}"),
        })?;
        files.push(path.display().to_string());
    }
    let statuses = HashMap::new();
    Ok(build_report(
        plan,
        &statuses,
        true,
        false,
        &files,
        &BTreeMap::new(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::ident::TableName;
    use crate::repair::plan::FkCycle;

    #[test]
    fn cycles_form_one_group_in_the_given_order() {
        let t = |n: &str| TableName::new("public", n);
        let names = vec![t("c"), t("a"), t("b"), t("d")];
        let order = vec![t("a"), t("b"), t("c"), t("d")];
        let cycles = vec![FkCycle {
            tables: vec![t("b"), t("d")],
            deferrable: false,
            constraints: Vec::new(),
        }];
        let groups = group_tables(&names, &order, &cycles);
        let got: Vec<(Vec<usize>, bool)> = groups
            .iter()
            .map(|g| (g.tables.clone(), g.hard_cycle))
            .collect();
        assert_eq!(
            got,
            vec![(vec![1], false), (vec![2, 3], true), (vec![0], false)]
        );
    }
}
