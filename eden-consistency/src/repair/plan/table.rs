//! Planning one table: every key's versions read in every region and decided, keys
//! held back when a delete could cascade.

use std::collections::HashMap;

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::ident::TableName;

use super::decide::{Decide, VersionView, Winner};
use super::fetch::{commit_ts_enabled, fetch_rows};
use super::fk::{foreign_keys, order_tables};
use super::tombstones::fetch_tombstones;
use super::{
    ActionKind, FETCH_BATCH, FixPlan, FixTarget, KeyMap, KeyPlan, NotPlanned, PlannedAction,
    TablePlan, TableShape, new_run_id, same_version,
};

/// Plans one table: reads every key's versions in every region and asks `decide`.
///
/// `clients[i]` is the session of `regions[i]`. `shape` is the table's shape when the caller
/// knows it already (from the check); otherwise it is read from the first region.
pub async fn plan_table(
    clients: &[&Client],
    regions: &[String],
    target: &FixTarget,
    shape: Option<TableShape>,
    decide: &mut Decide<'_>,
) -> Result<TablePlan> {
    let first = clients
        .first()
        .ok_or_else(|| Error::Usage("fix needs at least one region".into()))?;
    let shape = match shape {
        Some(s) => s,
        None => {
            TableShape::read(
                first,
                &regions[0],
                &target.table,
                &target.key_columns,
                &target.exclude_columns,
            )
            .await?
        }
    };
    let mut ts_on = Vec::new();
    for (c, r) in clients.iter().zip(regions) {
        ts_on.push(commit_ts_enabled(c, r).await?);
    }
    let mut keys_out = Vec::new();
    let key_refs: Vec<&KeyMap> = target.keys.iter().collect();
    for chunk in key_refs.chunks(FETCH_BATCH) {
        let mut per_region = Vec::new();
        let mut tombs = Vec::new();
        for (i, (c, r)) in clients.iter().zip(regions).enumerate() {
            per_region.push(fetch_rows(c, r, &shape, chunk, ts_on[i]).await?);
            tombs.push(match &target.tombstone_table {
                Some(t) => fetch_tombstones(c, r, &shape, t, chunk).await?,
                None => vec![None; chunk.len()],
            });
        }
        for (ki, key) in chunk.iter().enumerate() {
            let views: Vec<VersionView<'_>> = regions
                .iter()
                .enumerate()
                .map(|(ri, r)| VersionView {
                    region: r,
                    region_index: ri,
                    row: per_region[ri][ki].as_ref(),
                    tombstone: tombs[ri][ki].as_ref(),
                })
                .collect();
            if let Some(kp) = plan_key(&shape, key, &views, decide)? {
                keys_out.push(kp);
            }
        }
    }
    Ok(TablePlan {
        table: target.table.clone(),
        resolution: target.resolution.clone(),
        shape,
        keys: keys_out,
        deferred: target.deferred.clone(),
    })
}

