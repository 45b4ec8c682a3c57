//! Planning a fix: per region, the inserts, updates and deletes that make regions agree.
//!
//! # How a plan is made
//!
//! 1. The differing keys of each table come from `check` ([`plan_fix_checked`], or
//!    [`plan_fix`] with [`TableDifferences`]): JSON key maps exactly as in the report
//!    (integers as numbers, everything else as PostgreSQL's text under `TimeZone=UTC`).
//!    Keys marked in flight are left for the next run (see `docs/commands.md`) and listed as deferred.
//! 2. For a batch of keys ([`FETCH_BATCH`]), every region is asked with **one generic
//!    statement** per table ([`fetch_sql`]):
//!
//!    ```sql
//!    SELECT e.ord, to_jsonb(t)::text, <commit ts>, <json-null columns>, <compared columns, typed>
//!    FROM jsonb_array_elements($1) WITH ORDINALITY AS e(j, ord)
//!    CROSS JOIN LATERAL jsonb_populate_record(NULL::tbl, e.j) AS k
//!    JOIN tbl AS t ON t.key1 = k.key1 AND ...
//!    ```
//!
//!    `jsonb_populate_record` turns the key text into the key columns' types with their own
//!    input functions, so keys of any type are matched by value, through the key's index.
//!    The commit timestamp (`pg_xact_commit_timestamp(xmin)`) is read only where
//!    `track_commit_timestamp` is on (else unknown, which the resolver ranks oldest). The
//!    compared columns (all but excluded and generated ones) are decoded as typed
//!    [`crate::row::value::Value`]s, so regions compare as values, whatever the session.
//! 3. Each key's versions go to the table's [`crate::resolve::Resolver`] (rule and tombstone
//!    source from the config; tombstone tables are read by key too), which names the winner,
//!    the action per region and what decided it. Column merges are assembled from the
//!    versions' own `to_jsonb` texts, column by column ([`merge_images`]).
//! 4. The plan keeps, per key and region, the **row image read** (`to_jsonb(t)::text`, or
//!    absence): `apply` writes only where the row is still exactly that image (the guard),
//!    and archives it in `replication_conflicts`. Images stay PostgreSQL's own jsonb text
//!    end to end (never parsed into floating point), so numerics of any precision, bytea,
//!    arrays and timestamps round-trip exactly through `jsonb_populate_record`. Since
//!    `to_jsonb` shows SQL NULL and a JSON `null` in a json/jsonb column alike, the plan
//!    also carries which json columns of the winner hold JSON `null`
//!    ([`FetchedRow::json_nulls`]).
//! 5. Tables are ordered by their foreign keys (parents first, [`order_tables`]), cycles
//!    found. A delete from a table that others reference with `ON DELETE CASCADE`,
//!    `SET NULL` or `SET DEFAULT` is held back (the key is listed as deferred, naming the
//!    constraint): it would change rows that fix could not archive first.
//!
//! A plan changes nothing anywhere: planning only reads (`--dry-run` prints it). A table
//! that cannot be planned is listed in [`FixPlan::not_planned`] and the others go on.
//!
//! # Known limits
//!
//! * Triggers on the fixed tables fire on the repair's writes (a `BEFORE UPDATE` trigger
//!   that stamps `updated_at = now()` makes the copy differ from the winner); the re-check
//!   after applying reports such keys as still differing.
//! * Inserting explicit key values does not advance the table's sequences.
//! * `undo` restores a json/jsonb column that held JSON `null` as SQL NULL (the archive's
//!   `to_jsonb` image cannot tell them apart).
//!
//! **Missing rows.** A row present in some regions and absent (with no tombstone) in others
//! is a lost insert or an unreplicated delete; the table's `missing_rows:` says which
//! ([`missing_rows_decider`]): `copy` (default) lets the rule copy it, and every such insert
//! is marked [`PlannedAction::possible_undelete`] unless the table has a tombstone table;
//! `delete` deletes it where it exists (`decided_by` = `missing_rows`); `manual` leaves the
//! key to a human.

use std::collections::HashMap;

use serde::Serialize;
use tokio_postgres::Client;

