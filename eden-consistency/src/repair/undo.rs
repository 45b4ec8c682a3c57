//! Undoing a fix run from the archive in replication_conflicts.
//!
//! `undo --run RUN_ID` reads, in every region, the resolved records that run wrote
//! (`run_id = RUN_ID`, `resolved_at` not null: every change `fix` made, one record per row)
//! and puts each row back as it was before the run:
//!
//! | the run did | record | undo does, only if the row is still as the run left it |
//! |---|---|---|
//! | update | `local_row` = before, `remote_row` = after | update the row back to `local_row` |
//! | delete | `local_row` = before, `remote_row` null | insert `local_row` again |
//! | insert (copy) | `local_row` null, `remote_row` = after | delete the row |
//!
//! **Guards** are those of `fix`: a row is written only while its `to_jsonb` image is still
//! exactly the record's `remote_row` (or, for a re-insert, while the key is still absent),
//! so a row changed since the fix is never clobbered: it is reported as `changed` and left
//! alone. A row already equal to its `local_row` counts as already restored (so running
//! `undo` twice is harmless).
//!
//! Every restore is itself archived, in the same transaction, as a new record with
//! `conflict_type = 'undo'`, `resolution = 'undo'`, `decided_by = 'undo'` and the undo's own
//! run id (printed in the report): `undo --run <that id>` redoes the fix.
//!
//! Restores are written with the same batching and foreign-key order as `fix` (rows put
//! back parents first, rows removed children first). Excluded columns are restored too: fix
//! never wrote them, so the archived image holds their values from before the run.

use std::collections::BTreeMap;

use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::ident::TableName;
use crate::repair::apply::{
    ApplyOptions, RegionWork, TableGroup, WriteItem, conflicts_table, finish_session, group_tables,
    origin_name, prepare_session, run_region, schedule,
};
use crate::repair::plan::{
    ActionKind, KeyMap, TableShape, fetch_rows, foreign_keys, new_run_id, order_tables,
};

/// How to undo a run.
#[derive(Debug, Clone)]
pub struct UndoOptions {
    /// The fix run to undo.
    pub run_id: String,
    /// Only report what would be restored.
    pub dry_run: bool,
    /// Batching, throttle, `no_replicate` and the conflicts schema, as for `fix`.
    pub apply: ApplyOptions,
}

/// What became of one archived change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoStatus {
    /// Would be restored (dry run).
    Planned,
    /// Restored.
    Restored,
    /// Already as before the run: nothing to do.
    AlreadyRestored,
    /// Changed since the run: left untouched.
    Changed,
    /// Its batch failed (see `errors`).
    Failed,
}

impl UndoStatus {
    /// The status for people: `planned`, `restored`, `already restored`, `changed`, `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            UndoStatus::Planned => "planned",
            UndoStatus::Restored => "restored",
            UndoStatus::AlreadyRestored => "already restored",
            UndoStatus::Changed => "changed",
            UndoStatus::Failed => "failed",
        }
    }
}

/// One restore.
#[derive(Debug, Clone, Serialize)]
pub struct UndoAction {
    /// The region.
    pub region: String,
    /// `schema.table`.
    pub table: String,
    /// The row's key.
    pub key: KeyMap,
    /// What undo does: `update` (back to the old image), `insert` (re-create a deleted row)
    /// or `delete` (remove a copied row).
    pub action: ActionKind,
    /// What became of it.
    pub status: UndoStatus,
}

/// The result of `undo`.
#[derive(Debug, Clone, Serialize)]
pub struct UndoReport {
    /// The undo's own run id (in the records it wrote).
    pub run_id: String,
    /// The run undone.
    pub undone_run: String,
    /// True for `--dry-run`.
    pub dry_run: bool,
    /// Every archived change of the run, with its fate.
    pub actions: Vec<UndoAction>,
    /// Rows restored.
    pub restored: usize,
    /// Rows changed since the run (not restored).
    pub changed: usize,
    /// Errors (failed batches, tables that no longer exist).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl UndoReport {
    /// 0 when everything is restored (or was already), 1 when some rows changed since the
    /// run or a batch failed.
    pub fn exit_code(&self) -> i32 {
        if self.changed == 0 && self.errors.is_empty() {
            0
        } else {
            1
        }
    }
}

struct Record {
    table_name: String,
    key: KeyMap,
    local_row: Option<String>,
    remote_row: Option<String>,
}

