//! `fix` racing a concurrent writer, and `fix` killed with SIGKILL at random moments.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use eden_consistency::Config;
use eden_consistency::TableName;
use eden_consistency::{ApplyOptions, FixReport, apply_plan};
use eden_consistency::{ConnectOptions, Region, connect_all};
use eden_consistency::{FixOptions, KeyMap, TableDifferences, plan_fix};
use eden_test_util::TestDbs;

/// xorshift64*: a small seeded generator (tests must be reproducible).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config_for(urls: &[(String, String)]) -> Config {
    let regions: String = urls
        .iter()
        .map(|(r, _)| {
            format!("  - {{name: {r}, role: active, instance: {{host: 127.0.0.1, port: 5432}}}}\n")
        })
        .collect();
    let yaml = format!(
        "regions:\n{regions}replication:\n  provider: native\n  node_groups:\n    - name: g\n      database: app\n      conflict_resolution_tables:\n        - {{table: t, resolution: last_write_wins, tracking_column: updated_at}}\n"
    );
    let mut cfg = Config::from_yaml_str(&yaml, "test.yaml").unwrap();
    for (r, u) in urls {
        cfg.apply_region_flag(&format!("{r}={u}")).unwrap();
    }
    cfg
}

fn urls(dbs: &TestDbs) -> Vec<(String, String)> {
    (0..dbs.len())
        .map(|i| (dbs.region(i).to_string(), dbs.url(i)))
        .collect()
}

async fn all_keys(regions: &[Region]) -> Vec<TableDifferences> {
    let mut keys: Vec<i64> = Vec::new();
    for r in regions {
        for row in r.client.query("SELECT id::int8 FROM t", &[]).await.unwrap() {
            keys.push(row.get(0));
        }
    }
    keys.sort();
    keys.dedup();
    vec![TableDifferences {
        table: TableName::new("public", "t"),
        key_columns: vec!["id".into()],
        keys: keys
            .into_iter()
            .map(|k| {
                let mut m = KeyMap::new();
                m.insert("id".into(), k.into());
                m
            })
            .collect(),
        in_flight: vec![],
        not_fixable: None,
    }]
}

async fn run_fix(regions: &[Region], cfg: &Config, opts: &ApplyOptions) -> FixReport {
    let diffs = all_keys(regions).await;
    let plan = plan_fix(regions, cfg, "app", &diffs, &FixOptions::default())
        .await
        .unwrap();
    apply_plan(regions, &plan, opts).await.unwrap()
}

const TABLE: &str =
    "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL, updated_at timestamptz NOT NULL)";