use crate::check::TableCheck;
use crate::check::report::TableStatus;
use crate::error::{Error, Result};
use crate::pg::ident::{TableName, quote_ident};
use crate::pg::schema::{self, Column, TableSchema};

mod decide;
mod fetch;
mod fk;
mod table;
mod tombstones;

pub use decide::{
    Decide, Resolved, VersionView, Winner, merge_images, missing_rows_decider, resolver_decider,
    split_json_object,
};
pub use fetch::{
    commit_ts_enabled, fetch_rows, fetch_sql, json_nulls_expr, keys_json, sql_literal,
};
pub use fk::{FkCycle, ForeignKey, foreign_keys, order_tables};
use table::plan_targets_with;
pub use table::{plan_key, plan_table, plan_targets};

/// A row's key as in the check report: column name → JSON value (integers as numbers,
/// everything else as PostgreSQL's text).
pub type KeyMap = serde_json::Map<String, serde_json::Value>;

/// What a fix does to a row in one region.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// The region lacks the row: the winner is inserted.
    Insert,
    /// The region's row differs: it is overwritten with the winner (archived first).
    Update,
    /// The winner is a delete: the region's row is deleted (archived first).
    Delete,
    /// The table's rule is `manual`: nothing is changed, an unresolved record is written.
    Manual,
}

impl ActionKind {
    /// `insert`, `update`, `delete` or `manual`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Insert => "insert",
            ActionKind::Update => "update",
            ActionKind::Delete => "delete",
            ActionKind::Manual => "manual",
        }
    }

    /// The `conflict_type` recorded for this action: `missing_row` for an insert into a
    /// region that lacked the row, `delete` for a delete, `update_differs` otherwise.
    pub fn conflict_type(self, row_present_here: bool) -> &'static str {
        match self {
            ActionKind::Insert => "missing_row",
            ActionKind::Delete => "delete",
            ActionKind::Update => "update_differs",
            ActionKind::Manual => {
                if row_present_here {
                    "update_differs"
                } else {
                    "missing_row"
                }
            }
        }
    }
}

/// What the fix needs to know about a table to read and write it generically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    /// The table.
    pub table: TableName,
    /// Key columns, in key order.
    pub key_columns: Vec<String>,
    /// Live columns in `attnum` order.
    pub columns: Vec<Column>,
    /// `exclude_columns` of the config: never compared nor written.
    pub exclude_columns: Vec<String>,
}

impl TableShape {
    /// The shape of a table from its definition as the catalog reader
    /// ([`crate::pg::schema::load_table`]) gave it. Fails with a clear message when a key
    /// column does not exist there.
    pub fn from_schema(
        schema: &TableSchema,
        region: &str,
        key_columns: &[String],
        exclude_columns: &[String],
    ) -> Result<TableShape> {
        let table = &schema.name;
        if key_columns.is_empty() {
            return Err(Error::Table {
                table: table.to_string(),
                message: "has no key columns to fix by".into(),
            });
        }
        for k in key_columns {
            if schema.column(k).is_none() {
                return Err(Error::Table {
                    table: table.to_string(),
                    message: format!("key column {k} does not exist in region {region}"),
                });
            }
        }
        Ok(TableShape {
            table: table.clone(),
            key_columns: key_columns.to_vec(),
            columns: schema.columns.clone(),
            exclude_columns: exclude_columns.to_vec(),
        })
    }

    /// Reads a table's definition in one region and makes its shape. Fails with a clear
    /// message when the table or a key column does not exist there.
    pub async fn read(
        client: &Client,
        region: &str,
        table: &TableName,
        key_columns: &[String],
        exclude_columns: &[String],
    ) -> Result<TableShape> {
        let Some(schema) = schema::load_table(client, region, table, Some(key_columns)).await?
        else {
            return Err(Error::Table {
                table: table.to_string(),
                message: format!("does not exist in region {region}"),
            });
        };
        TableShape::from_schema(&schema, region, key_columns, exclude_columns)
    }

