//! Every resolution rule end to end through `plan_fix` + `apply_plan`, on two and three
//! regions, with rows missing on either side and tombstones.

use eden_consistency::Config;
use eden_consistency::TableName;
use eden_consistency::{ApplyOptions, FixReport, apply_plan};
use eden_consistency::{ConnectOptions, Region, connect_all};
use eden_consistency::{FixOptions, FixPlan, KeyMap, TableDifferences, plan_fix};
use eden_test_util::TestDbs;

fn config(dbs: &TestDbs, tables: &str) -> Config {
    let regions: String = dbs
        .region_names()
        .iter()
        .map(|r| {
            format!("  - {{name: {r}, role: active, instance: {{host: 127.0.0.1, port: 5432}}}}\n")
        })
        .collect();
    let yaml = format!(
        "global:\n  conflict_resolution: last_write_wins\nregions:\n{regions}replication:\n  provider: native\n  node_groups:\n    - name: g\n      database: app\n      conflict_resolution_tables:\n{tables}"
    );
    let mut cfg = Config::from_yaml_str(&yaml, "test.yaml").unwrap();
    for i in 0..dbs.len() {
        cfg.apply_region_flag(&format!("{}={}", dbs.region(i), dbs.url(i)))
            .unwrap();
    }
    cfg
}

