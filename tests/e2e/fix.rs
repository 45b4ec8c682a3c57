//! `eden-reconcile fix` and `undo` end to end: dry run, apply, idempotence, conflicts,
//! undo, manual tables, and SIGKILL at random moments.

use std::time::Duration;

use eden_test_util::TestDbs;

use crate::common::{Run, eden, run, run_cmd};

const SCHEMA: &str = "
CREATE TABLE parent (id int PRIMARY KEY, name text, updated_at timestamptz NOT NULL);
CREATE TABLE child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parent(id), v numeric, updated_at timestamptz NOT NULL);
CREATE TABLE notes (id int PRIMARY KEY, body text);
";

fn config_file(dbs: &TestDbs, dir: &std::path::Path, extra_rules: &str) -> std::path::PathBuf {
    let regions: String = dbs
        .region_names()
        .iter()
        .map(|r| {
            format!(
                "  - name: {r}\n    role: active\n    instance: {{ host: 127.0.0.1, port: 5432 }}\n"
            )
        })
        .collect();
    let yaml = format!(
        "global:\n  conflict_resolution: last_write_wins\nregions:\n{regions}replication:\n  provider: native\n  node_groups:\n    - name: app_group\n      database: app\n      conflict_resolution_tables:\n        - {{table: parent, resolution: last_write_wins, tracking_column: updated_at}}\n        - {{table: child, resolution: last_write_wins, tracking_column: updated_at}}\n{extra_rules}"
    );
    let path = dir.join("postgresql-multi-region.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn eden_args(dbs: &TestDbs, cfg: &std::path::Path, args: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["--config".into(), cfg.display().to_string()];
    a.extend(args.iter().map(|s| s.to_string()));
    a.extend(["--db".to_string(), "app".to_string()]);
    a.extend(dbs.region_args());
    a
}

fn dump(dbs: &TestDbs, i: usize) -> Vec<String> {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        rt.block_on(async {
            let mut out: Vec<String> = dbs
                .query_texts(i, "SELECT format('%s %I', relkind, relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1")
                .await
                .into_iter()
                .flatten()
                .collect();
            for t in ["parent", "child", "notes"] {
                out.extend(dbs.query_texts(i, &format!("SELECT x::text FROM {t} x ORDER BY 1")).await.into_iter().flatten());
            }
            out
        })
    })
}

fn data_only(d: &[String]) -> Vec<String> {
    d.iter().filter(|l| l.starts_with('(')).cloned().collect()
}

async fn setup(name: &str) -> TestDbs {
    let dbs = TestDbs::new(name, 2).await;
    dbs.exec_all(SCHEMA).await;
    dbs.exec(
        0,
        "INSERT INTO parent VALUES (1, 'p1 newer', '2024-06-01'), (2, 'p2 only here', '2024-01-01');
         INSERT INTO child VALUES (10, 1, 1.50, '2024-06-01'), (20, 2, 2, '2024-01-01');
         INSERT INTO notes VALUES (1, 'same');",
    )
    .await;
    dbs.exec(
        1,
        "INSERT INTO parent VALUES (1, 'p1 older', '2024-01-01'), (3, 'p3 only here', '2024-01-01');
         INSERT INTO child VALUES (10, 1, 1.25, '2024-01-01'), (30, 3, 3, '2024-07-01');
         INSERT INTO notes VALUES (1, 'same');",
    )
    .await;
    dbs
}

