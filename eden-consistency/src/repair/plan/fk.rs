//! The foreign-key graph: foreign keys read from `pg_constraint`, tables ordered parents
//! first, cycles found (Tarjan).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::ident::TableName;

/// A set of tables whose foreign keys form a cycle (including a self-reference).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FkCycle {
    /// The tables of the cycle (sorted).
    pub tables: Vec<TableName>,
    /// True when every foreign key inside the cycle is `DEFERRABLE`: the cycle's rows are
    /// then written in one transaction per region under `SET CONSTRAINTS ALL DEFERRED`.
    pub deferrable: bool,
    /// The constraints inside the cycle (`schema.table.constraint`).
    pub constraints: Vec<String>,
}

/// One foreign key between two tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    /// The referencing table.
    pub child: TableName,
    /// The referenced table.
    pub parent: TableName,
    /// Constraint name.
    pub name: String,
    /// `DEFERRABLE`.
    pub deferrable: bool,
}

/// Reads the foreign keys among `tables` from `pg_constraint`.
pub async fn foreign_keys(
    client: &Client,
    region: &str,
    tables: &[TableName],
) -> Result<Vec<ForeignKey>> {
    let rows = client
        .query(
            "SELECT cn.nspname::text, cc.relname::text, pn.nspname::text, pc.relname::text,
                    con.conname::text, con.condeferrable
             FROM pg_catalog.pg_constraint con
             JOIN pg_catalog.pg_class cc ON cc.oid = con.conrelid
             JOIN pg_catalog.pg_namespace cn ON cn.oid = cc.relnamespace
             JOIN pg_catalog.pg_class pc ON pc.oid = con.confrelid
             JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
             WHERE con.contype = 'f'
             ORDER BY 1, 2, 5",
            &[],
        )
        .await
        .map_err(|e| Error::query(region, "reading foreign keys", e))?;
    let set: BTreeSet<&TableName> = tables.iter().collect();
    let mut out = Vec::new();
    for r in rows {
        let child = TableName::new(r.get::<_, String>(0), r.get::<_, String>(1));
        let parent = TableName::new(r.get::<_, String>(2), r.get::<_, String>(3));
        if set.contains(&child) && set.contains(&parent) {
            out.push(ForeignKey {
                child,
                parent,
                name: r.get(4),
                deferrable: r.get(5),
            });
        }
    }
    Ok(out)
}

/// Orders tables parents first (a topological order of the foreign keys, ties by name) and
/// finds the cycles. Tables of one cycle are adjacent in the order.
pub fn order_tables(tables: &[TableName], fks: &[ForeignKey]) -> (Vec<TableName>, Vec<FkCycle>) {
    let names: Vec<TableName> = {
        let mut v = tables.to_vec();
        v.sort();
        v.dedup();
        v
    };
    let idx: HashMap<&TableName, usize> = names.iter().enumerate().map(|(i, t)| (t, i)).collect();
    let n = names.len();
    // edges parent -> child
    let mut adj: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    for fk in fks {
        if let (Some(&p), Some(&c)) = (idx.get(&fk.parent), idx.get(&fk.child)) {
            adj[p].insert(c);
        }
    }
    // Tarjan's strongly connected components.
    let comps = tarjan(n, &adj);
    let mut comp_of = vec![0usize; n];
    for (ci, comp) in comps.iter().enumerate() {
        for &v in comp {
            comp_of[v] = ci;
        }
    }
    // Condensed graph, Kahn's algorithm with the smallest table name first.
    let m = comps.len();
    let mut indeg = vec![0usize; m];
    let mut cadj: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); m];
    for (p, cs) in adj.iter().enumerate() {
        for &c in cs {
            let (a, b) = (comp_of[p], comp_of[c]);
            if a != b && cadj[a].insert(b) {
                indeg[b] += 1;
            }
        }
    }
    let comp_key = |ci: usize| comps[ci].iter().map(|&v| &names[v]).min().cloned();
    let mut ready: BTreeMap<Option<TableName>, usize> = (0..m)
        .filter(|&c| indeg[c] == 0)
        .map(|c| (comp_key(c), c))
        .collect();
    let mut order = Vec::with_capacity(n);
    let mut cycles = Vec::new();
    while let Some((_, c)) = ready.pop_first() {
        let mut members: Vec<usize> = comps[c].clone();
        members.sort_by(|a, b| names[*a].cmp(&names[*b]));
        let self_ref = members.len() == 1 && adj[members[0]].contains(&members[0]);
        if members.len() > 1 || self_ref {
            let member_set: BTreeSet<&TableName> = members.iter().map(|&v| &names[v]).collect();
            let inner: Vec<&ForeignKey> = fks
                .iter()
                .filter(|fk| member_set.contains(&fk.child) && member_set.contains(&fk.parent))
                .collect();
            cycles.push(FkCycle {
                tables: members.iter().map(|&v| names[v].clone()).collect(),
                deferrable: inner.iter().all(|fk| fk.deferrable),
                constraints: inner
                    .iter()
                    .map(|fk| format!("{}.{}", fk.child, fk.name))
                    .collect(),
            });
        }
        for &v in &members {
            order.push(names[v].clone());
        }
        for &d in &cadj[c] {
            indeg[d] -= 1;
            if indeg[d] == 0 {
                ready.insert(comp_key(d), d);
            }
        }
    }
    (order, cycles)
}

