//! Prometheus metrics of one run, for unattended (nightly) use.
//!
//! A run collects what it found in a [`RunMetrics`] (from a check, fix or status report, or
//! through the generic setters for other kinds of store), then renders it in the Prometheus
//! text exposition format ([`RunMetrics::render`]) for node_exporter's textfile collector
//! ([`write_file`]: a temporary file in the same folder, then a rename, so the collector
//! never reads half a file) or for a Pushgateway ([`push()`]).
//!
//! Every metric the tool can emit is listed in [`METRICS`], with its help text and labels;
//! the dashboards and alert rules shipped in `deploy/` use only those names.
//!
//! `eden_reconcile_last_success_timestamp_seconds` is the end of the last run that
//! completed (exit 0 or 1). A run that failed (exit 2) carries the previous value forward,
//! read back from the previous file ([`previous_value`]) or from the Pushgateway
//! ([`fetch`]), so that "has not succeeded for 26 hours" stays true across failures.
//! `eden_reconcile_inconsistent_runs` counts the runs in a row of the same command that
//! found the database inconsistent, carried forward the same way.
//!
//! Inside, one module reads and writes the textfile collector's file, another talks to a
//! Pushgateway.

mod push;
mod textfile;

use std::collections::BTreeMap;
use std::time::Duration;

use textfile::parse_line;

pub use push::{PushUrl, fetch, push};
pub use textfile::{
    Previous, group_samples, previous_from_file, previous_value, update_file, write_file,
};

/// One metric: name, help, labels.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// The metric's name.
    pub name: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// Its labels, in the order written.
    pub labels: &'static [&'static str],
}

