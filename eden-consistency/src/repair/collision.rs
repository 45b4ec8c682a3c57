//! Collisions on unique constraints other than the key.
//!
//! The same logical row created in two regions under different keys (a unique
//! `(tenant_id, path)`, different `id`) cannot be copied across: inserting one region's row
//! into the other meets the other row on the unique constraint. `fix` writes inserts with
//! `ON CONFLICT DO NOTHING`, so such a row is not written; this module finds which
//! constraint and which existing row it met, so the key is reported unresolved with that
//! reason instead of "changed since read" on every run.
//!
//! A table whose rule says `unique_collisions: resolve` treats the two rows as two versions
//! of one logical row ([`resolve_collisions`]): the table's rule picks the winner; the
//! losing row is deleted (archived in `replication_conflicts` in the same transaction) in
//! every region that holds it, then the winner is inserted where it is missing.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::repair::apply::{ActionStatus, FixReport, FixRun, apply_plan};
use crate::repair::plan::{
    ActionKind, FixPlan, KeyPlan, PlannedAction, TablePlan, TableShape, VersionView, Winner,
    commit_ts_enabled, fetch_rows, resolver_decider,
};

/// A winner row that meets another row on a unique constraint.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Collision {
    /// The region where the row could not be written.
    pub region: String,
    /// The unique index (constraint) met.
    pub constraint: String,
    /// Its columns.
    pub columns: Vec<String>,
    /// The key of the row that was to be written.
    pub key: serde_json::Value,
    /// The key of the row already holding those values there.
    pub other_key: serde_json::Value,
    /// With `unique_collisions: resolve`: how the collision was resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved: Option<CollisionResolution>,
}

/// How a collision was resolved by the table's rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CollisionResolution {
    /// The key of the row kept (copied where it was missing).
    pub winner_key: serde_json::Value,
    /// The key of the row archived and removed in every region.
    pub loser_key: serde_json::Value,
    /// The region whose row won.
    pub winner_region: String,
    /// What decided (the rule's `decided_by`).
    pub decided_by: String,
}

impl Collision {
    /// One sentence for people.
    pub fn message(&self) -> String {
        if let Some(r) = &self.resolved {
            return format!(
                "unique collision in region {} on {} ({}): keys {} and {} held the same values; \
                 resolved by the table's rule ({}): key {} kept (from region {}), key {} archived and removed",
                self.region,
                self.constraint,
                self.columns.join(", "),
                self.key,
                self.other_key,
                r.decided_by,
                r.winner_key,
                r.winner_region,
                r.loser_key
            );
        }
        format!(
            "unique collision in region {} on {} ({}): key {} cannot be written because key {} holds the same values; \
             left unresolved, decide which row stays by hand",
            self.region,
            self.constraint,
            self.columns.join(", "),
            self.key,
            self.other_key
        )
    }
}