    /// Columns an insert writes: every column but generated and excluded ones.
    pub fn insert_columns(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| !c.generated && !self.exclude_columns.contains(&c.name))
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Columns an update writes: every column but generated, identity-always, key and
    /// excluded ones.
    pub fn update_columns(&self) -> Vec<&str> {
        self.columns
            .iter()
            .filter(|c| {
                !c.generated
                    && !c.identity_always
                    && !self.exclude_columns.contains(&c.name)
                    && !self.key_columns.contains(&c.name)
            })
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Columns compared between regions and shown to the resolver: all but excluded and
    /// generated ones, in `attnum` order.
    pub fn compared_columns(&self) -> Vec<&Column> {
        self.columns
            .iter()
            .filter(|c| !c.generated && !self.exclude_columns.contains(&c.name))
            .collect()
    }

    /// True when the table has an identity column `GENERATED ALWAYS`.
    pub fn has_identity_always(&self) -> bool {
        self.columns
            .iter()
            .any(|c| c.identity_always && !self.exclude_columns.contains(&c.name))
    }

    /// `t."k1" = k."k1" AND ...`: the key join between the table (alias `t`) and a record
    /// populated from a key map (alias `k`).
    pub fn key_join(&self, t: &str, k: &str) -> String {
        self.key_columns
            .iter()
            .map(|c| {
                let q = quote_ident(c);
                format!("{t}.{q} = {k}.{q}")
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

/// One row as read from a region for planning.
#[derive(Debug, Clone)]
pub struct FetchedRow {
    /// `to_jsonb(t)::text`: the exact image used by guards and archives.
    pub image: String,
    /// `pg_xact_commit_timestamp(xmin)` in microseconds since 2000-01-01 UTC (PostgreSQL's
    /// epoch), when known.
    pub commit_ts_micros: Option<i64>,
    /// The compared columns ([`TableShape::compared_columns`]) decoded as values.
    pub values: Vec<crate::row::value::Value>,
    /// `json`/`jsonb` columns holding JSON `null` (not SQL NULL): `to_jsonb` shows both as
    /// `null`, so writes need to be told which is which.
    pub json_nulls: Vec<String>,
}

impl FetchedRow {
    /// True when both rows hold the same values in the compared columns.
    pub fn same_values(&self, other: &FetchedRow) -> bool {
        self.values == other.values
    }
}

/// True when two regions' versions agree (both absent, or same compared values).
pub fn same_version(a: Option<&FetchedRow>, b: Option<&FetchedRow>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(x), Some(y)) => x.same_values(y),
        _ => false,
    }
}

/// The plan for one region at one key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedAction {
    /// The region written (or recorded, for `manual`).
    pub region: String,
    /// What is done there.
    pub action: ActionKind,
    /// The row image read there (`to_jsonb(t)::text`), `None` when the region lacks the
    /// row. The guard: apply touches the row only while it is still exactly this.
    #[serde(skip)]
    pub current: Option<String>,
    /// For `manual`: the other side recorded as `remote_region`/`remote_row` (the first
    /// other region whose version differs from this one's).
    #[serde(skip)]
    pub other: Option<(String, Option<String>)>,
    /// An insert into a region that lacks the row with nothing saying it was deleted there:
    /// the row may have been deleted on purpose, and copying it back undoes that delete.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub possible_undelete: bool,
}

/// The decision for one differing key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyPlan {
    /// The key, as in the check report.
    pub key: KeyMap,
    /// The winning region (`None` for `manual` or when no region holds a winner).
    pub winner_region: Option<String>,
    /// The winner's image (`to_jsonb` text as read in the winner region); `None` when the
    /// winner is a delete or there is no winner.
    #[serde(skip)]
    pub winner_row: Option<String>,
    /// The winner's json/jsonb columns holding JSON `null` (see [`FetchedRow::json_nulls`]).
    #[serde(skip)]
    pub winner_json_nulls: Vec<String>,
    /// What decided (`decided_by`, see `docs/replication_conflicts.md`).
    pub decided_by: String,
    /// True when a human must decide (manual rule, or a resolver that could not).
    pub needs_human: bool,
    /// Per region, what is done. Regions already equal to the winner are absent.
    pub actions: Vec<PlannedAction>,
}

/// The plan for one table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TablePlan {
    /// The table.
    pub table: TableName,
    /// The rule's name (`last_write_wins`, ..., `manual`).
    pub resolution: String,
    /// How to read and write it.
    #[serde(skip)]
    pub shape: TableShape,
    /// Every differing key that was planned.
    pub keys: Vec<KeyPlan>,
    /// Keys left for a later run (in flight, or unreadable), with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deferred: Vec<(KeyMap, String)>,
}