const fn def(name: &'static str, labels: &'static [&'static str], help: &'static str) -> MetricDef {
    MetricDef { name, help, labels }
}

/// `eden_reconcile_run_timestamp_seconds`.
pub const RUN_TIMESTAMP: &str = "eden_reconcile_run_timestamp_seconds";
/// `eden_reconcile_run_duration_seconds`.
pub const RUN_DURATION: &str = "eden_reconcile_run_duration_seconds";
/// `eden_reconcile_run_exit_code`.
pub const RUN_EXIT_CODE: &str = "eden_reconcile_run_exit_code";
/// `eden_reconcile_last_success_timestamp_seconds`.
pub const LAST_SUCCESS: &str = "eden_reconcile_last_success_timestamp_seconds";
/// `eden_reconcile_inconsistent_runs`.
pub const INCONSISTENT_RUNS: &str = "eden_reconcile_inconsistent_runs";
/// `eden_reconcile_consistent`.
pub const CONSISTENT: &str = "eden_reconcile_consistent";
/// `eden_reconcile_differences`.
pub const DIFFERENCES: &str = "eden_reconcile_differences";
/// `eden_reconcile_in_flight`.
pub const IN_FLIGHT: &str = "eden_reconcile_in_flight";
/// `eden_reconcile_rows`.
pub const ROWS: &str = "eden_reconcile_rows";
/// `eden_reconcile_fix_actions`.
pub const FIX_ACTIONS: &str = "eden_reconcile_fix_actions";
/// `eden_reconcile_healthy`.
pub const HEALTHY: &str = "eden_reconcile_healthy";
/// `eden_reconcile_region_up`.
pub const REGION_UP: &str = "eden_reconcile_region_up";
/// `eden_reconcile_replication_lag_seconds`.
pub const LAG: &str = "eden_reconcile_replication_lag_seconds";
/// `eden_reconcile_max_replication_lag_seconds`.
pub const MAX_LAG: &str = "eden_reconcile_max_replication_lag_seconds";
/// `eden_reconcile_conflicts_unresolved`.
pub const CONFLICTS_UNRESOLVED: &str = "eden_reconcile_conflicts_unresolved";
/// `eden_reconcile_status_problems`.
pub const PROBLEMS: &str = "eden_reconcile_status_problems";

/// Every metric the tool emits, in the order written.
pub const METRICS: &[MetricDef] = &[
    def(
        RUN_TIMESTAMP,
        &["command", "database"],
        "When this run ended, in seconds since the Unix epoch.",
    ),
    def(
        RUN_DURATION,
        &["command", "database"],
        "How long this run took, in seconds.",
    ),
    def(
        RUN_EXIT_CODE,
        &["command", "database"],
        "Exit code of this run: 0 consistent or done, 1 differences or problems found, 2 error.",
    ),
    def(
        LAST_SUCCESS,
        &["command", "database"],
        "End of the last run that completed (exit 0 or 1), in seconds since the Unix epoch.",
    ),
    def(
        INCONSISTENT_RUNS,
        &["command", "database"],
        "Runs in a row of this command that found the database inconsistent (0 after a consistent run).",
    ),
    def(
        CONSISTENT,
        &["database"],
        "1 when every table (or the cache) agreed in every region, else 0.",
    ),
    def(
        DIFFERENCES,
        &["database", "table"],
        "Confirmed differences (rows or keys) per table; for fix, those still differing after it.",
    ),
    def(
        IN_FLIGHT,
        &["database", "table"],
        "Differences still in flight (younger than the replication lag allowance).",
    ),
    def(
        ROWS,
        &["database", "table", "region"],
        "Rows (keys) counted per table and region.",
    ),
    def(
        FIX_ACTIONS,
        &["database", "table", "action"],
        "Actions applied by fix per table: insert, update, delete, manual.",
    ),
    def(
        HEALTHY,
        &["database"],
        "status: 1 when no region has a replication problem, else 0.",
    ),
    def(
        REGION_UP,
        &["database", "region"],
        "status: 1 when the region could be reached, else 0.",
    ),
    def(
        LAG,
        &["database", "region"],
        "status: lag of the changes arriving in the region, in seconds (absent when not replicating).",
    ),
    def(
        MAX_LAG,
        &["database"],
        "status: the configured max_replication_lag_seconds.",
    ),
    def(
        CONFLICTS_UNRESOLVED,
        &["database", "region"],
        "status: unresolved records in the region's replication_conflicts.",
    ),
    def(
        PROBLEMS,
        &["database", "region"],
        "status: problems found in the region.",
    ),
];

/// The definition of `name`, if it is one of [`METRICS`].
pub fn metric(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

/// What one run found, to be rendered when it ends.
#[derive(Debug, Clone)]
pub struct RunMetrics {
    /// The subcommand (`check`, `fix`, `status`, ...).
    pub command: String,
    /// The database (`--db`, or the one a report names).
    pub database: String,
    /// Whether the run found everything consistent (check, fix), when it got that far.
    pub consistent: Option<bool>,
    samples: Vec<(&'static str, Vec<String>, f64)>,
}

impl RunMetrics {
    /// An empty record for `command` on `database`.
    pub fn new(command: &str, database: &str) -> RunMetrics {
        RunMetrics {
            command: command.to_string(),
            database: database.to_string(),
            consistent: None,
            samples: Vec::new(),
        }
    }

    /// Adds a sample of `name` (one of [`METRICS`]); `labels` are the values of its labels
    /// after `database` (which is filled in from [`RunMetrics::database`]).
    pub fn add(&mut self, name: &'static str, labels: &[&str], value: f64) {
        debug_assert!(metric(name).is_some(), "unknown metric {name}");
        self.samples
            .push((name, labels.iter().map(|s| s.to_string()).collect(), value));
    }

    /// Records whether the database was found consistent.
    pub fn set_consistent(&mut self, consistent: bool) {
        self.consistent = Some(consistent);
        self.add(CONSISTENT, &[], if consistent { 1.0 } else { 0.0 });
    }

    /// Records one table (or cache database): confirmed differences, those in flight, and
    /// the rows (keys) counted per region.
    pub fn add_table(
        &mut self,
        table: &str,
        differences: u64,
        in_flight: u64,
        rows: &[(&str, u64)],
    ) {
        self.add(DIFFERENCES, &[table], differences as f64);
        self.add(IN_FLIGHT, &[table], in_flight as f64);
        for (region, n) in rows {
            self.add(ROWS, &[table, region], *n as f64);
        }
    }

    /// Records one region's status gauges.
    pub fn add_region(
        &mut self,
        region: &str,
        up: bool,
        lag_seconds: Option<f64>,
        conflicts_unresolved: Option<u64>,
        problems: usize,
    ) {
        self.add(REGION_UP, &[region], if up { 1.0 } else { 0.0 });
        if let Some(l) = lag_seconds {
            self.add(LAG, &[region], l);
        }
        if let Some(c) = conflicts_unresolved {
            self.add(CONFLICTS_UNRESOLVED, &[region], c as f64);
        }
        self.add(PROBLEMS, &[region], problems as f64);
    }

    /// Records a `check` report.
    pub fn record_check(&mut self, report: &crate::check::report::CheckReport) {
        self.database = report.database.clone();
        self.set_consistent(report.consistent);
        for t in &report.tables {
            let rows: Vec<(&str, u64)> = t
                .row_counts
                .0
                .iter()
                .map(|(r, n)| (r.as_str(), *n))
                .collect();
            self.add_table(&t.table, t.difference_count, t.in_flight_count, &rows);
        }
    }

    /// Records a `fix` report: actions applied per table and action, and what still
    /// differs afterwards (for a dry run: the keys that would be changed).
    pub fn record_fix(&mut self, report: &crate::repair::apply::FixReport) {
        self.set_consistent(report.consistent);
        for t in &report.tables {
            let mut by_action: BTreeMap<&str, u64> = BTreeMap::new();
            for a in &t.actions {
                if a.status == crate::repair::apply::ActionStatus::Applied
                    || a.status == crate::repair::apply::ActionStatus::Unresolved
                {
                    *by_action.entry(a.action.as_str()).or_default() += 1;
                }
            }
            for (action, n) in by_action {
                self.add(FIX_ACTIONS, &[&t.table, action], n as f64);
            }
            let differences = if report.dry_run {
                let keys: std::collections::BTreeSet<String> = t
                    .actions
                    .iter()
                    .map(|a| serde_json::to_string(&a.key).unwrap_or_default())
                    .collect();
                keys.len()
            } else {
                t.still_differing.len()
            };
            self.add(DIFFERENCES, &[&t.table], differences as f64);
            self.add(IN_FLIGHT, &[&t.table], t.deferred.len() as f64);
        }
    }

    /// Records a `status` report.
    pub fn record_status(&mut self, report: &crate::status::StatusReport) {
        self.database = report.database.clone();
        self.add(HEALTHY, &[], if report.healthy { 1.0 } else { 0.0 });
        if let Some(m) = report.max_replication_lag_seconds {
            self.add(MAX_LAG, &[], m as f64);
        }
        for r in &report.regions {
            self.add_region(
                &r.region,
                r.reachable,
                r.lag_seconds(),
                r.conflicts_unresolved(),
                r.problems.len(),
            );
        }
    }

    /// The text exposition of this run, ended at `ended` (seconds since the epoch) after
    /// `duration`, with `exit_code`. `previous` is what the last run of the same command
    /// left (see [`previous_value`]), for the values carried across runs.
    ///
    /// `carry` is the previous content of a metrics file shared by several commands or
    /// databases: its samples are kept unless this run replaces them (same metric, same
    /// database and, for per-run metrics, same command), so one file can serve every
    /// command of the nightly job without two files ever holding the same series (which
    /// node_exporter's textfile collector refuses).
    pub fn render(
        &self,
        ended: f64,
        duration: Duration,
        exit_code: i32,
        previous: &Previous,
        carry: Option<&str>,
    ) -> String {
        let mut all: Vec<(&'static str, Vec<String>, f64)> = vec![
            (RUN_TIMESTAMP, vec![], ended),
            (RUN_DURATION, vec![], duration.as_secs_f64()),
            (RUN_EXIT_CODE, vec![], exit_code as f64),
        ];
        let completed = exit_code == 0 || exit_code == 1;
        if completed {
            all.push((LAST_SUCCESS, vec![], ended));
        } else if let Some(v) = previous.last_success {
            all.push((LAST_SUCCESS, vec![], v));
        }
        match (completed, self.consistent) {
            (true, Some(true)) => all.push((INCONSISTENT_RUNS, vec![], 0.0)),
            (true, Some(false)) => all.push((
                INCONSISTENT_RUNS,
                vec![],
                previous.inconsistent_runs.unwrap_or(0.0) + 1.0,
            )),
            _ => {
                if let Some(v) = previous.inconsistent_runs {
                    all.push((INCONSISTENT_RUNS, vec![], v));
                }
            }
        }
        all.extend(self.samples.iter().cloned());
        // Every sample with its labels resolved, in the order of the definition's labels.
        let mut resolved: Vec<(&'static str, Vec<String>, f64)> = Vec::new();
        for (name, labels, value) in all {
            let Some(m) = metric(name) else { continue };
            let mut rest = labels.into_iter();
            let values = m
                .labels
                .iter()
                .map(|l| match *l {
                    "command" => self.command.clone(),
                    "database" => self.database.clone(),
                    _ => rest.next().unwrap_or_default(),
                })
                .collect();
            resolved.push((m.name, values, value));
        }
        // What an earlier run left in the same file and this run does not replace: other
        // databases, other commands' runs, and metrics this run did not produce.
        if let Some(text) = carry {
            let emitted: std::collections::BTreeSet<&str> =
                resolved.iter().map(|(n, _, _)| *n).collect();
            for (name, labels, value) in text.lines().filter_map(parse_line) {
                let Some(m) = metric(name) else { continue };
                let same_scope = labels.get("database") == Some(&self.database)
                    && (!m.labels.contains(&"command")
                        || labels.get("command") == Some(&self.command));
                // A run that judged the database owns its whole verdict (a table with no
                // difference any more leaves no stale count behind); fix owns its actions.
                let judged = self.consistent.is_some()
                    && ([CONSISTENT, DIFFERENCES, IN_FLIGHT].contains(&m.name)
                        || (m.name == FIX_ACTIONS && self.command == "fix"));
                if same_scope && (emitted.contains(m.name) || judged) {
                    continue;
                }
                // Carried values of this run's own scope (last success, streak) are
                // already rendered from `previous`.
                if same_scope && (m.name == LAST_SUCCESS || m.name == INCONSISTENT_RUNS) {
                    continue;
                }
                let values = m
                    .labels
                    .iter()
                    .map(|l| labels.get(*l).cloned().unwrap_or_default())
                    .collect();
                resolved.push((m.name, values, value));
            }
        }
        let mut out = String::new();
        for m in METRICS {
            let mut first = true;
            for (name, values, value) in resolved.iter().filter(|(n, _, _)| *n == m.name) {
                if first {
                    out.push_str(&format!("# HELP {name} {}\n", m.help));
                    out.push_str(&format!("# TYPE {name} gauge\n"));
                    first = false;
                }
                let pairs: Vec<String> = m
                    .labels
                    .iter()
                    .zip(values)
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                    .collect();
                out.push_str(&format!(
                    "{name}{{{}}} {}\n",
                    pairs.join(","),
                    format_value(*value)
                ));
            }
        }
        out
    }
}

pub(crate) fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::push::*;
    use super::textfile::*;
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(path_label("database", "eden_vault"), "database/eden_vault");
        assert_eq!(path_label("database", "a/b"), "database@base64/YS9i");
        assert_eq!(path_label("database", ""), "database@base64/=");
    }

    #[test]
    fn render_and_read_back() {
        let mut m = RunMetrics::new("check", "eden_vault");
        m.set_consistent(false);
        m.add_table("public.t\"x", 2, 1, &[("us-east-1", 10), ("us-west-2", 9)]);
        let text = m.render(
            1_700_000_000.5,
            Duration::from_millis(1500),
            1,
            &Previous::default(),
            None,
        );
        assert!(text.contains(
            "eden_reconcile_rows{database=\"eden_vault\",table=\"public.t\\\"x\",region=\"us-west-2\"} 9\n"
        ), "{text}");
        assert!(text.contains(
            "eden_reconcile_run_duration_seconds{command=\"check\",database=\"eden_vault\"} 1.5\n"
        ));
        let prev = Previous::from_text(&text, "check", "eden_vault");
        assert_eq!(prev.last_success, Some(1_700_000_000.5));
        assert_eq!(prev.inconsistent_runs, Some(1.0));
        // A failed run keeps both.
        let failed = RunMetrics::new("check", "eden_vault").render(
            1_800_000_000.0,
            Duration::ZERO,
            2,
            &prev,
            None,
        );
        assert_eq!(Previous::from_text(&failed, "check", "eden_vault"), prev);
        // Another inconsistent run counts up; a consistent one resets.
        let again = m.render(1_800_000_000.0, Duration::ZERO, 1, &prev, None);
        assert_eq!(
            Previous::from_text(&again, "check", "eden_vault").inconsistent_runs,
            Some(2.0)
        );
        let mut ok = RunMetrics::new("check", "eden_vault");
        ok.set_consistent(true);
        let ok = ok.render(1_800_000_000.0, Duration::ZERO, 0, &prev, None);
        assert_eq!(
            Previous::from_text(&ok, "check", "eden_vault").inconsistent_runs,
            Some(0.0)
        );
        assert_eq!(previous_value(&ok, LAST_SUCCESS, "fix", "eden_vault"), None);
    }

    #[test]
    fn one_file_for_several_commands_and_databases() {
        let mut check = RunMetrics::new("check", "a");
        check.set_consistent(false);
        check.add_table("public.t", 2, 0, &[("r1", 3)]);
        let file = check.render(100.0, Duration::ZERO, 1, &Previous::default(), None);
        let mut status = RunMetrics::new("status", "a");
        status.add_region("r1", true, Some(0.5), Some(1), 0);
        let file = status.render(200.0, Duration::ZERO, 0, &Previous::default(), Some(&file));
        let mut other = RunMetrics::new("check", "b");
        other.set_consistent(true);
        let file = other.render(300.0, Duration::ZERO, 0, &Previous::default(), Some(&file));
        // check's results and run of database a survive status and database b's runs.
        assert_eq!(
            previous_value(&file, RUN_EXIT_CODE, "check", "a"),
            Some(1.0)
        );
        assert_eq!(
            previous_value(&file, RUN_EXIT_CODE, "status", "a"),
            Some(0.0)
        );
        assert_eq!(
            previous_value(&file, RUN_EXIT_CODE, "check", "b"),
            Some(0.0)
        );
        assert!(file.contains("eden_reconcile_differences{database=\"a\",table=\"public.t\"} 2\n"));
        assert!(file.contains("eden_reconcile_consistent{database=\"a\"} 0\n"));
        assert!(file.contains("eden_reconcile_consistent{database=\"b\"} 1\n"));
        assert!(file.contains(
            "eden_reconcile_replication_lag_seconds{database=\"a\",region=\"r1\"} 0.5\n"
        ));
        // A new check of a replaces its own results, and each series is there once.
        let mut again = RunMetrics::new("check", "a");
        again.set_consistent(true);
        let prev = Previous::from_text(&file, "check", "a");
        let file = again.render(400.0, Duration::ZERO, 0, &prev, Some(&file));
        assert!(
            !file.contains("eden_reconcile_differences{database=\"a\""),
            "{file}"
        );
        assert!(file.contains("eden_reconcile_consistent{database=\"a\"} 1\n"));
        let series: Vec<&str> = file
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').unwrap().0)
            .collect();
        let unique: std::collections::BTreeSet<&&str> = series.iter().collect();
        assert_eq!(series.len(), unique.len(), "{file}");
        // Each metric's HELP and TYPE once.
        assert_eq!(
            file.matches("# TYPE eden_reconcile_run_exit_code gauge")
                .count(),
            1
        );
    }

    #[test]
    fn a_pushgateway_group() {
        let text = "# TYPE eden_reconcile_consistent gauge\n\
            eden_reconcile_consistent{command=\"check\",database=\"a\",instance=\"\",job=\"eden_reconcile\"} 0\n\
            eden_reconcile_consistent{command=\"fix\",database=\"a\",instance=\"\",job=\"eden_reconcile\"} 1\n\
            eden_reconcile_consistent{command=\"check\",database=\"b\",instance=\"\",job=\"eden_reconcile\"} 1\n\
            push_time_seconds{command=\"check\",database=\"a\",instance=\"\",job=\"eden_reconcile\"} 5\n";
        let group = group_samples(text, "check", "a");
        assert_eq!(group.lines().count(), 2, "{group}");
        // A failed check keeps the group's verdict, under the definition's labels only.
        let out = RunMetrics::new("check", "a").render(
            9.0,
            Duration::ZERO,
            2,
            &Previous::default(),
            Some(&group),
        );
        assert!(
            out.contains("eden_reconcile_consistent{database=\"a\"} 0\n"),
            "{out}"
        );
        assert!(!out.contains("push_time_seconds"));
    }

    #[test]
    fn concurrent_updates_of_one_file_keep_every_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.prom");
        std::thread::scope(|s| {
            for i in 0..8 {
                let path = &path;
                s.spawn(move || {
                    let m = RunMetrics::new("check", &format!("db{i}"));
                    update_file(path, |old| {
                        // Widen the window between read and write.
                        std::thread::sleep(Duration::from_millis(5));
                        m.render(1.0, Duration::ZERO, 0, &Previous::default(), old)
                    })
                    .unwrap();
                });
            }
        });
        let text = std::fs::read_to_string(&path).unwrap();
        for i in 0..8 {
            assert_eq!(
                previous_value(&text, RUN_EXIT_CODE, "check", &format!("db{i}")),
                Some(0.0),
                "{text}"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "lock or temp file left"
        );
    }

    #[test]
    fn urls() {
        let u = PushUrl::parse("http://user:pw@pgw.monitoring:9091/base/").unwrap();
        assert_eq!(u.to_string(), "http://pgw.monitoring:9091/base");
        assert_eq!(
            u.group_path("eden_vault", "check"),
            "/base/metrics/job/eden_reconcile/database/eden_vault/command/check"
        );
        assert_eq!(PushUrl::parse("http://pgw").unwrap().port, 80);
        assert!(PushUrl::parse("https://pgw").is_err());
        assert!(PushUrl::parse("pgw:9091").is_err());
        assert!(PushUrl::parse("http://pgw:x").is_err());
    }

    #[test]
    fn responses() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
        assert_eq!((s, b.as_str()), (200, "ok"));
        let (s, b) = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_str()), (200, "abcde"));
    }
}