/// The changes a run made in one region: its archive records with an `action` (records of
/// `check --record` that the run closed carry its `run_id` too, but changed nothing).
async fn read_records(
    client: &Client,
    region: &str,
    schema: &str,
    run_id: &str,
) -> Result<Vec<Record>> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = $1 AND c.relname = 'replication_conflicts')",
            &[&schema],
        )
        .await
        .map_err(|e| Error::query(region, "looking for replication_conflicts", e))?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rc = conflicts_table(schema);
    let rows = client
        .query(
            &format!(
                "SELECT table_name, key::text, local_row::text, remote_row::text FROM {rc} c
                 WHERE run_id = $1 AND resolved_at IS NOT NULL AND (local_row IS NOT NULL OR remote_row IS NOT NULL)
                   AND action IN ('insert', 'update', 'delete')
                   -- records imported from the replication engine (a `source`) are
                   -- partial and never restored from
                   AND to_jsonb(c) ->> 'source' IS NULL
                 ORDER BY id"
            ),
            &[&run_id],
        )
        .await
        .map_err(|e| Error::query(region, "reading replication_conflicts", e))?;
    let mut out = Vec::new();
    for r in rows {
        let key_text: String = r.get(1);
        let key = match serde_json::from_str::<serde_json::Value>(&key_text) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => {
                return Err(Error::Query {
                    region: region.into(),
                    context: "reading replication_conflicts".into(),
                    message: format!(
                        "record of run {run_id} has a key that is not a JSON object: {key_text}"
                    ),
                });
            }
        };
        out.push(Record {
            table_name: r.get(0),
            key,
            local_row: r.get(2),
            remote_row: r.get(3),
        });
    }
    Ok(out)
}

/// Finds the table whose `schema.name` is `text` (as recorded in `table_name`).
async fn find_table(client: &Client, region: &str, text: &str) -> Result<Option<TableName>> {
    let row = client
        .query_opt(
            "SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname || '.' || c.relname = $1 AND c.relkind IN ('r', 'p') LIMIT 1",
            &[&text],
        )
        .await
        .map_err(|e| Error::query(region, format!("looking up table {text}"), e))?;
    Ok(row.map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))))
}

/// Undoes run `opts.run_id` in every connected region (each written through a session of
/// its own).
pub async fn undo_run(
    regions: &[crate::pg::connect::Region],
    opts: &UndoOptions,
) -> Result<UndoReport> {
    let mut sessions = Vec::new();
    for r in regions {
        sessions.push(r.open_another().await?);
    }
    let refs: Vec<&Client> = sessions.iter().collect();
    let names: Vec<String> = regions.iter().map(|r| r.name.clone()).collect();
    undo_run_on(&refs, &names, opts).await
}

/// The full run id that `given` names: itself when some record carries it exactly, else the
/// one run id it is a unique prefix of (as `git` takes a short commit id). An ambiguous
/// prefix is a usage error saying how many runs it matches; one matching nothing is
/// returned as given.
pub async fn resolve_run_id(
    regions: &[crate::pg::connect::Region],
    conflicts_schema: &str,
    given: &str,
) -> Result<String> {
    let table = crate::store::conflicts::table_name(Some(conflicts_schema));
    let mut found = std::collections::BTreeSet::new();
    for r in regions {
        if !crate::store::conflicts::exists(&r.client, &r.name, &table).await? {
            continue;
        }
        let rows = r
            .client
            .query(
                &format!(
                    "SELECT DISTINCT run_id FROM {} WHERE left(run_id, length($1)) = $1 LIMIT 1000",
                    table.quoted()
                ),
                &[&given],
            )
            .await
            .map_err(|e| Error::query(&r.name, "looking up the run id", &e))?;
        found.extend(rows.iter().map(|row| row.get::<_, String>(0)));
    }
    if found.contains(given) || found.is_empty() {
        return Ok(given.to_string());
    }
    if found.len() == 1 {
        return Ok(found.into_iter().next().unwrap_or_default());
    }
    Err(Error::Usage(format!(
        "--run {given}: ambiguous, it is the start of {} run ids; give more of the run id",
        found.len()
    )))
}

