//! Scheduling the writes: a plan's actions turned into per-region items, cut into batches
//! and transactions in foreign-key order.

use crate::repair::plan::{ActionKind, FixPlan, KeyMap};

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
    pub(super) fn to_json(&self, i: usize) -> serde_json::Value {
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
