//! `--sql-out`: the scripts, run with psql, give the same result as `fix`; `--dry-run`
//! changes nothing at all.

use std::process::Command;

use eden_consistency::Config;
use eden_consistency::TableName;
use eden_consistency::{ApplyOptions, FixReport, apply_plan, write_sql_scripts};
use eden_consistency::{ConnectOptions, Region, connect_all};
use eden_consistency::{FixOptions, KeyMap, TableDifferences, plan_fix};
use eden_test_util::TestDbs;
use tokio_postgres::Client;

const SCHEMA: &str = "
CREATE TABLE parent (id int PRIMARY KEY, name text, updated_at timestamptz, secret text);
CREATE TABLE child (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, parent_id int NOT NULL REFERENCES parent(id),
                    amount numeric(20,4), tags text[], doc jsonb, raw bytea, updated_at timestamptz,
                    total numeric GENERATED ALWAYS AS (amount * 2) STORED);
CREATE TABLE \"Odd Name\" (\"Key\" text PRIMARY KEY, \"it's\" text, updated_at timestamptz);
";

const R1: &str = "
INSERT INTO parent VALUES (1, 'p1 new', '2024-06-01', 's1'), (2, 'only r1', '2024-01-01', 's2'), (3, 'p3 old', '2024-01-01', 'x');
INSERT INTO child (id, parent_id, amount, tags, doc, raw, updated_at) OVERRIDING SYSTEM VALUE VALUES
  (1, 1, 1.5, '{a,b}', '{\"k\": [1, 2.50]}', '\\x00ff', '2024-06-01'),
  (2, 2, 99999999.1234, NULL, 'null', NULL, '2024-01-01');
INSERT INTO \"Odd Name\" VALUES ('a''b', 'quote''s', '2024-01-01'), ('$1', 'dollar', '2024-05-01');
";

const R2: &str = "
INSERT INTO parent VALUES (1, 'p1 old', '2024-01-01', 'other'), (3, 'p3 new', '2024-07-01', 'y'), (4, 'only r2', '2024-01-01', NULL);
INSERT INTO child (id, parent_id, amount, tags, doc, raw, updated_at) OVERRIDING SYSTEM VALUE VALUES
  (1, 1, 1.25, '{a}', '{}', '\\x01', '2024-01-01'),
  (3, 4, -0.0001, '{\"x y\"}', '[1]', '\\x', '2024-01-01');
INSERT INTO \"Odd Name\" VALUES ('a''b', 'theirs', '2024-02-01');
";

const RULES: &str = "        - {table: parent, resolution: last_write_wins, tracking_column: updated_at, exclude_columns: [secret]}
        - {table: child, resolution: last_write_wins, tracking_column: updated_at}
        - {table: '\"Odd Name\"', resolution: last_write_wins, tracking_column: updated_at}
";

fn config(dbs: &TestDbs, offset: usize) -> Config {
    let names = ["r1", "r2"];
    let regions: String = names
        .iter()
        .map(|r| {
            format!("  - {{name: {r}, role: active, instance: {{host: 127.0.0.1, port: 5432}}}}\n")
        })
        .collect();
    let yaml = format!(
        "regions:\n{regions}replication:\n  provider: native\n  node_groups:\n    - name: g\n      database: app\n      conflict_resolution_tables:\n{RULES}"
    );
    let mut cfg = Config::from_yaml_str(&yaml, "test.yaml").unwrap();
    for (i, n) in names.iter().enumerate() {
        cfg.apply_region_flag(&format!("{n}={}", dbs.url(offset + i)))
            .unwrap();
    }
    cfg
}

async fn diffs(regions: &[Region]) -> Vec<TableDifferences> {
    let mut out = Vec::new();
    for (t, k) in [("parent", "id"), ("child", "id"), ("Odd Name", "Key")] {
        let mut keys: Vec<String> = Vec::new();
        for r in regions {
            let sql = format!("SELECT jsonb_build_object('{k}', \"{k}\")::text FROM \"{t}\"");
            for row in r.client.query(&sql, &[]).await.unwrap() {
                keys.push(row.get(0));
            }
        }
        keys.sort();
        keys.dedup();
        out.push(TableDifferences {
            table: TableName::new("public", t),
            key_columns: vec![k.into()],
            keys: keys
                .iter()
                .map(|s| serde_json::from_str::<KeyMap>(s).unwrap())
                .collect(),
            in_flight: vec![],
            not_fixable: None,
        });
    }
    out
}