/// Looks for a row other than `key`'s that holds the same values as `row_image` (the
/// winner's `to_jsonb` text) on one of the table's unique indexes (full, no expressions)
/// besides the key's own.
pub(crate) async fn find_collision(
    client: &Client,
    region: &str,
    shape: &TableShape,
    key: &serde_json::Value,
    row_image: &str,
) -> Result<Option<Collision>> {
    let tbl = shape.table.quoted();
    let uniques = client
        .query(
            "SELECT i.indexrelid::regclass::text, array_agg(a.attname::text ORDER BY k.ord) \
             FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1::text::regclass AND i.indisunique \
               AND i.indexprs IS NULL AND i.indpred IS NULL \
             GROUP BY 1 ORDER BY 1",
            &[&tbl],
        )
        .await
        .map_err(|e| Error::query(region, format!("reading the unique indexes of {}", shape.table), &e))?;
    let mut key_cols = shape.key_columns.clone();
    key_cols.sort();
    for u in uniques {
        let name: String = u.get(0);
        let cols: Vec<String> = u.get(1);
        let mut sorted = cols.clone();
        sorted.sort();
        if sorted == key_cols {
            continue;
        }
        let q = crate::pg::ident::quote_ident;
        let same = cols
            .iter()
            .map(|c| format!("t.{c} = n.{c}", c = q(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let other_row = shape
            .key_columns
            .iter()
            .map(|c| format!("t.{c} IS DISTINCT FROM n.{c}", c = q(c)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let key_obj = shape
            .key_columns
            .iter()
            .map(|c| format!("{}, t.{}", crate::repair::plan::sql_literal(c), q(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT jsonb_build_object({key_obj}) FROM {tbl} AS t, \
             jsonb_populate_record(NULL::{tbl}, $1::text::jsonb) AS n \
             WHERE {same} AND ({other_row}) LIMIT 1"
        );
        let hit = client.query_opt(&sql, &[&row_image]).await.map_err(|e| {
            Error::query(
                region,
                format!("looking for unique collisions in {}", shape.table),
                &e,
            )
        })?;
        if let Some(h) = hit {
            return Ok(Some(Collision {
                region: region.to_string(),
                constraint: name,
                columns: cols,
                key: key.clone(),
                other_key: h.get(0),
                resolved: None,
            }));
        }
    }
    Ok(None)
}

/// Resolves, for tables whose rule says `unique_collisions: resolve`, the collisions of
/// `report` (the result of applying `plan`) by the table's rule, and updates the report:
/// deletes of the losing rows (archived) run first, in one plan, then the inserts of the
/// winners. A pair the rule cannot decide (a human is needed, or a delete wins) stays
/// unresolved.
pub(crate) async fn resolve_collisions(
    checker: &crate::check::Checker,
    plan: &FixPlan,
    report: &mut FixReport,
    run: &FixRun,
) -> Result<()> {
    use crate::config::UniqueCollisions;
    let config = checker.config();
    let db = checker.database();
    let regions = &plan.regions;
    let mut clients: Vec<&Client> = Vec::new();
    for name in regions {
        let r = checker
            .regions()
            .iter()
            .find(|r| &r.name == name)
            .ok_or_else(|| Error::Usage(format!("region {name} of the plan is not connected")))?;
        clients.push(&r.client);
    }
    let empty = |tables| FixPlan {
        run_id: plan.run_id.clone(),
        database: plan.database.clone(),
        regions: plan.regions.clone(),
        tables,
        not_planned: Vec::new(),
        fk_cycles: Vec::new(),
    };
    let (mut deletes, mut inserts) = (empty(Vec::new()), empty(Vec::new()));
    // (table index, collision index, resolution)
    let mut decided: Vec<(usize, usize, CollisionResolution)> = Vec::new();
    for (ti, t) in report.tables.iter().enumerate() {
        let Some(tp) = plan.tables.get(ti) else {
            continue;
        };
        let rule = config.rule_or_default(db, &tp.table);
        if t.collisions.is_empty() || rule.unique_collisions != UniqueCollisions::Resolve {
            continue;
        }
        let cols: Vec<String> = tp
            .shape
            .compared_columns()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        let resolver =
            crate::resolve::Resolver::new(&rule.resolution, None, &cols, &run.fix.registry)
                .map_err(|m| Error::Table {
                    table: tp.table.to_string(),
                    message: m.to_string(),
                })?;
        let mut decide = resolver_decider(resolver);
        let mut ts_on = true;
        for (c, r) in clients.iter().zip(regions) {
            ts_on &= commit_ts_enabled(c, r).await?;
        }
        let (mut del_keys, mut ins_keys) = (Vec::<KeyPlan>::new(), Vec::<KeyPlan>::new());
        let mut pairs: Vec<(String, String, CollisionResolution)> = Vec::new();
        for (ci, c) in t.collisions.iter().enumerate() {
            let (sa, sb) = (c.key.to_string(), c.other_key.to_string());
            if let Some((_, _, r)) = pairs
                .iter()
                .find(|(x, y, _)| (x == &sa && y == &sb) || (x == &sb && y == &sa))
            {
                decided.push((ti, ci, r.clone()));
                continue;
            }
            let (Some(ka), Some(kb)) = (c.key.as_object(), c.other_key.as_object()) else {
                continue;
            };
            let (mut rows_a, mut rows_b) = (Vec::new(), Vec::new());
            for (cl, r) in clients.iter().zip(regions) {
                let mut v = fetch_rows(cl, r, &tp.shape, &[ka, kb], ts_on).await?;
                rows_b.push(v.pop().flatten());
                rows_a.push(v.pop().flatten());
            }
            let (Some(ia), Some(ib)) = (
                rows_a.iter().position(Option::is_some),
                rows_b.iter().position(Option::is_some),
            ) else {
                continue;
            };
            let views = [
                VersionView {
                    region: &regions[ia],
                    region_index: ia,
                    row: rows_a[ia].as_ref(),
                    tombstone: None,
                },
                VersionView {
                    region: &regions[ib],
                    region_index: ib,
                    row: rows_b[ib].as_ref(),
                    tombstone: None,
                },
            ];
            let res = decide(&tp.shape, &views)?;
            let w = match res.winner {
                _ if res.needs_human => continue,
                Winner::Region(i) => i,
                Winner::Merged { based_on, .. } => based_on,
                Winner::Delete { .. } => continue,
            };
            let ((wk, wrows, wi), (lk, lrows)) = if w == 0 {
                ((ka, &rows_a, ia), (kb, &rows_b))
            } else {
                ((kb, &rows_b, ib), (ka, &rows_a))
            };
            let Some(win) = wrows[wi].as_ref() else {
                continue;
            };
            let decided_by = format!("unique_collision:{}", res.decided_by);
            del_keys.push(KeyPlan {
                key: lk.clone(),
                winner_region: Some(regions[wi].clone()),
                winner_row: None,
                winner_json_nulls: Vec::new(),
                decided_by: decided_by.clone(),
                needs_human: false,
                actions: regions
                    .iter()
                    .zip(lrows)
                    .filter_map(|(r, row)| {
                        row.as_ref().map(|row| PlannedAction {
                            region: r.clone(),
                            action: ActionKind::Delete,
                            current: Some(row.image.clone()),
                            other: None,
                            possible_undelete: false,
                        })
                    })
                    .collect(),
            });
            ins_keys.push(KeyPlan {
                key: wk.clone(),
                winner_region: Some(regions[wi].clone()),
                winner_row: Some(win.image.clone()),
                winner_json_nulls: win.json_nulls.clone(),
                decided_by: decided_by.clone(),
                needs_human: false,
                actions: regions
                    .iter()
                    .zip(wrows.iter())
                    .filter(|(_, row)| row.is_none())
                    .map(|(r, _)| PlannedAction {
                        region: r.clone(),
                        action: ActionKind::Insert,
                        current: None,
                        other: None,
                        possible_undelete: false,
                    })
                    .collect(),
            });
            let r = CollisionResolution {
                winner_key: serde_json::Value::Object(wk.clone()),
                loser_key: serde_json::Value::Object(lk.clone()),
                winner_region: regions[wi].clone(),
                decided_by,
            };
            pairs.push((sa, sb, r.clone()));
            decided.push((ti, ci, r));
        }
        let table = |keys| TablePlan {
            table: tp.table.clone(),
            resolution: tp.resolution.clone(),
            shape: tp.shape.clone(),
            keys,
            deferred: Vec::new(),
        };
        deletes.tables.push(table(del_keys));
        inserts.tables.push(table(ins_keys));
    }
    if decided.is_empty() {
        return Ok(());
    }
    let del = apply_plan(checker.regions(), &deletes, &run.apply).await?;
    let ins = apply_plan(checker.regions(), &inserts, &run.apply).await?;
    for (ti, ci, r) in decided {
        let t = &mut report.tables[ti];
        let c = &mut t.collisions[ci];
        let (key, region) = (c.key.clone(), c.region.clone());
        c.resolved = Some(r.clone());
        t.unresolved = t.unresolved.saturating_sub(1);
        // The collided insert: the winner's now carries the status of its insert; the
        // loser's is dropped (the loser no longer exists anywhere).
        let pos = t.actions.iter().position(|a| {
            a.action == ActionKind::Insert
                && a.region == region
                && serde_json::Value::Object(a.key.clone()) == key
        });
        if let Some(p) = pos {
            if key == r.winner_key {
                let st = ins
                    .tables
                    .iter()
                    .flat_map(|x| &x.actions)
                    .find(|a| a.region == region && serde_json::Value::Object(a.key.clone()) == key)
                    .map_or(ActionStatus::Failed, |a| a.status);
                t.actions[p].status = st;
                t.actions[p].decided_by = r.decided_by.clone();
            } else {
                t.actions.remove(p);
            }
        }
        for k in [&r.winner_key, &r.loser_key] {
            t.still_differing
                .retain(|s| &serde_json::Value::Object(s.clone()) != k);
        }
    }
    for (i, part) in [&del, &ins].into_iter().enumerate() {
        for x in &part.tables {
            let Some(t) = report.tables.iter_mut().find(|t| t.table == x.table) else {
                continue;
            };
            if i == 0 {
                t.actions.extend(x.actions.iter().cloned());
            }
            t.errors.extend(x.errors.iter().cloned());
            t.still_differing.extend(x.still_differing.iter().cloned());
        }
    }
    for t in &mut report.tables {
        t.applied = t
            .actions
            .iter()
            .filter(|a| a.status == ActionStatus::Applied)
            .count();
        t.changed = t
            .actions
            .iter()
            .filter(|a| a.status == ActionStatus::Changed)
            .count();
    }
    report.consistent = report.not_planned.is_empty()
        && run.apply.recheck
        && report.tables.iter().all(|t| {
            t.deferred.is_empty()
                && t.unresolved == 0
                && t.errors.is_empty()
                && t.still_differing.is_empty()
        });
    Ok(())
}
