//! The apply engine against real PostgreSQL: guarded, archived writes; idempotence; FK order.

use eden_consistency::Resolution;
use eden_consistency::TableName;
use eden_consistency::{
    __private::plan::Decide, __private::plan::FixTarget, __private::plan::plan_targets,
    __private::plan::resolver_decider, FixPlan, KeyMap,
};
use eden_consistency::{ApplyOptions, FixReport, apply_plan_on};
use eden_consistency::{Registry, Resolver};
use eden_test_util::TestDbs;
use tokio_postgres::Client;

/// `region_priority: [r1, r2, r3]` through the real resolver.
fn first_present() -> Box<Decide<'static>> {
    let rule = Resolution::RegionPriority {
        regions: vec!["r1".into(), "r2".into(), "r3".into()],
    };
    resolver_decider(Resolver::new(&rule, None, &[], &Registry::new()).unwrap())
}

fn key(id: i64) -> KeyMap {
    let mut m = KeyMap::new();
    m.insert("id".into(), id.into());
    m
}

async fn clients(dbs: &TestDbs) -> Vec<Client> {
    let mut v = Vec::new();
    for i in 0..dbs.len() {
        v.push(dbs.client(i).await);
    }
    v
}

async fn plan(cs: &[Client], dbs: &TestDbs, table: &str, keys: Vec<KeyMap>) -> FixPlan {
    let refs: Vec<&Client> = cs.iter().collect();
    let target = FixTarget {
        table: TableName::new("public", table),
        key_columns: vec!["id".into()],
        exclude_columns: vec![],
        resolution: "region_priority".into(),
        keys,
        deferred: vec![],
        tombstone_table: None,
    };
    plan_targets(&refs, &dbs.region_names(), "db", &[target], &mut |_t| {
        Ok(first_present())
    })
    .await
    .unwrap()
}

async fn apply(cs: &[Client], plan: &FixPlan) -> FixReport {
    let refs: Vec<&Client> = cs.iter().collect();
    apply_plan_on(
        &refs,
        plan,
        &ApplyOptions {
            progress: None,
            batch_size: 2,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

async fn dump(dbs: &TestDbs, i: usize, sql: &str) -> Vec<Option<String>> {
    dbs.query_texts(i, sql).await
}

#[tokio::test]
async fn fix_apply_basic_two_regions() {
    let dbs = TestDbs::new("fix_apply_basic_two_regions", 2).await;
    dbs.exec_all(
        "CREATE TABLE t (id int PRIMARY KEY, v text, n numeric, b bytea, ts timestamptz, f float8,
                         g int GENERATED ALWAYS AS (id * 2) STORED)",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO t VALUES (1, 'a', 1.50, '\\x01', '2024-01-01 10:00+02', 0.1),
                              (2, 'same', 2, NULL, NULL, NULL),
                              (3, 'only-in-r1', 12345678901234567890.123456789, '\\xff00', now(), 1e300)",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO t VALUES (1, 'b', 1.5, '\\x02', '2024-01-01 08:00Z', 0.2),
                              (2, 'same', 2, NULL, NULL, NULL),
                              (4, 'only-in-r2', -0.0001, NULL, NULL, 'NaN')",
    )
    .await;
    let cs = clients(&dbs).await;
    let keys = vec![key(1), key(2), key(3), key(4)];
    let p = plan(&cs, &dbs, "t", keys.clone()).await;
    assert_eq!(p.tables.len(), 1);
    // key 2 agrees: not planned
    assert_eq!(p.tables[0].keys.len(), 3);
    let r = apply(&cs, &p).await;
    assert!(r.consistent, "{r:#?}");
    assert_eq!(r.applied(), 3);
    let q = "SELECT row(t.*)::text FROM t ORDER BY id";
    assert_eq!(dump(&dbs, 0, q).await, dump(&dbs, 1, q).await);
    assert_eq!(
        dump(&dbs, 1, "SELECT v FROM t WHERE id = 1").await,
        vec![Some("a".into())]
    );
    // exact numeric kept
    assert_eq!(
        dump(&dbs, 1, "SELECT n::text FROM t WHERE id = 3").await,
        vec![Some("12345678901234567890.123456789".into())]
    );
    // archive in r2: the overwritten row (id 1) and the inserted copy (id 3)
    let recs = dump(
        &dbs,
        1,
        &format!(
            "SELECT concat_ws('|', key::text, conflict_type, coalesce(local_row->>'v','-'), remote_row->>'v', winner_region, decided_by, resolved_at IS NOT NULL, run_id = '{}') FROM replication_conflicts ORDER BY id",
            p.run_id
        ),
    )
    .await;
    assert_eq!(
        recs,
        vec![
            Some("{\"id\": 3}|missing_row|-|only-in-r1|r1|missing_row|t|t".into()),
            Some("{\"id\": 1}|update_differs|b|a|r1|region_priority|t|t".into()),
        ]
    );
    // r1 got the copy of 4
    assert_eq!(
        dump(&dbs, 0, "SELECT count(*)::text FROM replication_conflicts").await,
        vec![Some("1".into())]
    );

    // idempotent: a second plan finds nothing, apply writes nothing
    let p2 = plan(&cs, &dbs, "t", keys).await;
    assert!(p2.is_empty());
    let r2 = apply(&cs, &p2).await;
    assert!(r2.consistent);
    assert_eq!(r2.applied(), 0);
    assert_eq!(
        dump(&dbs, 1, "SELECT count(*)::text FROM replication_conflicts").await,
        vec![Some("2".into())]
    );
}

#[tokio::test]
async fn fix_apply_guard_skips_changed_rows() {
    let dbs = TestDbs::new("fix_apply_guard_skips_changed_rows", 2).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'win'), (2, 'win'), (3, 'win')")
        .await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'lose'), (2, 'lose')")
        .await;
    let cs = clients(&dbs).await;
    let p = plan(&cs, &dbs, "t", vec![key(1), key(2), key(3)]).await;
    // After planning, a writer changes row 1 and inserts row 3 in r2.
    dbs.exec(
        1,
        "UPDATE t SET v = 'newer' WHERE id = 1; INSERT INTO t VALUES (3, 'concurrent')",
    )
    .await;
    let r = apply(&cs, &p).await;
    assert!(!r.consistent);
    assert_eq!(r.tables[0].changed, 2, "{r:#?}");
    assert_eq!(r.tables[0].applied, 1);
    assert_eq!(
        dump(&dbs, 1, "SELECT v FROM t ORDER BY id").await,
        vec![
            Some("newer".into()),
            Some("win".into()),
            Some("concurrent".into())
        ]
    );
    assert_eq!(
        dump(&dbs, 1, "SELECT count(*)::text FROM replication_conflicts").await,
        vec![Some("1".into())]
    );
}