impl TablePlan {
    /// Number of keys a human must decide.
    pub fn unresolved(&self) -> usize {
        self.keys.iter().filter(|k| k.needs_human).count()
    }

    /// Number of row writes (insert/update/delete) planned.
    pub fn writes(&self) -> usize {
        self.keys
            .iter()
            .flat_map(|k| &k.actions)
            .filter(|a| a.action != ActionKind::Manual)
            .count()
    }
}

/// A complete fix plan: what `--dry-run` prints and what [`crate::repair::apply::apply_plan`] runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FixPlan {
    /// One id for the run, recorded in every `replication_conflicts` row it writes.
    pub run_id: String,
    /// The database (as in `--db`).
    pub database: String,
    /// Region names in tie-break order.
    pub regions: Vec<String>,
    /// Tables in apply order (foreign-key parents first).
    pub tables: Vec<TablePlan>,
    /// Tables that were not planned (skipped, schema mismatch, errors), with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_planned: Vec<NotPlanned>,
    /// Foreign-key cycles among the planned tables, as written in `pg_constraint`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fk_cycles: Vec<FkCycle>,
}

/// A table that could not be planned, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotPlanned {
    /// `schema.table`.
    pub table: String,
    /// Why (the check's status and message, or the planning error).
    pub message: String,
    /// True when the table could not be handled at all (an error: the run exits 2), false
    /// when it was handled but cannot be fixed (skipped, schema mismatch: exit 1).
    pub error: bool,
}

impl NotPlanned {
    /// A table whose check or planning failed.
    pub fn error(table: impl Into<String>, message: impl Into<String>) -> NotPlanned {
        NotPlanned {
            table: table.into(),
            message: message.into(),
            error: true,
        }
    }
}

impl FixPlan {
    /// True when nothing needs writing and nothing needs a human.
    pub fn is_empty(&self) -> bool {
        self.tables.iter().all(|t| t.keys.is_empty())
    }
}

/// A new run id: a UUID v4, as text.
pub fn new_run_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// What to fix in one table: its differing keys and how to decide them.
#[derive(Debug, Clone)]
pub struct FixTarget {
    /// The table.
    pub table: TableName,
    /// Key columns.
    pub key_columns: Vec<String>,
    /// `exclude_columns`.
    pub exclude_columns: Vec<String>,
    /// The rule's name (for the report and the records).
    pub resolution: String,
    /// Differing keys.
    pub keys: Vec<KeyMap>,
    /// Keys left for a later run, with the reason (e.g. in flight).
    pub deferred: Vec<(KeyMap, String)>,
    /// A tombstone table to read deletion times of absent rows from.
    pub tombstone_table: Option<(TableName, String)>,
}

/// How many keys are read per statement while planning.
pub const FETCH_BATCH: usize = 1000;

// ---------------------------------------------------------------------------------------
// Entry point: from a check's differences to a plan

/// The differences of one table, as `check` reports them (see `docs/reports.md`).
#[derive(Debug, Clone)]
pub struct TableDifferences {
    /// The table.
    pub table: TableName,
    /// Its key columns (as in the report).
    pub key_columns: Vec<String>,
    /// Differing keys to fix.
    pub keys: Vec<KeyMap>,
    /// Differing keys still in flight (left for the next run).
    pub in_flight: Vec<KeyMap>,
    /// Why the table cannot be fixed (`skipped`, `schema_mismatch`, `error`), if so.
    pub not_fixable: Option<String>,
}

impl TableDifferences {
    /// The differences of one checked table, as values: every differing key (not capped by
    /// `max_differences`), the in-flight ones apart; `None` for a consistent table.
    pub fn from_check(check: &TableCheck) -> Option<TableDifferences> {
        let mut d = TableDifferences {
            table: check.table.clone(),
            key_columns: check.report.key_columns.clone(),
            keys: Vec::new(),
            in_flight: Vec::new(),
            not_fixable: None,
        };
        match check.report.status {
            TableStatus::Consistent => return None,
            TableStatus::Divergent => {}
            other => {
                d.not_fixable = Some(format!(
                    "{}: {}",
                    other.as_str(),
                    check.report.message.clone().unwrap_or_default()
                ))
            }
        }
        for diff in &check.differences {
            if diff.in_flight {
                d.in_flight.push(diff.key.clone());
            } else {
                d.keys.push(diff.key.clone());
            }
        }
        Some(d)
    }
}

