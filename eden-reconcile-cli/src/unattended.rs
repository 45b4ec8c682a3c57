//! What unattended runs need around every command: the per-database run lock and the
//! metrics written (`--metrics-file`) or pushed (`--metrics-push`) when the run ends.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use eden_consistency::Region;
use eden_consistency::lock::{self, DbLock};
use eden_consistency::metrics::{self, Previous, PushUrl, RunMetrics};

use crate::cli::{Cli, Command, GlobalOpts};

/// The subcommand's name, as in the metrics' `command` label.
pub fn command_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::Check(_) => "check",
        Command::Conflicts(_) => "conflicts",
        Command::Fix(_) => "fix",
        Command::Init(_) => "init",
        Command::Status(_) => "status",
        Command::Undo(_) => "undo",
        Command::ValidateConfig(_) => "validate-config",
        Command::Completions(_) => "completions",
        Command::Man(_) => "man",
        Command::MergeReports(_) => "merge-reports",
    }
}

/// `--db` of the subcommand, if given.
pub fn database(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::Check(a) => a.db.db.as_deref(),
        Command::Conflicts(a) => a.db.db.as_deref(),
        Command::Fix(a) => a.db.db.as_deref(),
        Command::Init(a) => a.db.db.as_deref(),
        Command::Status(a) => a.db.as_deref(),
        Command::Undo(a) => a.db.db.as_deref(),
        Command::ValidateConfig(a) => a.db.db.as_deref(),
        Command::Completions(_) | Command::Man(_) | Command::MergeReports(_) => None,
    }
}

/// The empty metrics record of the run `cli` asks for.
pub fn start(cli: &Cli) -> RunMetrics {
    RunMetrics::new(
        command_name(&cli.command),
        database(&cli.command).unwrap_or(""),
    )
}

/// Takes the run lock in the first region (config order) for `command`, waiting up to
/// `--wait-lock` when given.
pub async fn take_lock(global: &GlobalOpts, regions: &[Region], command: &str) -> Result<DbLock> {
    let wait = match &global.wait_lock {
        Some(text) => {
            Some(lock::parse_duration(text).map_err(|m| anyhow::anyhow!("--wait-lock: {m}"))?)
        }
        None => None,
    };
    let first = regions
        .first()
        .ok_or_else(|| anyhow::anyhow!("no region to hold the run lock in"))?;
    Ok(lock::acquire(first, command, wait).await?)
}

/// Runs `work` to its end, or until the process is asked to stop (SIGTERM, e.g. from
/// Kubernetes at a Job's deadline, or SIGINT): then the work is dropped (a transaction not
/// yet committed is rolled back by its server, the run lock goes with its session) and the
/// run ends as an error, so that its metrics are still written.
pub async fn until_stopped<T>(work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return work.await;
    };
    let stopped = |by: &str| {
        anyhow::anyhow!(
            "stopped by {by} before the end; changes not yet committed are rolled back, nothing is lost, and the next run takes over"
        )
    };
    tokio::select! {
        r = work => r,
        _ = term.recv() => Err(stopped("SIGTERM")),
        _ = int.recv() => Err(stopped("SIGINT")),
    }
}

/// Where the metrics go.
pub struct Delivery {
    file: Option<std::path::PathBuf>,
    push: Option<String>,
    started: Instant,
}

impl Delivery {
    /// From the global options; the clock starts now.
    pub fn new(global: &GlobalOpts) -> Delivery {
        Delivery {
            file: global.metrics_file.clone(),
            push: global.metrics_push.clone(),
            started: Instant::now(),
        }
    }

    /// Writes and pushes the run's metrics. Returns the error sentence when they could not
    /// be delivered.
    pub async fn deliver(&self, m: &RunMetrics, exit_code: i32) -> Option<String> {
        if self.file.is_none() && self.push.is_none() {
            return None;
        }
        let duration = self.started.elapsed();
        let ended = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64();
        let ended = (ended * 1000.0).round() / 1000.0;
        let mut errors = Vec::new();
        let old_file = self
            .file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok());
        let mut previous = match &old_file {
            Some(text) => Previous::from_text(text, &m.command, &m.database),
            None => Previous::default(),
        };
        let push = match self.push.as_deref().map(PushUrl::parse) {
            Some(Ok(u)) => Some(u),
            Some(Err(e)) => {
                errors.push(e);
                None
            }
            None => None,
        };
        let mut old_group = None;
        if let Some(url) = &push {
            if let Ok(text) = metrics::fetch(url).await {
                previous = previous.or(Previous::from_text(&text, &m.command, &m.database));
                old_group = Some(metrics::group_samples(&text, &m.command, &m.database));
            }
        }
        if let Some(f) = &self.file {
            // Read again under the file's lock: another run (status every few minutes) may
            // have written it meanwhile; its series stay.
            let gateway = previous;
            let updated = metrics::update_file(f, |old| {
                let previous = match old {
                    Some(text) => Previous::from_text(text, &m.command, &m.database).or(gateway),
                    None => gateway,
                };
                m.render(ended, duration, exit_code, &previous, old)
            });
            if let Err(e) = updated {
                errors.push(e.to_string());
            }
        }
        // The Pushgateway keeps one group per database and command: this run's, plus what
        // the group held that this run did not replace (a failed run keeps the verdict).
        let text = m.render(ended, duration, exit_code, &previous, old_group.as_deref());
        if let Some(url) = &push {
            if let Err(e) = metrics::push(url, &m.database, &m.command, &text).await {
                errors.push(format!("--metrics-push: {e}"));
            }
        }
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}