#[tokio::test]
async fn fix_apply_fk_parents_first_and_cycles() {
    let dbs = TestDbs::new("fix_apply_fk_parents_first_and_cycles", 2).await;
    dbs.exec_all(
        "CREATE TABLE parent (id int PRIMARY KEY, name text);
         CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent(id), v text);
         CREATE TABLE emp (id int PRIMARY KEY, boss int REFERENCES emp(id));
         CREATE TABLE a (id int PRIMARY KEY, b_id int);
         CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a(id) DEFERRABLE);
         ALTER TABLE a ADD FOREIGN KEY (b_id) REFERENCES b(id) DEFERRABLE;",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO parent VALUES (1, 'p1'), (2, 'p2');
         INSERT INTO child VALUES (10, 1, 'c'), (11, 2, 'c'), (12, 2, 'c');
         INSERT INTO emp VALUES (1, NULL), (2, 1), (3, 2), (4, 3);
         BEGIN; SET CONSTRAINTS ALL DEFERRED;
         INSERT INTO a VALUES (1, 1), (2, 2); INSERT INTO b VALUES (1, 1), (2, 2); COMMIT;",
    )
    .await;
    let cs = clients(&dbs).await;
    let refs: Vec<&Client> = cs.iter().collect();
    let mk = |t: &str, ids: &[i64]| FixTarget {
        table: TableName::new("public", t),
        key_columns: vec!["id".into()],
        exclude_columns: vec![],
        resolution: "region_priority".into(),
        keys: ids.iter().map(|i| key(*i)).collect(),
        deferred: vec![],
        tombstone_table: None,
    };
    // child listed first on purpose
    let targets = vec![
        mk("child", &[10, 11, 12]),
        mk("emp", &[4, 3, 2, 1]),
        mk("b", &[1, 2]),
        mk("a", &[1, 2]),
        mk("parent", &[1, 2]),
    ];
    let p = plan_targets(&refs, &dbs.region_names(), "db", &targets, &mut |_t| {
        Ok(first_present())
    })
    .await
    .unwrap();
    let order: Vec<String> = p.tables.iter().map(|t| t.table.name.clone()).collect();
    assert!(
        order.iter().position(|n| n == "parent") < order.iter().position(|n| n == "child"),
        "{order:?}"
    );
    assert_eq!(p.fk_cycles.len(), 2, "{:?}", p.fk_cycles);
    let r = apply(&cs, &p).await;
    assert!(r.consistent, "{r:#?}");
    for q in [
        "SELECT row(t.*)::text FROM child t ORDER BY id",
        "SELECT row(t.*)::text FROM emp t ORDER BY id",
        "SELECT row(t.*)::text FROM a t ORDER BY id",
    ] {
        assert_eq!(dump(&dbs, 0, q).await, dump(&dbs, 1, q).await);
    }
}

