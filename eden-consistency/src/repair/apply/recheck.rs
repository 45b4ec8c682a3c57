//! After the writes: unique collisions found, keys re-checked, open records closed.

use std::collections::{BTreeMap, HashMap};

use tokio_postgres::Client;

use crate::error::Result;
use crate::repair::plan::{ActionKind, FixPlan, KeyMap, TableShape, fetch_rows};

use super::ApplyOptions;
use super::report::ActionStatus;

/// Inserts that were not written (`ON CONFLICT DO NOTHING` met a row) are checked for a
/// collision on another unique constraint: `(table, key, action, collision)` indexes.
pub(super) async fn find_collisions(
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
pub(super) async fn close_open_records(
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
