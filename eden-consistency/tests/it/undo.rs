//! `undo`: restores the pre-fix state exactly, with guards, and records what it did.

use eden_consistency::TableName;
use eden_consistency::{
    __private::plan::Decide, __private::plan::FixTarget, __private::plan::Resolved,
    __private::plan::TableShape, __private::plan::VersionView, __private::plan::Winner,
    __private::plan::plan_targets, FixPlan, KeyMap,
};
use eden_consistency::{ApplyOptions, apply_plan_on};
use eden_consistency::{UndoOptions, UndoStatus, undo_run_on};
use eden_test_util::TestDbs;
use tokio_postgres::Client;

/// The last region (in order) that has the row wins; a delete wins when region 0 lacks it
/// and `delete_if_first_missing` is set.
fn decider(delete_if_first_missing: bool) -> Box<Decide<'static>> {
    Box::new(move |_s: &TableShape, views: &[VersionView<'_>]| {
        if delete_if_first_missing && views[0].row.is_none() {
            return Ok(Resolved {
                winner: Winner::Delete { by: None },
                decided_by: "tombstone".into(),
                needs_human: false,
                actions: None,
            });
        }
        let i = views.iter().rposition(|v| v.row.is_some()).unwrap_or(0);
        Ok(Resolved {
            winner: Winner::Region(i),
            decided_by: "region_priority".into(),
            needs_human: false,
            actions: None,
        })
    })
}

fn key(id: i64) -> KeyMap {
    let mut m = KeyMap::new();
    m.insert("id".into(), id.into());
    m
}