fn applied(v: &serde_json::Value) -> i64 {
    v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["applied"].as_i64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_fix_dry_run_apply_idempotent_undo() {
    let dbs = setup("e2e_fix_dry_run_apply_undo").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(&dbs, dir.path(), "");
    let before = [dump(&dbs, 0), dump(&dbs, 1)];

    // --dry-run, json: the plan; nothing changes, not even replication_conflicts appears
    let r = run(eden_args(
        &dbs,
        &cfg,
        &["fix", "--dry-run", "--format", "json"],
    ));
    assert_eq!(r.code, Some(1), "{r:?}");
    let v = r.json();
    assert_eq!(v["dry_run"], true);
    assert_eq!(v["consistent"], false);
    assert!(v["run_id"].is_string());
    let parent = v["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.parent")
        .unwrap();
    assert_eq!(parent["resolution"], "last_write_wins");
    let a = parent["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"]["id"] == 1)
        .unwrap();
    assert_eq!(a["region"], "r2");
    assert_eq!(a["action"], "update");
    assert_eq!(a["winner_region"], "r1");
    assert_eq!(a["decided_by"], "updated_at");
    assert_eq!(parent["applied"], 0);
    assert_eq!([dump(&dbs, 0), dump(&dbs, 1)], before);

    // --dry-run, human
    let r = run(eden_args(&dbs, &cfg, &["fix", "--dry-run"]));
    assert_eq!(r.code, Some(1), "{r:?}");
    assert!(r.stdout.contains("public.parent"), "{}", r.stdout);
    assert_eq!([dump(&dbs, 0), dump(&dbs, 1)], before);

    // fix
    let r = run(eden_args(
        &dbs,
        &cfg,
        &["fix", "--format", "json", "--batch-size", "1"],
    ));
    assert_eq!(r.code, Some(0), "{r:?}");
    let v = r.json();
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["consistent"], true);
    assert_eq!(applied(&v), 6);
    let run_id = v["run_id"].as_str().unwrap().to_string();
    assert_eq!(data_only(&dump(&dbs, 0)), data_only(&dump(&dbs, 1)));

    // again: nothing to do, no new record
    let count = |i| {
        let d = dbs.url(i);
        let out = std::process::Command::new("psql")
            .args(["-XAtc", "SELECT count(*) FROM replication_conflicts", &d])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let (n0, n1) = (count(0), count(1));
    let r = run(eden_args(&dbs, &cfg, &["fix", "--format", "json"]));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!(applied(&r.json()), 0);
    assert_eq!((count(0), count(1)), (n0, n1));

    // the records are listed
    let r = run(eden_args(&dbs, &cfg, &["conflicts", "--format", "json"]));
    assert_eq!(r.code, Some(0), "{r:?}");
    let recs = r.json()["conflicts"].as_array().unwrap().clone();
    assert_eq!(recs.len(), 6);
    assert!(
        recs.iter()
            .all(|c| c["run_id"] == run_id.as_str() && !c["resolved_at"].is_null())
    );

    // undo --dry-run changes nothing; undo restores the state before the fix exactly
    let after = [dump(&dbs, 0), dump(&dbs, 1)];
    let r = run(eden_args(
        &dbs,
        &cfg,
        &["undo", "--run", &run_id, "--dry-run"],
    ));
    assert_eq!(r.code, Some(0), "{r:?}");
    assert_eq!([dump(&dbs, 0), dump(&dbs, 1)], after);
    let r = run(eden_args(&dbs, &cfg, &["undo", "--run", &run_id]));
    assert_eq!(r.code, Some(0), "{r:?}");
    let now = [dump(&dbs, 0), dump(&dbs, 1)];
    assert_eq!(data_only(&now[0]), data_only(&before[0]));
    assert_eq!(data_only(&now[1]), data_only(&before[1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_fix_manual_table_exit_1() {
    let dbs = setup("e2e_fix_manual_table_exit_1").await;
    dbs.exec(1, "UPDATE notes SET body = 'edited'").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dbs,
        dir.path(),
        "        - {table: notes, resolution: manual}\n",
    );
    let r = run(eden_args(
        &dbs,
        &cfg,
        &["fix", "--format", "json", "--table", "notes"],
    ));
    assert_eq!(r.code, Some(1), "{r:?}");
    let v = r.json();
    assert_eq!(v["tables"][0]["unresolved"], 1);
    assert_eq!(v["tables"][0]["actions"][0]["action"], "manual");
    let r = run(eden_args(
        &dbs,
        &cfg,
        &["conflicts", "--unresolved", "--format", "json"],
    ));
    assert_eq!(r.json()["conflicts"].as_array().unwrap().len(), 2);
    assert_eq!(
        dump(&dbs, 1)
            .iter()
            .filter(|l| l.contains("edited"))
            .count(),
        1
    );
}

/// Kills `fix` with SIGKILL at seeded random moments; the next run converges and every row
/// that ever existed in a region is still there or archived there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_fix_sigkill_then_rerun_converges() {
    let dbs = TestDbs::new("e2e_fix_sigkill", 2).await;
    dbs.exec_all("CREATE TABLE big (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL)")
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_file(
        &dbs,
        dir.path(),
        "        - {table: big, resolution: last_write_wins, tracking_column: updated_at}\n",
    );
    let mut seed: u64 = std::env::var("EDEN_FIX_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let iterations: usize = std::env::var("EDEN_FIX_KILL_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    for it in 0..iterations {
        dbs.exec_all("TRUNCATE big").await;
        dbs.exec(0, &format!("INSERT INTO big SELECT i, 'i{it}-r1-' || i, '2024-01-01'::timestamptz + (i % 5) * interval '1 day' FROM generate_series(1, 300) i WHERE i % 9 <> 1")).await;
        dbs.exec(1, &format!("INSERT INTO big SELECT i, 'i{it}-r2-' || i, '2024-01-03' FROM generate_series(1, 300) i WHERE i % 9 <> 2")).await;
        let images = [
            dbs.query_texts(0, "SELECT to_jsonb(b)::text FROM big b")
                .await,
            dbs.query_texts(1, "SELECT to_jsonb(b)::text FROM big b")
                .await,
        ];
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(100 + seed % 900);
        let mut child = eden()
            .args(eden_args(
                &dbs,
                &cfg,
                &["fix", "--batch-size", "5", "--max-rows-per-second", "400"],
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(delay).await;
        let _ = child.kill();
        let _ = child.wait();
        let r: Run = run_cmd(eden().args(eden_args(&dbs, &cfg, &["fix", "--format", "json"])));
        assert_eq!(r.code, Some(0), "iteration {it}: {r:?}");
        let again = run(eden_args(&dbs, &cfg, &["fix", "--format", "json"]));
        assert_eq!(applied(&again.json()), 0, "iteration {it}");
        let q = "SELECT b::text FROM big b ORDER BY id";
        assert_eq!(
            dbs.query_texts(0, q).await,
            dbs.query_texts(1, q).await,
            "iteration {it}"
        );
        for (i, imgs) in images.iter().enumerate() {
            let c = dbs.client(i).await;
            for img in imgs.iter().flatten() {
                let kept: bool = c
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM big b WHERE to_jsonb(b) = $1::text::jsonb)
                             OR EXISTS (SELECT 1 FROM replication_conflicts WHERE local_row = $1::text::jsonb)",
                        &[img],
                    )
                    .await
                    .unwrap()
                    .get(0);
                assert!(kept, "iteration {it}, region {i}: row {img} lost");
            }
        }
    }
}
