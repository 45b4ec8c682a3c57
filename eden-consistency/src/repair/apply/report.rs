//! The report of a fix run (see `docs/reports.md`) and how it is built from a plan and the
//! status of each action.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::repair::plan::{ActionKind, FixPlan, KeyMap};

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

pub(super) fn build_report(
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
