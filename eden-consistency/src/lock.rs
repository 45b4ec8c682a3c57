//! One writer per database: the lock that `fix`, `undo` and `check --record` hold for their
//! whole run, so that two overlapping runs (a slow nightly job and the next one, or an
//! operator's manual fix) never work on the same database at once.
//!
//! The lock is a session-level PostgreSQL advisory lock, taken on a session of its own in
//! the first region (in config order) of the database being worked on. It lives exactly as
//! long as that session: released when the run ends, and by the server when the process
//! dies, however it dies (its connection closes). The session's `application_name` carries
//! the holder's host and process id; with the session's start time from
//! `pg_stat_activity`, a refused run names who holds the lock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::connect::Region;

/// The advisory lock's two keys (`pg_advisory_lock(int4, int4)`): "eden" and "lock".
/// Advisory locks are per database, so one pair serves every database.
const KEY1: i32 = 0x6564_656e;
const KEY2: i32 = 0x6c6f_636b;

/// The prefix of the holding session's `application_name`.
pub const APP_PREFIX: &str = "eden-reconcile lock";

/// Who holds the lock, as read from the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    /// The holding command (`fix`, `undo`, `check`), when it says.
    pub command: Option<String>,
    /// The holder's host name, when it says (else the client address).
    pub host: Option<String>,
    /// The holder's process id, when it says.
    pub pid: Option<u32>,
    /// When the holding session started.
    pub started: Option<DateTime<Utc>>,
    /// The server process holding it (`pg_terminate_backend` target of last resort).
    pub backend_pid: i32,
    /// The holder's `application_name` as the server shows it.
    pub application_name: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.command {
            Some(c) => write!(f, "an eden-reconcile {c} run")?,
            None => write!(f, "a session")?,
        }
        if let Some(pid) = self.pid {
            write!(f, " (pid {pid}")?;
        } else {
            write!(f, " (application_name \"{}\"", self.application_name)?;
        }
        if let Some(h) = &self.host {
            write!(f, " on host {h}")?;
        }
        if let Some(s) = &self.started {
            write!(f, ", started {}", s.format("%Y-%m-%dT%H:%M:%SZ"))?;
        }
        write!(f, ", server pid {})", self.backend_pid)
    }
}

/// A held lock; released when dropped (its session closes) or by [`DbLock::release`].
pub struct DbLock {
    client: Client,
    region: String,
    database: String,
}

impl std::fmt::Debug for DbLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbLock")
            .field("region", &self.region)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl DbLock {
    /// The region holding the lock.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Releases the lock now (dropping it does the same when the session closes).
    pub async fn release(self) -> Result<()> {
        self.client
            .execute("SELECT pg_advisory_unlock($1, $2)", &[&KEY1, &KEY2])
            .await
            .map_err(|e| Error::query(&self.region, "releasing the run lock", &e))?;
        Ok(())
    }
}

/// The `application_name` of the lock's session for `command`: holder host and pid (a
/// server keeps at most 63 bytes of it, so a long host name is cut).
pub fn application_name(command: &str) -> String {
    let host = whoami::hostname().unwrap_or_else(|_| "unknown".into());
    let text = format!(
        "{APP_PREFIX} {command} pid={} host={host}",
        std::process::id()
    );
    let mut end = text.len().min(63);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Parses what [`application_name`] wrote.
fn parse_holder(app: &str) -> (Option<String>, Option<u32>, Option<String>) {
    let Some(rest) = app.strip_prefix(APP_PREFIX) else {
        return (None, None, None);
    };
    let mut command = None;
    let mut pid = None;
    let mut host = None;
    for word in rest.split_whitespace() {
        if let Some(p) = word.strip_prefix("pid=") {
            pid = p.parse().ok();
        } else if let Some(h) = word.strip_prefix("host=") {
            host = Some(h.to_string());
        } else if command.is_none() {
            command = Some(word.to_string());
        }
    }
    (command, pid, host)
}

/// Takes the lock of `region`'s database for `command`, on a new session of its own. When
/// another run holds it: with `wait` `None`, fails at once naming the holder; otherwise
/// tries again every half second for up to `wait`, then fails the same way.
pub async fn acquire(region: &Region, command: &str, wait: Option<Duration>) -> Result<DbLock> {
    let client = region.open_another().await?;
    let fail = |e: &tokio_postgres::Error| Error::query(&region.name, "taking the run lock", e);
    client
        .execute(
            "SELECT set_config('application_name', $1, false)",
            &[&application_name(command)],
        )
        .await
        .map_err(|e| fail(&e))?;
    let started = std::time::Instant::now();
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1, $2)", &[&KEY1, &KEY2])
            .await
            .map_err(|e| fail(&e))?
            .get(0);
        if got {
            tracing::info!(region = %region.name, database = %region.dbname, "run lock taken");
            return Ok(DbLock {
                client,
                region: region.name.clone(),
                database: region.dbname.clone(),
            });
        }
        let elapsed = started.elapsed();
        match wait {
            Some(w) if elapsed < w => {
                tokio::time::sleep(Duration::from_millis(500).min(w - elapsed)).await;
            }
            _ => {
                let holder = holder(&client).await.map_err(|e| fail(&e))?;
                let who = holder
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "another session (which has just finished)".into());
                let waited = match wait {
                    Some(w) => format!(
                        "; still held after waiting {}",
                        crate::lock::format_duration(w)
                    ),
                    None => "; wait for it to finish, or pass --wait-lock DURATION (e.g. --wait-lock 5m) to wait".into(),
                };
                return Err(Error::Usage(format!(
                    "database {} is locked by {who} in region {}{waited}",
                    region.dbname, region.name
                )));
            }
        }
    }
}

/// The session holding the lock in this database, if any.
pub async fn holder(client: &Client) -> std::result::Result<Option<Holder>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), a.backend_start, \
                    coalesce(a.client_hostname, host(a.client_addr)) \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND l.classid = ($1::int8 & 4294967295)::oid AND l.objid = ($2::int8 & 4294967295)::oid \
               AND l.objsubid = 2 \
             LIMIT 1",
            &[&(KEY1 as i64), &(KEY2 as i64)],
        )
        .await?;
    Ok(row.map(|r| {
        let app: String = r.get(1);
        let (command, pid, host) = parse_holder(&app);
        Holder {
            command,
            host: host.or_else(|| r.get(3)),
            pid,
            started: r.get(2),
            backend_pid: r.get(0),
            application_name: app,
        }
    }))
}

/// Parses `--wait-lock`: a number with a unit `ms`, `s`, `m` or `h` (a bare number is
/// seconds), or several run together (`1m30s`).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let bad = || {
        format!("invalid duration \"{text}\": use a number with a unit, e.g. 60s, 5m, 1h or 1m30s")
    };
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(n) = t.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let ms_per = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        total += Duration::from_millis(n.checked_mul(ms_per).ok_or_else(bad)?);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `90s` → `1m30s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if d.subsec_millis() != 0 && s < 60 {
        return format!("{}ms", d.as_millis());
    }
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60s").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        for bad in ["", "m", "5x", "-5s", "5 m", "s5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(300)), "5m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn holder_names() {
        let app = application_name("fix");
        assert!(app.len() <= 63);
        let (c, pid, host) = parse_holder(&app);
        assert_eq!(c.as_deref(), Some("fix"));
        assert_eq!(pid, Some(std::process::id()));
        assert!(host.is_some());
        assert_eq!(parse_holder("psql"), (None, None, None));
    }
}