/// Every key of `table` in any region, as key maps (the check's job, done crudely).
async fn all_keys(regions: &[Region], table: &str, key_cols: &[&str]) -> TableDifferences {
    let mut keys: Vec<String> = Vec::new();
    let obj = key_cols
        .iter()
        .map(|c| format!("'{c}', {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    for r in regions {
        for row in r
            .client
            .query(
                &format!("SELECT jsonb_build_object({obj})::text FROM {table}"),
                &[],
            )
            .await
            .unwrap()
        {
            keys.push(row.get(0));
        }
    }
    keys.sort();
    keys.dedup();
    TableDifferences {
        table: TableName::new("public", table),
        key_columns: key_cols.iter().map(|s| s.to_string()).collect(),
        keys: keys
            .iter()
            .map(|k| serde_json::from_str::<KeyMap>(k).unwrap())
            .collect(),
        in_flight: vec![],
        not_fixable: None,
    }
}

async fn rows(dbs: &TestDbs, i: usize, table: &str) -> Vec<String> {
    dbs.query_texts(i, &format!("SELECT x::text FROM {table} x ORDER BY 1"))
        .await
        .into_iter()
        .map(|s| s.unwrap())
        .collect()
}

async fn fix(regions: &[Region], cfg: &Config, diffs: &[TableDifferences]) -> (FixPlan, FixReport) {
    let plan = plan_fix(regions, cfg, "app", diffs, &FixOptions::default())
        .await
        .unwrap();
    let report = apply_plan(
        regions,
        &plan,
        &ApplyOptions {
            progress: None,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (plan, report)
}

fn action<'a>(
    r: &'a FixReport,
    table: &str,
    id: i64,
    region: &str,
) -> Option<&'a eden_consistency::ActionReport> {
    r.tables
        .iter()
        .find(|t| t.table == format!("public.{table}"))?
        .actions
        .iter()
        .find(|a| a.key.get("id").and_then(|v| v.as_i64()) == Some(id) && a.region == region)
}

#[tokio::test]
async fn fix_rules_two_regions() {
    let dbs = TestDbs::new("fix_rules_two_regions", 2).await;
    dbs.exec_all(
        "CREATE TABLE lww (id int PRIMARY KEY, v text, updated_at timestamptz);
         CREATE TABLE fww (id int PRIMARY KEY, v text, created date);
         CREATE TABLE prio (id int PRIMARY KEY, v text);
         CREATE TABLE hv (id int PRIMARY KEY, limit_bytes bigint, note text);
         CREATE TABLE cust (id int PRIMARY KEY, version int, v text);
         CREATE TABLE man (id int PRIMARY KEY, v text);
         CREATE TABLE soft (id int PRIMARY KEY, v text, updated_at timestamptz, deleted_at timestamptz);
         CREATE TABLE graved (id int PRIMARY KEY, v text, updated_at timestamptz);
         CREATE TABLE graves (id int PRIMARY KEY, gone_at timestamptz);
         CREATE TABLE merged (id int PRIMARY KEY, email text, email_at timestamptz, name text, updated_at timestamptz);",
    )
    .await;
    dbs.exec(
        0,
        "INSERT INTO lww VALUES (1, 'old', '2024-01-01'), (2, 'new', '2024-06-01'), (3, 'only-r1', '2020-01-01'), (4, 'null-ts', NULL);
         INSERT INTO fww VALUES (1, 'first', '2020-01-01'), (2, 'second', '2021-01-01');
         INSERT INTO prio VALUES (1, 'r1'), (2, 'only-r1');
         INSERT INTO hv VALUES (1, 100, 'small'), (2, 900, 'big');
         INSERT INTO cust VALUES (1, 1, 'v1'), (2, 5, 'v5'), (3, 2, 'tie-r1');
         INSERT INTO man VALUES (1, 'mine'), (2, 'only-r1');
         INSERT INTO soft VALUES (1, 'alive', '2024-01-01', NULL), (2, 'deleted', '2024-05-01', '2024-05-01');
         INSERT INTO graved VALUES (1, 'survivor-old', '2024-01-01'), (2, 'survivor-new', '2024-09-01');
         INSERT INTO merged VALUES (1, 'new@x', '2024-05-01', 'old name', '2024-01-01');",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO lww VALUES (1, 'new', '2024-06-01'), (2, 'old', '2024-01-01'), (5, 'only-r2', '2019-01-01'), (4, 'has-ts', '1999-01-01');
         INSERT INTO fww VALUES (1, 'later', '2022-01-01'), (2, 'earliest', '2019-01-01');
         INSERT INTO prio VALUES (1, 'r2'), (3, 'only-r2');
         INSERT INTO hv VALUES (1, 200, 'bigger'), (2, 100, 'smaller');
         INSERT INTO cust VALUES (1, 3, 'v3'), (2, 4, 'v4'), (3, 2, 'tie-r2');
         INSERT INTO man VALUES (1, 'theirs'), (3, 'only-r2');
         INSERT INTO soft VALUES (1, 'alive', '2024-01-01', NULL), (2, 'deleted', '2024-01-01', NULL);
         INSERT INTO graves VALUES (1, '2024-03-01'), (2, '2024-03-01');
         INSERT INTO merged VALUES (1, 'old@x', '2024-01-01', 'new name', '2024-06-01');",
    )
    .await;
    let cfg = config(
        &dbs,
        "        - {table: lww, resolution: last_write_wins, tracking_column: updated_at}
        - {table: fww, resolution: first_write_wins, tracking_column: created}
        - {table: prio, resolution: region_priority, regions: [r2, r1]}
        - {table: hv, resolution: highest_value, column: limit_bytes}
        - {table: cust, resolution: custom, expression: \"a.version > b.version\"}
        - {table: man, resolution: manual}
        - {table: soft, tracking_column: updated_at, tombstone: {column: deleted_at}}
        - {table: graved, tracking_column: updated_at, tombstone: {table: graves, deleted_at_column: gone_at}}
        - {table: merged, resolution: column_merge, columns: {email: email_at}, tracking_column: updated_at}
",
    );
    let regions = connect_all(&cfg, Some("app"), &ConnectOptions::default())
        .await
        .unwrap();
    let mut diffs = Vec::new();
    for t in [
        "lww", "fww", "prio", "hv", "cust", "man", "soft", "graved", "merged",
    ] {
        diffs.push(all_keys(&regions, t, &["id"]).await);
    }
    // dry run first: nothing changes, not even replication_conflicts appears
    let before: Vec<Vec<String>> = {
        let mut v = Vec::new();
        for i in 0..2 {
            for t in ["lww", "man", "graved"] {
                v.push(rows(&dbs, i, t).await);
            }
        }
        v
    };
    let plan = plan_fix(&regions, &cfg, "app", &diffs, &FixOptions::default())
        .await
        .unwrap();
    let dry = FixReport::from_plan(&plan);
    let json = serde_json::to_value(&dry).unwrap();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["consistent"], false);
    assert!(
        json["tables"][0]["actions"][0]["winner_region"].is_string()
            || json["tables"][0]["actions"][0]["winner_region"].is_null()
    );
    for i in 0..2 {
        assert_eq!(
            dbs.query_texts(i, "SELECT to_regclass('replication_conflicts')::text")
                .await,
            vec![None]
        );
    }

    let (_plan, r) = fix(&regions, &cfg, &diffs).await;
    assert!(!r.consistent, "manual table leaves differences");
    assert_eq!(r.exit_code(), 1);
    for t in [
        "lww", "fww", "prio", "hv", "cust", "soft", "graved", "merged",
    ] {
        assert_eq!(rows(&dbs, 0, t).await, rows(&dbs, 1, t).await, "table {t}");
    }
    let _ = before;
    // lww
    assert_eq!(
        rows(&dbs, 0, "lww").await,
        vec![
            "(1,new,\"2024-06-01 00:00:00+00\")",
            "(2,new,\"2024-06-01 00:00:00+00\")",
            "(3,only-r1,\"2020-01-01 00:00:00+00\")",
            "(4,has-ts,\"1999-01-01 00:00:00+00\")",
            "(5,only-r2,\"2019-01-01 00:00:00+00\")",
        ]
    );
    assert_eq!(action(&r, "lww", 1, "r1").unwrap().decided_by, "updated_at");
    assert_eq!(
        action(&r, "lww", 3, "r2").unwrap().decided_by,
        "missing_row"
    );
    // fww
    assert_eq!(
        rows(&dbs, 0, "fww").await,
        vec!["(1,first,2020-01-01)", "(2,earliest,2019-01-01)"]
    );
    // region_priority: r2 first
    assert_eq!(
        rows(&dbs, 0, "prio").await,
        vec!["(1,r2)", "(2,only-r1)", "(3,only-r2)"]
    );
    assert_eq!(
        action(&r, "prio", 1, "r1").unwrap().decided_by,
        "region_priority"
    );
    // highest_value
    assert_eq!(
        rows(&dbs, 0, "hv").await,
        vec!["(1,200,bigger)", "(2,900,big)"]
    );
    // custom; tie broken by region order (r1 first)
    assert_eq!(
        rows(&dbs, 0, "cust").await,
        vec!["(1,3,v3)", "(2,5,v5)", "(3,2,tie-r1)"]
    );
    assert!(
        action(&r, "cust", 3, "r2")
            .unwrap()
            .decided_by
            .starts_with("tiebreak:")
    );
    // manual: untouched, unresolved records in both regions
    assert_eq!(rows(&dbs, 0, "man").await, vec!["(1,mine)", "(2,only-r1)"]);
    assert_eq!(
        rows(&dbs, 1, "man").await,
        vec!["(1,theirs)", "(3,only-r2)"]
    );
    let man = r.tables.iter().find(|t| t.table == "public.man").unwrap();
    assert_eq!(man.unresolved, 3);
    assert_eq!(man.applied, 0);
    for i in 0..2 {
        assert_eq!(
            dbs.query_texts(i, "SELECT count(*)::text FROM replication_conflicts WHERE table_name = 'public.man' AND resolved_at IS NULL AND resolution = 'manual'").await,
            vec![Some("3".into())]
        );
    }
    // soft delete: the newer delete wins as a row with deleted_at set
    assert_eq!(
        rows(&dbs, 1, "soft").await[1],
        "(2,deleted,\"2024-05-01 00:00:00+00\",\"2024-05-01 00:00:00+00\")"
    );
    // tombstone table: row 1 deleted in r2 after its last update: delete wins; row 2 restored
    assert_eq!(
        rows(&dbs, 0, "graved").await,
        vec!["(2,survivor-new,\"2024-09-01 00:00:00+00\")"]
    );
    assert_eq!(
        action(&r, "graved", 1, "r1").unwrap().action.as_str(),
        "delete"
    );
    assert_eq!(
        action(&r, "graved", 1, "r1").unwrap().decided_by,
        "tombstone"
    );
    // the delete archived the row in r1
    assert_eq!(
        dbs.query_texts(0, "SELECT local_row->>'v' FROM replication_conflicts WHERE table_name = 'public.graved' AND conflict_type = 'delete'").await,
        vec![Some("survivor-old".into())]
    );
    // column merge: email from r1 (newer email_at), the rest from r2 (newer updated_at)
    assert_eq!(
        rows(&dbs, 0, "merged").await,
        vec!["(1,new@x,\"2024-05-01 00:00:00+00\",\"new name\",\"2024-06-01 00:00:00+00\")"]
    );

    // second run: nothing applied, no new record (the manual ones are not repeated)
    let n0 = dbs
        .query_texts(0, "SELECT count(*)::text FROM replication_conflicts")
        .await;
    let n1 = dbs
        .query_texts(1, "SELECT count(*)::text FROM replication_conflicts")
        .await;
    let mut diffs2 = Vec::new();
    for t in [
        "lww", "fww", "prio", "hv", "cust", "man", "soft", "graved", "merged",
    ] {
        diffs2.push(all_keys(&regions, t, &["id"]).await);
    }
    let (_p2, r2) = fix(&regions, &cfg, &diffs2).await;
    assert_eq!(r2.applied(), 0, "{r2:#?}");
    assert_eq!(
        dbs.query_texts(0, "SELECT count(*)::text FROM replication_conflicts")
            .await,
        n0
    );
    assert_eq!(
        dbs.query_texts(1, "SELECT count(*)::text FROM replication_conflicts")
            .await,
        n1
    );
}

#[tokio::test]
async fn fix_rules_three_regions() {
    let dbs = TestDbs::new("fix_rules_three_regions", 3).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text, updated_at timestamptz); CREATE TABLE p (a int, b text, v text, PRIMARY KEY (a, b))").await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'r1', '2024-01-01'), (2, 'r1-only', '2024-01-01'); INSERT INTO p VALUES (1, 'x y', 'r1'), (2, 'z', 'r1')").await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'r2', '2024-03-01'), (3, 'r2-only', '2024-01-01'); INSERT INTO p VALUES (1, 'x y', 'r2')").await;
    dbs.exec(2, "INSERT INTO t VALUES (1, 'r3', '2024-02-01'), (2, 'r1-only', '2024-01-01'); INSERT INTO p VALUES (1, 'x y', 'r3'), (3, 'w', 'r3')").await;
    let cfg = config(
        &dbs,
        "        - {table: t, resolution: last_write_wins, tracking_column: updated_at}
        - {table: p, resolution: region_priority, regions: [r3, r2, r1]}
",
    );
    let regions = connect_all(&cfg, Some("app"), &ConnectOptions::default())
        .await
        .unwrap();
    let diffs = vec![
        all_keys(&regions, "t", &["id"]).await,
        all_keys(&regions, "p", &["a", "b"]).await,
    ];
    let (_plan, r) = fix(&regions, &cfg, &diffs).await;
    assert!(r.consistent, "{r:#?}");
    for t in ["t", "p"] {
        let r1 = rows(&dbs, 0, t).await;
        assert_eq!(r1, rows(&dbs, 1, t).await);
        assert_eq!(r1, rows(&dbs, 2, t).await);
    }
    assert_eq!(
        rows(&dbs, 0, "t").await,
        vec![
            "(1,r2,\"2024-03-01 00:00:00+00\")",
            "(2,r1-only,\"2024-01-01 00:00:00+00\")",
            "(3,r2-only,\"2024-01-01 00:00:00+00\")"
        ]
    );
    assert_eq!(
        rows(&dbs, 0, "p").await,
        vec!["(1,\"x y\",r3)", "(2,z,r1)", "(3,w,r3)"]
    );
    // key 2 of t: only r2 lacked it
    let t = &r.tables.iter().find(|t| t.table == "public.t").unwrap();
    let k2: Vec<_> = t.actions.iter().filter(|a| a.key["id"] == 2).collect();
    assert_eq!(k2.len(), 1);
    assert_eq!(k2[0].region, "r2");
    assert_eq!(k2[0].action.as_str(), "insert");
}