#[tokio::test]
async fn fix_apply_no_replicate_uses_origin_and_refuses_plain_roles() {
    let dbs = TestDbs::new("fix_apply_no_replicate", 2).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    let cs = clients(&dbs).await;
    let p = plan(&cs, &dbs, "t", vec![key(1), key(2)]).await;

    // A role without replication-origin rights: a clear error before anything is written.
    let role = "eden_t_norep_role";
    dbs.exec(
        0,
        &format!("DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN"),
    )
    .await;
    dbs.exec_all(&format!(
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}; GRANT ALL ON SCHEMA public TO {role}"
    ))
    .await;
    let mut plain = Vec::new();
    for i in 0..2 {
        let url = dbs.url(i).replacen("postgres@", &format!("{role}@"), 1);
        let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        plain.push(c);
    }
    let refs: Vec<&Client> = plain.iter().collect();
    let opts = ApplyOptions {
        progress: None,
        no_replicate: true,
        ..Default::default()
    };
    let err = apply_plan_on(&refs, &p, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("region r2") && err.contains("--no-replicate") && err.contains("superuser"),
        "{err}"
    );
    assert_eq!(
        dump(&dbs, 1, "SELECT count(*)::text FROM t").await,
        vec![Some("0".into())]
    );
    drop(plain);

    // A superuser: the repair is written under the origin eden_reconcile.
    let r = apply(&cs, &p).await;
    let _ = r;
    let p = plan(&cs, &dbs, "t", vec![key(1), key(2)]).await;
    assert!(p.is_empty());
    dbs.exec(0, "INSERT INTO t VALUES (3, 'c')").await;
    let p = plan(&cs, &dbs, "t", vec![key(3)]).await;
    let refs: Vec<&Client> = cs.iter().collect();
    let r = apply_plan_on(&refs, &p, &opts).await.unwrap();
    assert!(r.consistent);
    // The run's own origin (one per run and region) is dropped at the end.
    assert_eq!(
        dump(
            &dbs,
            1,
            &format!(
                "SELECT count(*)::text FROM pg_replication_origin WHERE roname LIKE 'eden_reconcile:{}:%'",
                r.run_id
            )
        )
        .await,
        vec![Some("0".into())]
    );
    // the session was reset: the same connection can be used again
    let r = apply_plan_on(&refs, &p, &opts).await.unwrap();
    assert_eq!(r.applied(), 0);
    dbs.exec(0, &format!("DROP OWNED BY {role}")).await;
    dbs.exec(1, &format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await;
}

#[tokio::test]
async fn fix_apply_holds_back_cascading_deletes() {
    use eden_consistency::{
        __private::plan::Resolved, __private::plan::TableShape, __private::plan::VersionView,
        __private::plan::Winner,
    };
    let dbs = TestDbs::new("fix_apply_holds_back_cascading_deletes", 2).await;
    dbs.exec_all(
        "CREATE TABLE p (id int PRIMARY KEY); CREATE TABLE c (id int PRIMARY KEY, p int REFERENCES p(id) ON DELETE CASCADE);
         CREATE TABLE plain (id int PRIMARY KEY);",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO p VALUES (1); INSERT INTO c VALUES (10, 1); INSERT INTO plain VALUES (1)",
    )
    .await;
    let cs = clients(&dbs).await;
    let refs: Vec<&Client> = cs.iter().collect();
    let mk = |t: &str| FixTarget {
        table: TableName::new("public", t),
        key_columns: vec!["id".into()],
        exclude_columns: vec![],
        resolution: "last_write_wins".into(),
        keys: vec![key(1)],
        deferred: vec![],
        tombstone_table: None,
    };
    let mut delete_wins = |_t: &FixTarget| -> eden_consistency::Result<Box<Decide<'static>>> {
        Ok(Box::new(|_s: &TableShape, _v: &[VersionView<'_>]| {
            Ok(Resolved {
                winner: Winner::Delete { by: Some(1) },
                decided_by: "tombstone".into(),
                needs_human: false,
                actions: None,
            })
        }))
    };
    let p = plan_targets(
        &refs,
        &dbs.region_names(),
        "db",
        &[mk("p"), mk("plain")],
        &mut delete_wins,
    )
    .await
    .unwrap();
    let tp = p.tables.iter().find(|t| t.table.name == "p").unwrap();
    assert!(tp.keys.is_empty());
    assert!(tp.deferred[0].1.contains("cascade"), "{:?}", tp.deferred);
    let r = apply(&cs, &p).await;
    assert!(!r.consistent);
    assert_eq!(r.applied(), 1, "{r:#?}");
    assert_eq!(
        dump(&dbs, 0, "SELECT count(*)::text FROM c").await,
        vec![Some("1".into())]
    );
    assert_eq!(
        dump(&dbs, 0, "SELECT count(*)::text FROM plain").await,
        vec![Some("0".into())]
    );
}