/// Fills both regions with `n` rows that differ everywhere (and some missing on each side);
/// `tag` makes every value of this round unique.
fn divergent_data(n: i64, tag: &str) -> (String, String) {
    let r1 = format!(
        "INSERT INTO t SELECT i, '{tag}-r1-' || i, '2024-01-01'::timestamptz + (i % 7) * interval '1 day' FROM generate_series(1, {n}) i WHERE i % 10 <> 3"
    );
    let r2 = format!(
        "INSERT INTO t SELECT i, '{tag}-r2-' || i, '2024-01-04'::timestamptz FROM generate_series(1, {n}) i WHERE i % 10 <> 7"
    );
    (r1, r2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fix_concurrent_writer_loses_nothing() {
    let dbs = TestDbs::new("fix_concurrent_writer_loses_nothing", 2).await;
    dbs.exec_all(TABLE).await;
    let (a, b) = divergent_data(600, "c");
    dbs.exec(0, &a).await;
    dbs.exec(1, &b).await;
    let cfg = config_for(&urls(&dbs));
    let regions = connect_all(&cfg, Some("app"), &ConnectOptions::default())
        .await
        .unwrap();

    // The writer: random rows in random regions, newest timestamps, for as long as fix runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let clients = [dbs.client(0).await, dbs.client(1).await];
        tokio::spawn(async move {
            let mut rng = Rng(0x5eed_cafe);
            let mut last: HashMap<(usize, i64), (String, String)> = HashMap::new();
            let mut seq = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let region = rng.below(2) as usize;
                let id = 1 + rng.below(600) as i64;
                seq += 1;
                let v = format!("w{seq}");
                let rows = clients[region]
                    .query(
                        "UPDATE t SET v = $1, updated_at = clock_timestamp() WHERE id = $2 RETURNING updated_at::text",
                        &[&v, &(id as i32)],
                    )
                    .await
                    .unwrap();
                if let Some(r) = rows.first() {
                    last.insert((region, id), (v, r.get(0)));
                }
                tokio::time::sleep(Duration::from_micros(300)).await;
            }
            last
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let opts = ApplyOptions {
        progress: None,
        batch_size: 10,
        max_rows_per_second: Some(2000.0),
        ..Default::default()
    };
    let first = run_fix(&regions, &cfg, &opts).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let last = writer.await.unwrap();
    assert!(last.len() > 50, "the writer wrote only {} rows", last.len());
    eprintln!(
        "first run: {} applied, {} changed since read",
        first.applied(),
        first.tables[0].changed
    );

    // Row by row: every write of the writer is still there, or was overwritten by a newer
    // version (and then archived in that region).
    for ((region, id), (v, ts)) in &last {
        let c = &regions[*region].client;
        let row = c
            .query_one("SELECT v, updated_at::text, updated_at >= $2::text::timestamptz FROM t WHERE id = $1", &[&(*id as i32), ts])
            .await
            .unwrap();
        let fv: String = row.get(0);
        let newer_or_same: bool = row.get(2);
        assert!(
            newer_or_same,
            "region {region} id {id}: writer's {v} at {ts} was replaced by an older {fv}"
        );
        if &fv != v {
            let archived: i64 = c
                .query_one("SELECT count(*) FROM replication_conflicts WHERE key = jsonb_build_object('id', $1::int) AND local_row->>'v' = $2", &[&(*id as i32), v])
                .await
                .unwrap()
                .get(0);
            assert!(
                archived > 0,
                "region {region} id {id}: writer's {v} overwritten without archive"
            );
        }
    }
    // Once the writer is quiet, the next runs converge.
    let mut r = run_fix(&regions, &cfg, &opts).await;
    for _ in 0..2 {
        if r.consistent {
            break;
        }
        r = run_fix(&regions, &cfg, &opts).await;
    }
    assert!(r.consistent, "{r:#?}");
    let again = run_fix(&regions, &cfg, &opts).await;
    assert_eq!(again.applied(), 0);
}

/// The child side of [`fix_killed_at_random_moments_converges`]: runs one fix and exits.
/// Does nothing unless started by that test.
#[tokio::test]
async fn fix_kill_child_entry() {
    let Ok(spec) = std::env::var("EDEN_FIX_KILL_CHILD") else {
        return;
    };
    let urls: Vec<(String, String)> = serde_json::from_str(&spec).unwrap();
    let cfg = config_for(&urls);
    let regions = connect_all(&cfg, Some("app"), &ConnectOptions::default())
        .await
        .unwrap();
    let opts = ApplyOptions {
        progress: None,
        batch_size: 7,
        max_rows_per_second: Some(500.0),
        ..Default::default()
    };
    let r = run_fix(&regions, &cfg, &opts).await;
    eprintln!("child finished: {} applied", r.applied());
}

#[tokio::test]
async fn fix_killed_at_random_moments_converges() {
    let dbs = TestDbs::new("fix_killed_at_random_moments", 2).await;
    dbs.exec_all(TABLE).await;
    let urls = urls(&dbs);
    let cfg = config_for(&urls);
    let seed: u64 = std::env::var("EDEN_FIX_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261127);
    let iterations: usize = std::env::var("EDEN_FIX_KILL_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut rng = Rng(seed.max(1));
    let exe = std::env::current_exe().unwrap();
    let mut killed_mid_apply = 0;
    let mut archived_before = 0i64;
    for it in 0..iterations {
        dbs.exec_all("TRUNCATE t").await;
        let (a, b) = divergent_data(400, &format!("k{it}"));
        dbs.exec(0, &a).await;
        dbs.exec(1, &b).await;
        // every row image of this round, per region
        let mut images = Vec::new();
        for i in 0..2 {
            images.push(dbs.query_texts(i, "SELECT to_jsonb(t)::text FROM t").await);
        }
        let delay = Duration::from_millis(rng.below(900));
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "fix_concurrency::fix_kill_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("EDEN_FIX_KILL_CHILD", serde_json::to_string(&urls).unwrap())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        if it % 2 == 1 {
            // Every other iteration waits until the child is writing (its first archived
            // row is visible), so that kills mid-apply happen however long the child's
            // start and check take on a loaded machine.
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                let mut n = 0i64;
                for i in 0..2 {
                    let exists = dbs
                        .query_texts(
                            i,
                            "SELECT (to_regclass('replication_conflicts') IS NOT NULL)::text",
                        )
                        .await[0]
                        .as_deref()
                        == Some("true");
                    if exists {
                        n += dbs
                            .query_texts(i, "SELECT count(*)::text FROM replication_conflicts")
                            .await[0]
                            .as_deref()
                            .unwrap_or("0")
                            .parse::<i64>()
                            .unwrap_or(0);
                    }
                }
                if n > archived_before || child.try_wait().ok().flatten().is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(delay / 3).await;
        } else {
            tokio::time::sleep(delay).await;
        }
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        eprintln!(
            "iteration {it}: killed after {:?} ({status})",
            started.elapsed()
        );

        let regions = connect_all(&cfg, Some("app"), &ConnectOptions::default())
            .await
            .unwrap();
        let partial: i64 = {
            let mut n = 0;
            for r in &regions {
                let exists: bool = r
                    .client
                    .query_one(
                        "SELECT to_regclass('replication_conflicts') IS NOT NULL",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                if exists {
                    n += r
                        .client
                        .query_one("SELECT count(*) FROM replication_conflicts", &[])
                        .await
                        .unwrap()
                        .get::<_, i64>(0);
                }
            }
            n - archived_before
        };
        let opts = ApplyOptions {
            progress: None,
            batch_size: 50,
            ..Default::default()
        };
        let r = run_fix(&regions, &cfg, &opts).await;
        eprintln!(
            "iteration {it}: the killed run had written {partial} row(s); the rerun wrote {}",
            r.applied()
        );
        if partial > 0 && r.applied() > 0 {
            killed_mid_apply += 1;
        }
        archived_before += partial + r.applied() as i64;
        assert!(r.consistent, "iteration {it}: {r:#?}");
        let again = run_fix(&regions, &cfg, &opts).await;
        assert_eq!(again.applied(), 0, "iteration {it}: not idempotent");
        let q = "SELECT x::text FROM t x ORDER BY id";
        assert_eq!(dbs.query_texts(0, q).await, dbs.query_texts(1, q).await);
        // nothing lost: every row that existed is still there or archived in that region
        for (i, imgs) in images.iter().enumerate() {
            let c = &regions[i].client;
            for img in imgs {
                let img = img.as_ref().unwrap();
                let kept: bool = c
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM t WHERE to_jsonb(t) = $1::text::jsonb)
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
    assert!(
        iterations < 5 || killed_mid_apply > 0,
        "no iteration killed the fix while it was writing"
    );
}

/// Throughput on the local server: 20 000 differing keys (updates and inserts both ways).
/// `cargo test -p eden-consistency --test it -- --ignored --nocapture fix_concurrency::fix_throughput`
#[tokio::test]
#[ignore]
async fn fix_throughput_20k() {
    let dbs = TestDbs::new("fix_throughput_20k", 2).await;
    dbs.exec_all(TABLE).await;
    let (a, b) = divergent_data(20_000, "t");
    dbs.exec(0, &a).await;
    dbs.exec(1, &b).await;
    let cfg = config_for(&urls(&dbs));
    let regions = connect_all(&cfg, Some("app"), &ConnectOptions::default())
        .await
        .unwrap();
    let diffs = all_keys(&regions).await;
    let t0 = Instant::now();
    let plan = plan_fix(&regions, &cfg, "app", &diffs, &FixOptions::default())
        .await
        .unwrap();
    let planned = t0.elapsed();
    let t1 = Instant::now();
    let r = apply_plan(
        &regions,
        &plan,
        &ApplyOptions {
            progress: None,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let applied = t1.elapsed();
    assert!(r.consistent);
    eprintln!(
        "keys: {}, writes: {}, plan: {:?} ({:.0} keys/s), apply+recheck: {:?} ({:.0} rows/s)",
        diffs[0].keys.len(),
        r.applied(),
        planned,
        diffs[0].keys.len() as f64 / planned.as_secs_f64(),
        applied,
        r.applied() as f64 / applied.as_secs_f64()
    );
}