#[tokio::test]
async fn fix_rules_through_the_checker() {
    use eden_consistency::{CheckOptions, Checker};
    use eden_consistency::{FixRun, run_fix};
    let dbs = TestDbs::new("fix_rules_through_the_checker", 2).await;
    dbs.exec_all(
        "CREATE TABLE parent (id int PRIMARY KEY, v text, updated_at timestamptz);
         CREATE TABLE child (id bigint PRIMARY KEY, parent_id int REFERENCES parent(id), v text, updated_at timestamptz);",
    )
    .await;
    dbs.exec(0, "INSERT INTO parent VALUES (1, 'a', '2024-02-01'), (2, 'x', '2024-01-01'); INSERT INTO child VALUES (5000000000, 2, 'c', '2024-01-01')").await;
    dbs.exec(1, "INSERT INTO parent VALUES (1, 'b', '2024-01-01')")
        .await;
    let cfg = config(
        &dbs,
        "        - {table: parent, resolution: last_write_wins, tracking_column: updated_at}
        - {table: child, resolution: last_write_wins, tracking_column: updated_at}
",
    );
    let checker = Checker::connect(cfg.clone(), "app").await.unwrap();
    let dry = run_fix(
        &checker,
        &CheckOptions::default(),
        &FixRun {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(dry.exit_code(), 1);
    assert_eq!(
        dry.tables.iter().map(|t| t.actions.len()).sum::<usize>(),
        3,
        "{dry:#?}"
    );
    assert_eq!(
        dbs.query_texts(1, "SELECT to_regclass('replication_conflicts')::text")
            .await,
        vec![None]
    );
    let run = FixRun {
        apply: ApplyOptions {
            progress: None,
            ..Default::default()
        },
        ..Default::default()
    };
    let r = run_fix(&checker, &CheckOptions::default(), &run)
        .await
        .unwrap();
    assert!(r.consistent, "{r:#?}");
    assert_eq!(r.exit_code(), 0);
    assert_eq!(rows(&dbs, 0, "child").await, rows(&dbs, 1, "child").await);
    assert_eq!(
        rows(&dbs, 1, "parent").await[0],
        "(1,a,\"2024-02-01 00:00:00+00\")"
    );
    let again = run_fix(&checker, &CheckOptions::default(), &run)
        .await
        .unwrap();
    assert_eq!(again.applied(), 0);
    assert!(again.consistent);
}

/// A schema whose name holds a dot: check hands fix the table as a typed name (never a
/// `schema.table` string to split again), and the table's rule is found by that name.
#[tokio::test]
async fn fix_schema_name_with_a_dot() {
    use eden_consistency::{CheckOptions, Checker};
    use eden_consistency::{FixRun, run_fix};
    let dbs = TestDbs::new("fix_schema_name_with_a_dot", 2).await;
    dbs.exec_all(
        r#"CREATE SCHEMA "a.b";
           CREATE TABLE "a.b".items (id int PRIMARY KEY, v text, updated_at timestamptz);"#,
    )
    .await;
    dbs.exec(
        0,
        r#"INSERT INTO "a.b".items VALUES (1, 'new', '2024-02-01'), (2, 'only here', '2024-01-01')"#,
    )
    .await;
    dbs.exec(
        1,
        r#"INSERT INTO "a.b".items VALUES (1, 'old', '2024-03-01'), (3, 'only there', '2024-01-01')"#,
    )
    .await;
    // first_write_wins on updated_at: the older version of id 1 (region 0's) must win,
    // which the commit-timestamp default would not decide.
    let cfg = config(
        &dbs,
        "        - {table: '\"a.b\".items', resolution: first_write_wins, tracking_column: updated_at}\n",
    );
    let checker = Checker::connect(cfg, "app").await.unwrap();
    let run = FixRun {
        apply: ApplyOptions {
            progress: None,
            ..Default::default()
        },
        ..Default::default()
    };
    let r = run_fix(&checker, &CheckOptions::default(), &run)
        .await
        .unwrap();
    assert!(r.consistent, "{r:#?}");
    assert!(r.not_planned.is_empty(), "{r:#?}");
    assert_eq!(r.tables.len(), 1, "{r:#?}");
    assert_eq!(r.tables[0].resolution, "first_write_wins", "{r:#?}");
    assert_eq!(r.applied(), 3, "{r:#?}");
    let want = vec![
        "(1,new,\"2024-02-01 00:00:00+00\")".to_string(),
        "(2,\"only here\",\"2024-01-01 00:00:00+00\")".to_string(),
        "(3,\"only there\",\"2024-01-01 00:00:00+00\")".to_string(),
    ];
    assert_eq!(rows(&dbs, 0, "\"a.b\".items").await, want);
    assert_eq!(rows(&dbs, 1, "\"a.b\".items").await, want);
}