fn tarjan(n: usize, adj: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct St<'a> {
        adj: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut St<'_>, v: usize) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on[v] = true;
        let succ: Vec<usize> = s.adj[v].iter().copied().collect();
        for w in succ {
            match s.index[w] {
                None => {
                    visit(s, w);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(iw) if s.on[w] => s.low[v] = s.low[v].min(iw),
                _ => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on[w] = false;
                comp.push(w);
                if w == v {
                    break;
                }
            }
            s.out.push(comp);
        }
    }
    let mut s = St {
        adj,
        index: vec![None; n],
        low: vec![0; n],
        on: vec![false; n],
        stack: vec![],
        next: 0,
        out: vec![],
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(&mut s, v);
        }
    }
    s.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: &str) -> TableName {
        TableName::new("public", n)
    }

    fn fk(child: &str, parent: &str, deferrable: bool) -> ForeignKey {
        ForeignKey {
            child: t(child),
            parent: t(parent),
            name: format!("{child}_{parent}_fk"),
            deferrable,
        }
    }

    #[test]
    fn parents_first() {
        let tables = vec![t("a_child"), t("m_parent"), t("z_grandparent"), t("lone")];
        let fks = vec![
            fk("a_child", "m_parent", false),
            fk("m_parent", "z_grandparent", false),
        ];
        let (order, cycles) = order_tables(&tables, &fks);
        assert!(cycles.is_empty());
        let pos = |n: &str| order.iter().position(|x| x.name == n).unwrap();
        assert!(pos("z_grandparent") < pos("m_parent"));
        assert!(pos("m_parent") < pos("a_child"));
        assert_eq!(order.len(), 4);
    }

    #[test]
    fn cycles_found() {
        let tables = vec![t("a"), t("b"), t("c"), t("emp")];
        let fks = vec![
            fk("a", "b", true),
            fk("b", "a", true),
            fk("c", "a", false),
            fk("emp", "emp", false),
        ];
        let (order, cycles) = order_tables(&tables, &fks);
        assert_eq!(cycles.len(), 2);
        let ab = cycles.iter().find(|c| c.tables.len() == 2).unwrap();
        assert!(ab.deferrable);
        let emp = cycles.iter().find(|c| c.tables.len() == 1).unwrap();
        assert!(!emp.deferrable);
        let pos = |n: &str| order.iter().position(|x| x.name == n).unwrap();
        assert!(pos("a") < pos("c") && pos("b") < pos("c"));
    }
}