/// Undoes run `opts.run_id` in every region. `clients[i]` is the write session of
/// `regions[i]`.
pub async fn undo_run_on(
    clients: &[&Client],
    regions: &[String],
    opts: &UndoOptions,
) -> Result<UndoReport> {
    let undo_id = new_run_id();
    let mut any_record = false;
    let mut report = UndoReport {
        run_id: undo_id.clone(),
        undone_run: opts.run_id.clone(),
        dry_run: opts.dry_run,
        actions: Vec::new(),
        restored: 0,
        changed: 0,
        errors: Vec::new(),
    };
    if !opts.dry_run && opts.apply.no_replicate {
        // Check every region may use the replication origin before restoring anything.
        for (client, region) in clients.iter().zip(regions) {
            let origin = origin_name(&undo_id, region);
            prepare_session(client, region, Some(&origin)).await?;
            finish_session(client, Some(&origin)).await;
        }
    }
    for (client, region) in clients.iter().zip(regions) {
        let records =
            read_records(client, region, &opts.apply.conflicts_schema, &opts.run_id).await?;
        if records.is_empty() {
            continue;
        }
        any_record = true;
        // Tables, in foreign-key order.
        let mut by_table: BTreeMap<String, Vec<Record>> = BTreeMap::new();
        for r in records {
            by_table.entry(r.table_name.clone()).or_default().push(r);
        }
        let mut shapes: Vec<TableShape> = Vec::new();
        let mut recs: Vec<Vec<Record>> = Vec::new();
        for (name, rs) in by_table {
            let Some(table) = find_table(client, region, &name).await? else {
                report.errors.push(format!(
                    "region {region}: table {name} no longer exists; its {} archived change(s) were not undone",
                    rs.len()
                ));
                continue;
            };
            // The key in the table's own order (the archive's jsonb has its own order).
            let mut key_columns: Vec<String> = rs[0].key.keys().cloned().collect();
            let orders = crate::pg::schema::primary_key_orders(client, &[table.to_string()])
                .await
                .map_err(|e| Error::query(region, "reading the table's key columns", &e))?;
            if let Some(order) = orders.get(&table.to_string()) {
                let mut k: KeyMap = key_columns
                    .iter()
                    .map(|c| (c.clone(), serde_json::Value::Null))
                    .collect();
                crate::pg::schema::reorder_key(&mut k, order);
                key_columns = k.keys().cloned().collect();
            }
            let mut rs = rs;
            for r in &mut rs {
                crate::pg::schema::reorder_key(&mut r.key, &key_columns);
            }
            shapes.push(TableShape::read(client, region, &table, &key_columns, &[]).await?);
            recs.push(rs);
        }
        let names: Vec<TableName> = shapes.iter().map(|s| s.table.clone()).collect();
        let fks = foreign_keys(client, region, &names).await?;
        let (order, cycles) = order_tables(&names, &fks);
        let groups: Vec<TableGroup> = group_tables(&names, &order, &cycles);
        let mut items = Vec::new();
        let mut item_table = Vec::new();
        let mut item_action = Vec::new();
        for (ti, (shape, rs)) in shapes.iter().zip(&recs).enumerate() {
            let keys: Vec<&KeyMap> = rs.iter().map(|r| &r.key).collect();
            let mut current = Vec::new();
            for chunk in keys.chunks(crate::repair::plan::FETCH_BATCH) {
                current.extend(fetch_rows(client, region, shape, chunk, false).await?);
            }
            for (r, cur) in rs.iter().zip(current) {
                let cur = cur.map(|c| c.image);
                let action = match (&r.local_row, &r.remote_row) {
                    (None, _) => ActionKind::Delete,
                    (Some(_), None) => ActionKind::Insert,
                    (Some(_), Some(_)) => ActionKind::Update,
                };
                let status = if cur == r.local_row {
                    Some(UndoStatus::AlreadyRestored)
                } else if cur != r.remote_row {
                    Some(UndoStatus::Changed)
                } else {
                    None
                };
                let idx = report.actions.len();
                report.actions.push(UndoAction {
                    region: region.clone(),
                    table: shape.table.to_string(),
                    key: r.key.clone(),
                    action,
                    status: status.unwrap_or(UndoStatus::Planned),
                });
                if status == Some(UndoStatus::Changed) {
                    report.changed += 1;
                }
                if status.is_some() {
                    continue;
                }
                items.push(WriteItem {
                    key: r.key.clone(),
                    action,
                    expected: cur,
                    new_row: r.local_row.clone(),
                    conflict_type: "undo".into(),
                    resolution: "undo".into(),
                    winner_region: None,
                    remote_region: None,
                    decided_by: "undo".into(),
                    json_nulls: Vec::new(),
                });
                item_table.push(ti);
                item_action.push(idx);
            }
        }
        if opts.dry_run || items.is_empty() {
            continue;
        }
        let units = schedule(&items, &item_table, &groups, opts.apply.batch_size);
        let origin = item_table
            .iter()
            .enumerate()
            .map(|(i, t)| (*t, i, 0))
            .collect();
        let work = RegionWork {
            region: region.clone(),
            items,
            origin,
            units,
        };
        let shape_refs: Vec<&TableShape> = shapes.iter().collect();
        let table_names: Vec<String> = shapes.iter().map(|s| s.table.to_string()).collect();
        let hard: Vec<usize> = groups
            .iter()
            .filter(|g| g.hard_cycle)
            .flat_map(|g| g.tables.clone())
            .collect();
        let origin = opts
            .apply
            .no_replicate
            .then(|| origin_name(&undo_id, region));
        prepare_session(client, region, origin.as_deref()).await?;
        let outcome = run_region(
            client,
            &work,
            &shape_refs,
            &table_names,
            &undo_id,
            &opts.apply,
            &hard,
        )
        .await;
        finish_session(client, origin.as_deref()).await;
        let outcome = outcome?;
        for (i, &a) in item_action.iter().enumerate() {
            let st = match outcome.status.get(i).copied().flatten() {
                Some(true) => {
                    report.restored += 1;
                    UndoStatus::Restored
                }
                Some(false) => {
                    report.changed += 1;
                    UndoStatus::Changed
                }
                None => UndoStatus::Failed,
            };
            report.actions[a].status = st;
        }
        report
            .errors
            .extend(outcome.errors.into_iter().map(|(_, e)| e));
    }
    if !any_record {
        return Err(Error::Usage(format!(
            "no change of run {} is archived in replication_conflicts of any region ({})",
            opts.run_id,
            regions.join(", ")
        )));
    }
    Ok(report)
}
