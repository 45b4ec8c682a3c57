//! The run lock: `fix`, `undo` and `check --record` hold one lock per database for the
//! whole run; a second such run exits 2 at once naming the holder, or waits with
//! `--wait-lock`; a killed run's lock goes with its session. Real concurrent runs of the
//! binary.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use eden_test_util::TestDbs;

use crate::common::{eden, run};

/// Two regions; region 1 lacks `rows` rows of region 0's table `t`.
pub(crate) async fn setup(name: &str, rows: usize) -> TestDbs {
    let dbs = TestDbs::new(name, 2).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(
        0,
        &format!("INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, {rows}) g"),
    )
    .await;
    dbs
}

pub(crate) fn args(dbs: &TestDbs, cmd: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
    a.extend(["--db".to_string(), dbs.name(0).to_string()]);
    a.extend(dbs.region_args());
    a
}

/// A slow `fix` (one row per batch, 2 rows a second) in the background, with `extra`
/// global options.
pub(crate) fn slow_fix_with(dbs: &TestDbs, extra: &[&str]) -> Child {
    let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    a.extend(args(
        dbs,
        &["fix", "--batch-size", "1", "--max-rows-per-second", "2"],
    ));
    eden()
        .args(a)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn eden-reconcile fix")
}

/// [`slow_fix_with`] and no extra options.
fn slow_fix(dbs: &TestDbs) -> Child {
    slow_fix_with(dbs, &[])
}

/// The lock session of process `pid`, as the server shows it, once it is there.
pub(crate) async fn wait_for_holder(dbs: &TestDbs, pid: u32, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = dbs
            .query_texts(
                0,
                &format!(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                     WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'eden-reconcile lock fix pid={pid} %'"
                ),
            )
            .await;
        if let Some(Some(app)) = found.into_iter().next() {
            return app;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the fix run ended before it was seen holding the lock"
        );
        assert!(Instant::now() < deadline, "fix never took the lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn lock_free(dbs: &TestDbs) -> bool {
    dbs.query_texts(
        0,
        "SELECT count(*)::text FROM pg_stat_activity WHERE application_name LIKE 'eden-reconcile lock%' \
         AND datname = current_database()",
    )
    .await
        == vec![Some("0".to_string())]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_writing_run_is_refused_naming_the_holder_or_waits() {
    let dbs = setup("e2e_lock_second_run", 8).await;
    let mut first = slow_fix(&dbs);
    let pid = first.id();
    let app = wait_for_holder(&dbs, pid, &mut first).await;
    assert!(app.contains("host="), "{app}");

    // fix, check --record and undo are refused at once, naming the holder.
    for cmd in [
        &["fix"][..],
        &["check", "--record"][..],
        &["undo", "--run", "nothing"][..],
    ] {
        let started = Instant::now();
        let r = run(args(&dbs, cmd));
        r.assert_one_line_error();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{cmd:?} did not fail at once"
        );
        let host = whoami_host();
        assert!(
            r.stderr.contains(&format!(
                "database {} is locked by an eden-reconcile fix run (pid {pid} on host ",
                dbs.name(0)
            )) && r.stderr.contains(&host[..host.len().min(20)])
                && r.stderr.contains(", started 20")
                && r.stderr.contains("--wait-lock"),
            "{cmd:?}: {}",
            r.stderr
        );
    }
    // Plain check and dry runs take no lock.
    run(args(&dbs, &["check"])).assert_code(1);
    run(args(&dbs, &["fix", "--dry-run"])).assert_code(1);

    // A run with --wait-lock waits for the first to finish, then finds nothing to do.
    let r = run(args(&dbs, &["--wait-lock", "60s", "fix"]));
    r.assert_code(0);
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the first fix run failed");
    assert!(lock_free(&dbs).await);

    // A bounded wait that runs out names the holder and the time waited.
    let dbs = setup("e2e_lock_wait_out", 8).await;
    let mut first = slow_fix(&dbs);
    wait_for_holder(&dbs, first.id(), &mut first).await;
    let started = Instant::now();
    let r = run(args(&dbs, &["fix", "--wait-lock", "1s"]));
    r.assert_one_line_error();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        r.stderr.contains("still held after waiting 1s"),
        "{}",
        r.stderr
    );
    first.wait().unwrap();
    // A bad duration is a usage error.
    run(args(&dbs, &["fix", "--wait-lock", "soon"])).assert_one_line_error();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_runs_lock_goes_with_its_session() {
    let dbs = setup("e2e_lock_sigkill", 8).await;
    let mut first = slow_fix(&dbs);
    wait_for_holder(&dbs, first.id(), &mut first).await;
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lock_free(&dbs).await {
        assert!(
            Instant::now() < deadline,
            "the server kept the killed run's lock session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next run takes the lock and finishes the job (nothing lost, converges).
    let r = run(args(&dbs, &["fix"]));
    r.assert_code(0);
    run(args(&dbs, &["check"])).assert_code(0);
}

fn whoami_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
