//! `--metrics-file` and `--metrics-push` against the real thing: the file passes
//! `promtool check metrics` (Debian package `prometheus`) and is replaced atomically on every
//! exit path; pushes land in a real `prometheus-pushgateway` started here on a free port and
//! are read back over HTTP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use eden_test_util::TestDbs;

use crate::common::{Run, run};

const PROMTOOL: &str = "/usr/bin/promtool";
const PUSHGATEWAY: &str = "/usr/bin/prometheus-pushgateway";

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install the Debian package {package} (scripts/test-deps.sh does this)"
    );
}

/// `promtool check metrics` on `text`; panics with its output when it objects.
fn promtool_check(text: &str) {
    require(PROMTOOL, "prometheus");
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics objects:\n{}{}\n--- file ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two regions whose table `t` differs: id 3 missing in r2, id 2 changed.
async fn divergent(name: &str) -> TestDbs {
    let dbs = TestDbs::new_named(name, &["us-east-1", "us-west-2"]).await;
    dbs.exec_all("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    dbs.exec(0, "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await;
    dbs.exec(1, "INSERT INTO t VALUES (1, 'a'), (2, 'B')").await;
    dbs
}

fn eden(dbs: &TestDbs, global: &[&str], cmd: &[&str]) -> Run {
    let mut a: Vec<String> = global.iter().map(|s| s.to_string()).collect();
    a.extend(cmd.iter().map(|s| s.to_string()));
    a.extend(["--db".to_string(), dbs.name(0).to_string()]);
    a.extend(dbs.region_args());
    run(a)
}

/// A `check` that fails (exit 2): us-west-2 points at a port nobody listens on.
fn failed_check(dbs: &TestDbs, global: &[&str]) {
    let mut a: Vec<String> = global.iter().map(|s| s.to_string()).collect();
    a.extend([
        "check".to_string(),
        "--db".to_string(),
        dbs.name(0).to_string(),
        "--region".to_string(),
        format!("us-east-1={}", dbs.url(0)),
        "--region".to_string(),
        format!("us-west-2=postgres://postgres@127.0.0.1:1/{}", dbs.name(1)),
    ]);
    run(a).assert_one_line_error();
}

/// The value of the sample whose line starts with `prefix` (name and labels).
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn metrics_file_on_every_exit_path_passes_promtool() {
    let dbs = divergent("e2e_metrics_file").await;
    let db = dbs.name(0).to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eden_reconcile.prom");
    let f = file.to_str().unwrap();

    // A divergent nightly check.
    eden(&dbs, &["--metrics-file", f], &["check"]).assert_code(1);
    let text = std::fs::read_to_string(&file).unwrap();
    println!("--- metrics file of a divergent check ---\n{text}");
    promtool_check(&text);
    let run_labels = format!("{{command=\"check\",database=\"{db}\"}}");
    assert_eq!(
        value(&text, &format!("eden_reconcile_run_exit_code{run_labels}")),
        Some(1.0)
    );
    let ended = value(
        &text,
        &format!("eden_reconcile_run_timestamp_seconds{run_labels}"),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - ended).abs() < 60.0, "{ended} vs {now}");
    assert!(
        value(
            &text,
            &format!("eden_reconcile_run_duration_seconds{run_labels}")
        )
        .unwrap()
            >= 0.0
    );
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_last_success_timestamp_seconds{run_labels}")
        ),
        Some(ended)
    );
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_consistent{{database=\"{db}\"}}")
        ),
        Some(0.0)
    );
    let t = format!("database=\"{db}\",table=\"public.t\"");
    assert_eq!(
        value(&text, &format!("eden_reconcile_differences{{{t}}}")),
        Some(2.0)
    );
    assert_eq!(
        value(&text, &format!("eden_reconcile_in_flight{{{t}}}")),
        Some(0.0)
    );
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_rows{{{t},region=\"us-east-1\"}}")
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_rows{{{t},region=\"us-west-2\"}}")
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_inconsistent_runs{run_labels}")
        ),
        Some(1.0)
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");

    // A failed run (a region down) still writes, keeping the last success of before.
    failed_check(&dbs, &["--metrics-file", f]);
    let failed = std::fs::read_to_string(&file).unwrap();
    promtool_check(&failed);
    assert_eq!(
        value(
            &failed,
            &format!("eden_reconcile_run_exit_code{run_labels}")
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &failed,
            &format!("eden_reconcile_last_success_timestamp_seconds{run_labels}")
        ),
        Some(ended),
        "{failed}"
    );
    assert_eq!(
        value(
            &failed,
            &format!("eden_reconcile_inconsistent_runs{run_labels}")
        ),
        Some(1.0)
    );
    // A usage error found after parsing (an unknown config file) writes too.
    let r = run([
        "--metrics-file",
        f,
        "--config",
        "/nonexistent/postgresql-multi-region.yaml",
        "check",
        "--db",
        &db,
    ]);
    r.assert_one_line_error();
    let usage = std::fs::read_to_string(&file).unwrap();
    promtool_check(&usage);
    assert_eq!(
        value(&usage, &format!("eden_reconcile_run_exit_code{run_labels}")),
        Some(2.0)
    );
    assert_eq!(
        value(
            &usage,
            &format!("eden_reconcile_last_success_timestamp_seconds{run_labels}")
        ),
        Some(ended)
    );
    // A second divergent check in a row counts up.
    eden(&dbs, &["--metrics-file", f], &["check"]).assert_code(1);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_inconsistent_runs{run_labels}")
        ),
        Some(2.0)
    );

    // fix into the same file: its actions per table and action, the database consistent
    // now; the check's run stays (one file serves every command, each series once).
    eden(&dbs, &["--metrics-file", f], &["fix"]).assert_code(0);
    let text = std::fs::read_to_string(&file).unwrap();
    promtool_check(&text);
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_fix_actions{{{t},action=\"insert\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_fix_actions{{{t},action=\"update\"}}")
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_consistent{{database=\"{db}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&text, &format!("eden_reconcile_differences{{{t}}}")),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(&text, &format!("eden_reconcile_run_exit_code{run_labels}")),
        Some(1.0),
        "the check's run is kept: {text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_run_exit_code{{command=\"fix\",database=\"{db}\"}}")
        ),
        Some(0.0)
    );
    // status adds its own, too.
    eden(&dbs, &["--metrics-file", f], &["status"]).assert_code(1);
    let text = std::fs::read_to_string(&file).unwrap();
    promtool_check(&text);
    assert!(text.contains(&format!(
        "eden_reconcile_region_up{{database=\"{db}\",region=\"us-west-2\"}} 1\n"
    )));
    assert!(text.contains("eden_reconcile_fix_actions{"), "{text}");
    let series: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').unwrap().0)
        .collect();
    let unique: std::collections::BTreeSet<&&str> = series.iter().collect();
    assert_eq!(series.len(), unique.len(), "a series twice:\n{text}");
    // An unwritable metrics file is an error of its own (exit 2, one sentence).
    eden(
        &dbs,
        &["--metrics-file", "/nonexistent-dir/x.prom"],
        &["check"],
    )
    .assert_one_line_error();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_stopped_by_sigterm_still_writes_its_metrics() {
    let dbs = crate::lock::setup("e2e_metrics_sigterm", 8).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eden_reconcile.prom");
    let mut fix = crate::lock::slow_fix_with(&dbs, &["--metrics-file", file.to_str().unwrap()]);
    crate::lock::wait_for_holder(&dbs, fix.id(), &mut fix).await;
    let killed = Command::new("kill")
        .args(["-TERM", &fix.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = fix.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("eden-reconcile: "))
        .collect();
    assert!(
        lines.len() == 1 && lines[0].contains("stopped by SIGTERM"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&file).unwrap();
    promtool_check(&text);
    assert_eq!(
        value(
            &text,
            &format!(
                "eden_reconcile_run_exit_code{{command=\"fix\",database=\"{}\"}}",
                dbs.name(0)
            )
        ),
        Some(2.0),
        "{text}"
    );
    // The lock went with the run; the next run finishes the job.
    run(crate::lock::args(&dbs, &["fix"])).assert_code(0);
    run(crate::lock::args(&dbs, &["check"])).assert_code(0);
}

/// A real Pushgateway on a free port, stopped on drop.
struct Pushgateway {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pushgateway {
    fn start() -> Pushgateway {
        require(PUSHGATEWAY, "prometheus-pushgateway");
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(PUSHGATEWAY)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--persistence.file={}",
                dir.path().join("pgw.data").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pgw = Pushgateway {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while pgw.get("/-/ready").0 != 200 {
            assert!(Instant::now() < deadline, "the Pushgateway did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        pgw
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain HTTP/1.0 GET (no chunking): status and body; (0, "") when not answering.
    fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, String::new());
        };
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .unwrap();
        let mut buf = String::new();
        if s.read_to_string(&mut buf).is_err() {
            return (0, String::new());
        }
        let status = buf
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = buf.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (status, body.to_string())
    }
}

#[tokio::test]
async fn metrics_push_lands_in_a_real_pushgateway() {
    let pgw = Pushgateway::start();
    let dbs = divergent("e2e_metrics_push").await;
    let db = dbs.name(0).to_string();
    eden(&dbs, &["--metrics-push", &pgw.url()], &["check"]).assert_code(1);
    let (code, text) = pgw.get("/metrics");
    assert_eq!(code, 200);
    let group = format!("command=\"check\",database=\"{db}\",instance=\"\",job=\"eden_reconcile\"");
    let exit = value(&text, &format!("eden_reconcile_run_exit_code{{{group}}}"));
    assert_eq!(exit, Some(1.0), "{text}");
    let ended = value(
        &text,
        &format!("eden_reconcile_last_success_timestamp_seconds{{{group}}}"),
    )
    .unwrap();
    assert!(
        text.contains(&format!(
            "eden_reconcile_differences{{command=\"check\",database=\"{db}\",instance=\"\",job=\"eden_reconcile\",table=\"public.t\"}} 2"
        )),
        "{text}"
    );
    // The group the contract names: job, database, command.
    let (code, api) = pgw.get("/api/v1/metrics");
    assert_eq!(code, 200);
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let labels: Vec<&serde_json::Value> = api["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| &g["labels"])
        .collect();
    assert!(
        labels.contains(
            &&serde_json::json!({"job": "eden_reconcile", "database": db, "command": "check"})
        ),
        "{labels:?}"
    );

    // A failed run replaces the group but keeps the last success, read back from the gateway.
    std::thread::sleep(Duration::from_millis(20));
    failed_check(&dbs, &["--metrics-push", &pgw.url()]);
    let (_, text) = pgw.get("/metrics");
    assert_eq!(
        value(&text, &format!("eden_reconcile_run_exit_code{{{group}}}")),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("eden_reconcile_last_success_timestamp_seconds{{{group}}}")
        ),
        Some(ended)
    );
    // ... and the verdict of the last check that got that far.
    assert!(
        text.contains(&format!(
            "eden_reconcile_differences{{command=\"check\",database=\"{db}\",instance=\"\",job=\"eden_reconcile\",table=\"public.t\"}} 2"
        )),
        "{text}"
    );

    // status pushes its own group next to check's.
    let r = eden(&dbs, &["--metrics-push", &pgw.url()], &["status"]);
    r.assert_code(1);
    let (_, text) = pgw.get("/metrics");
    assert!(
        text.contains(&format!(
            "eden_reconcile_region_up{{command=\"status\",database=\"{db}\",instance=\"\",job=\"eden_reconcile\",region=\"us-east-1\"}} 1"
        )),
        "{text}"
    );
    // Nothing answering at the URL: exit 2, one sentence naming it.
    drop(pgw);
    let r = eden(&dbs, &["--metrics-push", "http://127.0.0.1:1"], &["check"]);
    r.assert_one_line_error();
    assert!(r.stderr.contains("--metrics-push"), "{}", r.stderr);
}