/// Every user table's rows (but replication_conflicts), as text, sorted.
pub async fn full_dump(c: &Client) -> Vec<String> {
    let tables = c
        .query(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
               AND c.relname <> 'replication_conflicts' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let mut out = Vec::new();
    for t in tables {
        let t: String = t.get(0);
        out.push(format!("table {t}"));
        for r in c
            .query(&format!("SELECT x::text FROM {t} AS x ORDER BY 1"), &[])
            .await
            .unwrap()
        {
            out.push(r.get(0));
        }
    }
    out
}

async fn setup(dbs: &TestDbs) {
    dbs.exec_all(
        "CREATE TABLE parent (id int PRIMARY KEY, name text, secret text);
         CREATE TABLE child (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, parent_id int REFERENCES parent(id), v numeric,
                             g text GENERATED ALWAYS AS (v::text || '!') STORED);",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO parent VALUES (1, 'p1-r1', 's1'), (2, 'p2', 's2'), (5, 'deleted-elsewhere', 'x');
         INSERT INTO child (id, parent_id, v) OVERRIDING SYSTEM VALUE VALUES (1, 1, 1.10), (2, 2, 2), (5, 5, 5);",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO parent VALUES (1, 'p1-r2', 'other-secret'), (3, 'p3', NULL);
         INSERT INTO child (id, parent_id, v) OVERRIDING SYSTEM VALUE VALUES (1, 1, 1.1000), (3, 3, 3);",
    )
    .await;
}

async fn plan(cs: &[&Client], dbs: &TestDbs, tombstones: bool) -> FixPlan {
    let mk = |t: &str, ids: &[i64], excl: &[&str]| FixTarget {
        table: TableName::new("public", t),
        key_columns: vec!["id".into()],
        exclude_columns: excl.iter().map(|s| s.to_string()).collect(),
        resolution: "region_priority".into(),
        keys: ids.iter().map(|i| key(*i)).collect(),
        deferred: vec![],
        tombstone_table: None,
    };
    let targets = vec![
        mk("child", &[1, 2, 3, 5], &[]),
        mk("parent", &[1, 2, 3, 5], &["secret"]),
    ];
    plan_targets(cs, &dbs.region_names(), "db", &targets, &mut |_t| {
        Ok(decider(tombstones))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn undo_restores_pre_fix_state_exactly() {
    let dbs = TestDbs::new("undo_restores_pre_fix_state_exactly", 2).await;
    setup(&dbs).await;
    let c0 = dbs.client(0).await;
    let c1 = dbs.client(1).await;
    let cs = [&c0, &c1];
    let before = [full_dump(&c0).await, full_dump(&c1).await];
    // r2 wins where it has the row; rows absent in r1 (region 0) are deleted (tombstone).
    let p = plan(&cs, &dbs, true).await;
    let opts = ApplyOptions {
        progress: None,
        batch_size: 1,
        ..Default::default()
    };
    let r = apply_plan_on(&cs, &p, &opts).await.unwrap();
    assert!(r.applied() > 0);
    assert!(!r.has_errors(), "{r:#?}");
    let after = [full_dump(&c0).await, full_dump(&c1).await];
    assert_ne!(before, after);
    // excluded column never written
    assert_eq!(
        dbs.query_texts(0, "SELECT secret FROM parent WHERE id = 1")
            .await,
        vec![Some("s1".into())]
    );

    let uopts = UndoOptions {
        run_id: p.run_id.clone(),
        dry_run: true,
        apply: opts.clone(),
    };
    let dry = undo_run_on(&cs, &dbs.region_names(), &uopts).await.unwrap();
    assert!(
        dry.actions.iter().all(|a| a.status == UndoStatus::Planned),
        "{dry:#?}"
    );
    assert_eq!([full_dump(&c0).await, full_dump(&c1).await], after);

    let uopts = UndoOptions {
        dry_run: false,
        ..uopts
    };
    let u = undo_run_on(&cs, &dbs.region_names(), &uopts).await.unwrap();
    assert_eq!(u.exit_code(), 0, "{u:#?}");
    assert_eq!(u.restored, r.applied());
    assert_eq!([full_dump(&c0).await, full_dump(&c1).await], before);
    // recorded, with the undo's own run id
    let n = dbs
        .query_texts(0, &format!("SELECT count(*)::text FROM replication_conflicts WHERE run_id = '{}' AND conflict_type = 'undo'", u.run_id))
        .await;
    let m = dbs
        .query_texts(1, &format!("SELECT count(*)::text FROM replication_conflicts WHERE run_id = '{}' AND conflict_type = 'undo'", u.run_id))
        .await;
    let total: usize = n[0].as_ref().unwrap().parse::<usize>().unwrap()
        + m[0].as_ref().unwrap().parse::<usize>().unwrap();
    assert_eq!(total, u.restored);
    // a second undo does nothing
    let u2 = undo_run_on(&cs, &dbs.region_names(), &uopts).await.unwrap();
    assert_eq!(u2.restored, 0);
    assert!(
        u2.actions
            .iter()
            .all(|a| a.status == UndoStatus::AlreadyRestored),
        "{u2:#?}"
    );
    // undo of the undo redoes the fix
    let redo = UndoOptions {
        run_id: u.run_id.clone(),
        dry_run: false,
        apply: opts.clone(),
    };
    let u3 = undo_run_on(&cs, &dbs.region_names(), &redo).await.unwrap();
    assert_eq!(u3.restored, u.restored);
    assert_eq!([full_dump(&c0).await, full_dump(&c1).await], after);
}

#[tokio::test]
async fn undo_does_not_clobber_rows_changed_since() {
    let dbs = TestDbs::new("undo_does_not_clobber_rows_changed_since", 2).await;
    setup(&dbs).await;
    let c0 = dbs.client(0).await;
    let c1 = dbs.client(1).await;
    let cs = [&c0, &c1];
    let p = plan(&cs, &dbs, false).await;
    let opts = ApplyOptions {
        progress: None,
        ..Default::default()
    };
    apply_plan_on(&cs, &p, &opts).await.unwrap();
    dbs.exec(
        0,
        "UPDATE parent SET name = 'changed-after-fix' WHERE id = 1",
    )
    .await;
    let u = undo_run_on(
        &cs,
        &dbs.region_names(),
        &UndoOptions {
            run_id: p.run_id.clone(),
            dry_run: false,
            apply: opts,
        },
    )
    .await
    .unwrap();
    assert_eq!(u.changed, 1, "{u:#?}");
    assert_eq!(u.exit_code(), 1);
    assert_eq!(
        dbs.query_texts(0, "SELECT name FROM parent WHERE id = 1")
            .await,
        vec![Some("changed-after-fix".into())]
    );
}