/// Every table's rows as text (replication_conflicts without its per-run columns), and
/// the list of relations.
async fn full_dump(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for r in c
        .query(
            "SELECT format('%s %I.%I', c.relkind, n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
    {
        out.push(r.get(0));
    }
    for t in ["parent", "child", "\"Odd Name\""] {
        for r in c
            .query(&format!("SELECT x::text FROM {t} AS x ORDER BY 1"), &[])
            .await
            .unwrap()
        {
            out.push(r.get(0));
        }
    }
    if c.query_one(
        "SELECT to_regclass('replication_conflicts') IS NOT NULL",
        &[],
    )
    .await
    .unwrap()
    .get::<_, bool>(0)
    {
        for r in c
            .query(
                "SELECT concat_ws('|', table_name, key, conflict_type, local_region, remote_region, local_row, remote_row,
                                  resolution, winner_region, decided_by, resolved_at IS NOT NULL, action)
                 FROM replication_conflicts ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
        {
            out.push(r.get(0));
        }
    }
    out
}

#[tokio::test]
async fn fix_sql_out_equals_fix_and_dry_run_changes_nothing() {
    // databases 0,1: fixed by the library; 2,3: by the scripts through psql
    let dbs = TestDbs::new_named("fix_sql_out_equals_fix", &["r1", "r2", "s1", "s2"]).await;
    dbs.exec_all(SCHEMA).await;
    for off in [0, 2] {
        dbs.exec(off, R1).await;
        dbs.exec(off + 1, R2).await;
    }
    let cfg_a = config(&dbs, 0);
    let cfg_b = config(&dbs, 2);
    let ra = connect_all(&cfg_a, Some("app"), &ConnectOptions::default())
        .await
        .unwrap();
    let rb = connect_all(&cfg_b, Some("app"), &ConnectOptions::default())
        .await
        .unwrap();

    // --dry-run: plan, print both forms; nothing changes anywhere
    let before = [
        full_dump(&ra[0].client).await,
        full_dump(&ra[1].client).await,
    ];
    let plan = plan_fix(
        &ra,
        &cfg_a,
        "app",
        &diffs(&ra).await,
        &FixOptions::default(),
    )
    .await
    .unwrap();
    let dry = FixReport::from_plan(&plan);
    assert!(
        dry.tables
            .iter()
            .any(|t| t.table == "public.parent" && t.resolution == "last_write_wins"),
        "{dry:#?}"
    );
    let json = serde_json::to_value(&dry).unwrap();
    assert_eq!(json["dry_run"], true);
    assert_eq!(json["consistent"], false);
    for t in json["tables"].as_array().unwrap() {
        for k in ["table", "resolution", "actions", "applied", "unresolved"] {
            assert!(t.get(k).is_some(), "{k} missing in {t}");
        }
        for a in t["actions"].as_array().unwrap() {
            for k in ["key", "region", "action", "winner_region", "decided_by"] {
                assert!(a.get(k).is_some(), "{k} missing in {a}");
            }
        }
    }
    assert_eq!(
        [
            full_dump(&ra[0].client).await,
            full_dump(&ra[1].client).await
        ],
        before
    );

    // fix through the library
    let opts = ApplyOptions {
        progress: None,
        batch_size: 2,
        ..Default::default()
    };
    let report = apply_plan(&ra, &plan, &opts).await.unwrap();
    assert!(report.consistent, "{report:#?}");
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&report)
            .unwrap()
            .lines()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );

    // --sql-out for the other pair, run with psql
    let dir = tempfile::tempdir().unwrap();
    let plan_b = plan_fix(
        &rb,
        &cfg_b,
        "app",
        &diffs(&rb).await,
        &FixOptions::default(),
    )
    .await
    .unwrap();
    let out = write_sql_scripts(&plan_b, &dir.path().join("fix.sql"), &opts).unwrap();
    assert_eq!(out.sql_files.len(), 2);
    if std::env::var("EDEN_SHOW_SCRIPT").is_ok() {
        eprintln!("{}", std::fs::read_to_string(&out.sql_files[0]).unwrap());
    }
    // writing scripts changed nothing
    assert_eq!(
        dbs.query_texts(2, "SELECT to_regclass('replication_conflicts')::text")
            .await,
        vec![None]
    );
    for (i, region) in ["r1", "r2"].iter().enumerate() {
        let path = dir.path().join(format!("fix.{region}.sql"));
        let status = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &dbs.url(2 + i),
                "-f",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    for i in 0..2 {
        assert_eq!(
            full_dump(&ra[i].client).await,
            full_dump(&rb[i].client).await,
            "region {i}"
        );
    }
    // rerunning a script changes nothing (guards)
    let path = dir.path().join("fix.r2.sql");
    let st = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &dbs.url(3), "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(st.status.success());
    assert_eq!(
        full_dump(&ra[1].client).await,
        full_dump(&rb[1].client).await
    );
}