/// Checks, then plans the fix of every difference found: the library path of `eden-reconcile
/// fix` (and of `--dry-run`, which prints the plan and stops). `check` is used as given,
/// except that every difference is listed (`max_differences` = none) and nothing is
/// recorded. Returns the check's report too (for its tables' statuses).
pub async fn plan_fix_checked(
    checker: &crate::check::Checker,
    check: &crate::check::CheckOptions,
    opts: &FixOptions,
) -> Result<(crate::check::report::CheckReport, FixPlan)> {
    let mut check = check.clone();
    check.max_differences = None;
    check.record = false;
    let (report, checks) = checker.run_detailed(&check).await?;
    let mut diffs = Vec::new();
    let mut known = HashMap::new();
    for c in checks {
        let Some(d) = TableDifferences::from_check(&c) else {
            continue;
        };
        if let Some(schema) = c.schema {
            known.insert(c.table, (schema, c.rule));
        }
        diffs.push(d);
    }
    let mut plan = plan_fix_with(
        checker.regions(),
        checker.config(),
        checker.database(),
        &diffs,
        known,
        opts,
    )
    .await?;
    if opts.run_id.is_none() {
        plan.run_id = report.run_id.clone();
    }
    Ok((report, plan))
}

/// True when `rule` orders versions by their commit timestamps.
fn decides_by_commit_ts(rule: &crate::config::Resolution) -> bool {
    use crate::config::Resolution::*;
    match rule {
        LastWriteWins { tracking_column } | FirstWriteWins { tracking_column } => {
            tracking_column.is_none()
        }
        ColumnMerge {
            tracking_column, ..
        } => tracking_column.is_none(),
        Custom { expression } => expression.contains("commit_ts"),
        _ => false,
    }
}

/// Options of [`plan_fix`].
#[derive(Default)]
pub struct FixOptions {
    /// Only these tables (empty: every table of the differences).
    pub tables: Vec<TableName>,
    /// Rust resolvers for `custom_rust` rules.
    pub registry: crate::resolve::Registry,
    /// Use this run id instead of a new one.
    pub run_id: Option<String>,
}

/// Plans a fix from a check's differences: per table its rule from the config (or the
/// global default), each key's versions read in every region and resolved, tables ordered
/// by foreign keys. Reads only; changes nothing anywhere.
///
/// `regions` in tie-break order (as [`crate::config::connect_all`] returns them).
pub async fn plan_fix(
    regions: &[crate::pg::connect::Region],
    config: &crate::config::Config,
    db: &str,
    diffs: &[TableDifferences],
    opts: &FixOptions,
) -> Result<FixPlan> {
    plan_fix_with(regions, config, db, diffs, HashMap::new(), opts).await
}