/// Plans one key from its versions; `None` when the regions already agree.
pub fn plan_key(
    shape: &TableShape,
    key: &KeyMap,
    views: &[VersionView<'_>],
    decide: &mut Decide<'_>,
) -> Result<Option<KeyPlan>> {
    let first = views.first().and_then(|v| v.row);
    if views.iter().all(|v| same_version(v.row, first)) {
        return Ok(None);
    }
    let res = decide(shape, views)?;
    if res.needs_human {
        let actions = views
            .iter()
            .map(|v| {
                let other = views
                    .iter()
                    .find(|o| o.region != v.region && !same_version(o.row, v.row))
                    .map(|o| (o.region.to_string(), o.row.map(|r| r.image.clone())));
                PlannedAction {
                    region: v.region.to_string(),
                    action: ActionKind::Manual,
                    current: v.row.map(|r| r.image.clone()),
                    other,
                    possible_undelete: false,
                }
            })
            .collect();
        return Ok(Some(KeyPlan {
            key: key.clone(),
            winner_region: None,
            winner_row: None,
            winner_json_nulls: Vec::new(),
            decided_by: res.decided_by,
            needs_human: true,
            actions,
        }));
    }
    let bad = |m: String| Error::Table {
        table: shape.table.to_string(),
        message: m,
    };
    let winner_json_nulls: Vec<String> = match &res.winner {
        Winner::Region(i) => views
            .get(*i)
            .and_then(|v| v.row)
            .map(|r| r.json_nulls.clone())
            .unwrap_or_default(),
        Winner::Merged { based_on, .. } => views
            .get(*based_on)
            .and_then(|v| v.row)
            .map(|r| r.json_nulls.clone())
            .unwrap_or_default(),
        Winner::Delete { .. } => Vec::new(),
    };
    let (winner_region, winner_row, winner_view) = match &res.winner {
        Winner::Region(i) => {
            let v = views
                .get(*i)
                .ok_or_else(|| bad(format!("the resolver named version {i} of {}", views.len())))?;
            (
                Some(v.region.to_string()),
                v.row.map(|r| r.image.clone()),
                Some(v),
            )
        }
        Winner::Merged { image, based_on } => (
            views.get(*based_on).map(|v| v.region.to_string()),
            Some(image.clone()),
            None,
        ),
        Winner::Delete { by } => (
            by.and_then(|i| views.get(i)).map(|v| v.region.to_string()),
            None,
            None,
        ),
    };
    let mut actions = Vec::new();
    for (vi, v) in views.iter().enumerate() {
        let derived = match (&res.winner, v.row) {
            (Winner::Delete { .. }, Some(_)) => Some(ActionKind::Delete),
            (Winner::Delete { .. }, None) => None,
            (_, None) => winner_row.is_some().then_some(ActionKind::Insert),
            (_, Some(r)) => match (winner_view, &winner_row) {
                (_, None) => None,
                (Some(w), Some(_)) => (!same_version(Some(r), w.row)).then_some(ActionKind::Update),
                (None, Some(img)) => (r.image != *img).then_some(ActionKind::Update),
            },
        };
        let action = match &res.actions {
            Some(a) => a.get(vi).copied().flatten(),
            None => derived,
        };
        // A delete or an update needs a row here, an insert needs none: anything else from
        // a decider would be a contradiction; trust the data.
        let action = match (action, v.row) {
            (Some(ActionKind::Insert), Some(_)) => Some(ActionKind::Update),
            (Some(ActionKind::Update), None) => winner_row.as_ref().map(|_| ActionKind::Insert),
            (Some(ActionKind::Delete), None) => None,
            (Some(ActionKind::Update | ActionKind::Insert), _) if winner_row.is_none() => None,
            (a, _) => a,
        };
        if let Some(action) = action {
            actions.push(PlannedAction {
                region: v.region.to_string(),
                action,
                current: v.row.map(|r| r.image.clone()),
                other: None,
                possible_undelete: action == ActionKind::Insert && v.tombstone.is_none(),
            });
        }
    }
    if actions.is_empty() {
        return Ok(None);
    }
    Ok(Some(KeyPlan {
        key: key.clone(),
        winner_region,
        winner_row,
        winner_json_nulls,
        decided_by: res.decided_by,
        needs_human: false,
        actions,
    }))
}

/// Plans several tables: each table's keys by [`plan_table`], then orders the tables by
/// their foreign keys (parents first) and finds cycles.
pub async fn plan_targets(
    clients: &[&Client],
    regions: &[String],
    database: &str,
    targets: &[FixTarget],
    decide_for: &mut (dyn FnMut(&FixTarget) -> Result<Box<Decide<'static>>> + Send),
) -> Result<FixPlan> {
    plan_targets_with(
        clients,
        regions,
        database,
        targets,
        HashMap::new(),
        decide_for,
    )
    .await
}

/// [`plan_targets`] with the shapes of some tables already known (from the check), so
/// that their definitions are not read again.
pub(super) async fn plan_targets_with(
    clients: &[&Client],
    regions: &[String],
    database: &str,
    targets: &[FixTarget],
    mut shapes: HashMap<TableName, TableShape>,
    decide_for: &mut (dyn FnMut(&FixTarget) -> Result<Box<Decide<'static>>> + Send),
) -> Result<FixPlan> {
    let mut tables = Vec::new();
    let mut not_planned = Vec::new();
    for t in targets {
        // A table that cannot be planned (vanished, unreadable key, ...) is reported and the
        // others go on; a lost connection stops everything.
        let planned = match decide_for(t) {
            Ok(mut decide) => {
                let shape = shapes.remove(&t.table);
                plan_table(clients, regions, t, shape, &mut *decide).await
            }
            Err(e) => Err(e),
        };
        match planned {
            Ok(tp) => tables.push(tp),
            Err(e) if e.is_connection() || client_closed(clients) => {
                return Err(e.with_table(&t.table));
            }
            Err(e) => {
                tracing::warn!(table = %t.table, "not planned: {e}");
                not_planned.push(NotPlanned::error(t.table.to_string(), e.to_string()));
            }
        }
    }
    let names: Vec<TableName> = tables.iter().map(|t| t.table.clone()).collect();
    let (order, fk_cycles) = match clients.first() {
        Some(c) => {
            let fks = foreign_keys(c, &regions[0], &names).await?;
            order_tables(&names, &fks)
        }
        None => (names.clone(), Vec::new()),
    };
    let mut by_name: HashMap<TableName, TablePlan> =
        tables.into_iter().map(|t| (t.table.clone(), t)).collect();
    let mut tables: Vec<TablePlan> = order.iter().filter_map(|n| by_name.remove(n)).collect();
    if let Some(c) = clients.first() {
        hold_back_cascading_deletes(c, &regions[0], &mut tables).await?;
    }
    Ok(FixPlan {
        run_id: new_run_id(),
        database: database.to_string(),
        regions: regions.to_vec(),
        tables,
        not_planned,
        fk_cycles,
    })
}

fn client_closed(clients: &[&Client]) -> bool {
    clients.iter().any(|c| c.is_closed())
}

/// A delete from a table that other tables reference with `ON DELETE CASCADE`, `SET NULL`
/// or `SET DEFAULT` would change rows fix cannot archive: such keys are not deleted but
/// left for a human (moved to the table's `deferred`, with the constraint named).
async fn hold_back_cascading_deletes(
    client: &Client,
    region: &str,
    tables: &mut [TablePlan],
) -> Result<()> {
    if !tables.iter().any(|t| {
        t.keys
            .iter()
            .any(|k| k.actions.iter().any(|a| a.action == ActionKind::Delete))
    }) {
        return Ok(());
    }
    let rows = client
        .query(
            "SELECT pn.nspname::text, pc.relname::text, format('%I.%I.%I', cn.nspname, cc.relname, con.conname)
             FROM pg_catalog.pg_constraint con
             JOIN pg_catalog.pg_class cc ON cc.oid = con.conrelid
             JOIN pg_catalog.pg_namespace cn ON cn.oid = cc.relnamespace
             JOIN pg_catalog.pg_class pc ON pc.oid = con.confrelid
             JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
             WHERE con.contype = 'f' AND con.confdeltype IN ('c', 'n', 'd')",
            &[],
        )
        .await
        .map_err(|e| Error::query(region, "reading foreign keys", e))?;
    for t in tables.iter_mut() {
        let Some(r) = rows.iter().find(|r| {
            r.get::<_, String>(0) == t.table.schema && r.get::<_, String>(1) == t.table.name
        }) else {
            continue;
        };
        let con: String = r.get(2);
        let mut kept = Vec::new();
        for k in std::mem::take(&mut t.keys) {
            if k.actions.iter().any(|a| a.action == ActionKind::Delete) {
                t.deferred.push((
                    k.key.clone(),
                    format!(
                        "a delete won, but deleting would cascade through {con} (ON DELETE CASCADE/SET NULL/SET DEFAULT) \
                         to rows fix cannot archive; delete it by hand"
                    ),
                ));
            } else {
                kept.push(k);
            }
        }
        t.keys = kept;
    }
    Ok(())
}
