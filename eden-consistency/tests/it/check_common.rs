//! Helpers shared by the check_* integration tests.
#![allow(dead_code)]

use eden_consistency::Config;
use eden_consistency::Mode;
use eden_consistency::{CheckOptions, Checker};
use eden_consistency::{CheckReport, TableReport};
use eden_test_util::TestDbs;

/// A config with one `--region` per test database.
pub fn config_for(dbs: &TestDbs) -> Config {
    let mut cfg = Config::default();
    for i in 0..dbs.len() {
        cfg.apply_region_flag(&format!("{}={}", dbs.region(i), dbs.url(i)))
            .unwrap();
    }
    cfg
}

/// Connects a checker to every test database.
pub async fn checker(dbs: &TestDbs) -> Checker {
    Checker::connect(config_for(dbs), dbs.name(0))
        .await
        .unwrap()
}

/// Options for one mode.
pub fn opts(mode: Mode) -> CheckOptions {
    CheckOptions {
        mode,
        ..CheckOptions::default()
    }
}

/// Runs a check in both modes, asserts both agree (apart from stats), returns the pushdown one.
pub async fn run_both(c: &Checker, base: &CheckOptions) -> CheckReport {
    let p = c
        .run(&CheckOptions {
            mode: Mode::Pushdown,
            ..base.clone()
        })
        .await
        .unwrap();
    let s = c
        .run(&CheckOptions {
            mode: Mode::Stream,
            ..base.clone()
        })
        .await
        .unwrap();
    assert_eq!(strip(&p), strip(&s), "pushdown and stream disagree");
    p
}

/// The report's JSON without timings, stats, mode and run id.
pub fn strip(r: &CheckReport) -> serde_json::Value {
    let mut j = r.to_json();
    let o = j.as_object_mut().unwrap();
    for k in ["stats", "elapsed_ms", "mode", "run_id"] {
        o.remove(k);
    }
    for t in o.get_mut("tables").unwrap().as_array_mut().unwrap() {
        let t = t.as_object_mut().unwrap();
        for k in ["stats", "elapsed_ms", "mode"] {
            t.remove(k);
        }
    }
    j
}

/// The table named `name` (`public.x`).
pub fn table<'a>(r: &'a CheckReport, name: &str) -> &'a TableReport {
    r.tables
        .iter()
        .find(|t| t.table == name)
        .unwrap_or_else(|| panic!("no table {name} in {:#?}", r.to_json()))
}

/// `(key json, missing_in, changed_columns)` of a table, in report order.
pub fn diffs(t: &TableReport) -> Vec<(serde_json::Value, Vec<String>, Vec<String>)> {
    t.differences
        .iter()
        .map(|d| {
            (
                serde_json::Value::Object(d.key.clone()),
                d.missing_in.clone(),
                d.changed_columns.clone(),
            )
        })
        .collect()
}

/// Adds a node group for `db` with one table rule.
pub fn add_rule(
    cfg: &mut Config,
    db: &str,
    table: &str,
    key_columns: Option<Vec<&str>>,
    exclude: Vec<&str>,
) {
    use eden_consistency::{NodeGroup, Resolution, TableRule};
    if cfg.node_group(db).is_none() {
        cfg.node_groups.push(NodeGroup {
            name: "g".into(),
            database: db.into(),
            ..Default::default()
        });
    }
    let g = cfg
        .node_groups
        .iter_mut()
        .find(|g| g.database == db)
        .unwrap();
    g.tables.push(TableRule {
        table: table.into(),
        resolution: Resolution::default(),
        key_columns: key_columns.map(|k| k.into_iter().map(String::from).collect()),
        exclude_columns: exclude.into_iter().map(String::from).collect(),
        tombstone: None,
        redact_columns: Vec::new(),
        missing_rows: Default::default(),
        unique_collisions: Default::default(),
        unknown_keys: Vec::new(),
    });
}