/// [`plan_fix`] with the definition (first region) and settings of some tables already
/// known from the check: those are neither read from the catalog nor looked up again.
async fn plan_fix_with(
    regions: &[crate::pg::connect::Region],
    config: &crate::config::Config,
    db: &str,
    diffs: &[TableDifferences],
    mut known: HashMap<TableName, (TableSchema, crate::config::TableRule)>,
    opts: &FixOptions,
) -> Result<FixPlan> {
    let mut shapes = HashMap::new();
    let clients: Vec<&Client> = regions.iter().map(|r| &r.client).collect();
    let names: Vec<String> = regions.iter().map(|r| r.name.clone()).collect();
    let mut targets = Vec::new();
    let mut resolvers = HashMap::new();
    let mut missing_policy: HashMap<TableName, (crate::config::MissingRows, bool)> = HashMap::new();
    let mut not_planned = Vec::new();
    for d in diffs {
        if !opts.tables.is_empty() && !opts.tables.contains(&d.table) {
            continue;
        }
        if let Some(why) = &d.not_fixable {
            not_planned.push(NotPlanned {
                table: d.table.to_string(),
                message: why.clone(),
                error: why.starts_with("error:"),
            });
            continue;
        }
        if d.keys.is_empty() && d.in_flight.is_empty() {
            continue;
        }
        let Some(first) = clients.first() else { break };
        let (shape, settings) = match known.remove(&d.table) {
            Some((schema, settings)) => (
                TableShape::from_schema(
                    &schema,
                    &names[0],
                    &d.key_columns,
                    &settings.exclude_columns,
                )?,
                settings,
            ),
            None => {
                let settings = config.rule_or_default(db, &d.table);
                let shape = TableShape::read(
                    first,
                    &names[0],
                    &d.table,
                    &d.key_columns,
                    &settings.exclude_columns,
                )
                .await?;
                (shape, settings)
            }
        };
        let crate::config::TableRule {
            resolution: rule,
            exclude_columns: exclude,
            tombstone,
            missing_rows,
            ..
        } = settings;
        missing_policy.insert(d.table.clone(), (missing_rows, tombstone.is_some()));
        let cols: Vec<String> = shape
            .compared_columns()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let resolver =
            match crate::resolve::Resolver::new(&rule, tombstone.as_ref(), &cols, &opts.registry) {
                Ok(r) => r,
                // A rule that does not fit the live table is a config error: refuse the whole
                // run before anything is written anywhere.
                Err(m) => {
                    return Err(Error::Config {
                        file: config
                            .file
                            .as_ref()
                            .map_or_else(|| "(default rule)".into(), |f| f.display().to_string()),
                        message: format!("table {}: resolution {}: {m}", d.table, rule.name()),
                    });
                }
            };
        if decides_by_commit_ts(&rule) {
            for (c, r) in clients.iter().zip(&names) {
                if !commit_ts_enabled(c, r).await? {
                    tracing::warn!(
                        "table {}: {} decides by commit timestamp, but track_commit_timestamp is off in region {r}, \
                         so versions there tie and the region order decides; set tracking_column or turn track_commit_timestamp on",
                        d.table,
                        rule.name()
                    );
                }
            }
        }
        let tombstone_table = match &tombstone {
            Some(crate::config::Tombstone::Table {
                table,
                deleted_at_column,
            }) => {
                let (schema, name) = TableName::parse_user(table).map_err(|m| Error::Table {
                    table: d.table.to_string(),
                    message: format!("tombstone table: {m}"),
                })?;
                Some((
                    TableName::new(schema.unwrap_or_else(|| d.table.schema.clone()), name),
                    deleted_at_column.clone(),
                ))
            }
            _ => None,
        };
        resolvers.insert(d.table.clone(), resolver);
        shapes.insert(d.table.clone(), shape);
        targets.push(FixTarget {
            table: d.table.clone(),
            key_columns: d.key_columns.clone(),
            exclude_columns: exclude,
            resolution: rule.name().to_string(),
            keys: d.keys.clone(),
            deferred: d
                .in_flight
                .iter()
                .map(|k| {
                    (
                        k.clone(),
                        "in flight (changed within the replication lag window)".to_string(),
                    )
                })
                .collect(),
            tombstone_table,
        });
    }
    let mut plan = plan_targets_with(
        &clients,
        &names,
        db,
        &targets,
        shapes,
        &mut |t: &FixTarget| {
            let r = resolvers
                .get(&t.table)
                .cloned()
                .ok_or_else(|| Error::Table {
                    table: t.table.to_string(),
                    message: "no resolver".into(),
                })?;
            let policy = missing_policy
                .get(&t.table)
                .map(|p| p.0)
                .unwrap_or_default();
            Ok(missing_rows_decider(policy, resolver_decider(r)))
        },
    )
    .await?;
    // With a tombstone source, an absence with no tombstone is a lost insert, not a delete.
    for t in &mut plan.tables {
        if missing_policy.get(&t.table).is_some_and(|p| p.1) {
            for a in t.keys.iter_mut().flat_map(|k| &mut k.actions) {
                a.possible_undelete = false;
            }
        }
    }
    if let Some(id) = &opts.run_id {
        plan.run_id = id.clone();
    }
    not_planned.append(&mut plan.not_planned);
    plan.not_planned = not_planned;
    Ok(plan)
}
