//! The textfile collector's file: reading a previous run's values back, and replacing the
//! file atomically under a lock.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::{INCONSISTENT_RUNS, LAST_SUCCESS};
use crate::error::{Error, Result};

/// Values a run carries forward from the previous run of the same command.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Previous {
    /// The previous `eden_reconcile_last_success_timestamp_seconds`.
    pub last_success: Option<f64>,
    /// The previous `eden_reconcile_inconsistent_runs`.
    pub inconsistent_runs: Option<f64>,
}

impl Previous {
    /// Reads both from exposition text (a previous file, or a Pushgateway's `/metrics`).
    pub fn from_text(text: &str, command: &str, database: &str) -> Previous {
        Previous {
            last_success: previous_value(text, LAST_SUCCESS, command, database),
            inconsistent_runs: previous_value(text, INCONSISTENT_RUNS, command, database),
        }
    }

    /// Fills what `self` lacks from `other`.
    pub fn or(self, other: Previous) -> Previous {
        Previous {
            last_success: self.last_success.or(other.last_success),
            inconsistent_runs: self.inconsistent_runs.or(other.inconsistent_runs),
        }
    }
}

/// The labels of one exposition line `name{a="b",...} value`, and its value.
pub(super) fn parse_line(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 1);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    // A quoted value with escapes.
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return None;
                    }
                    let mut val = String::new();
                    loop {
                        match chars.next()? {
                            (_, '\\') => match chars.next()?.1 {
                                'n' => val.push('\n'),
                                other => val.push(other),
                            },
                            (_, '"') => break,
                            (_, c) => val.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), val);
                }
                c => key.push(c),
            }
        }
        rest = &r[end?..];
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// The value of `name{command=..., database=...}` in exposition `text`, if present.
pub fn previous_value(text: &str, name: &str, command: &str, database: &str) -> Option<f64> {
    text.lines()
        .filter_map(parse_line)
        .find_map(|(n, labels, v)| {
            (n == name
                && labels.get("command").map(String::as_str) == Some(command)
                && labels.get("database").map(String::as_str) == Some(database))
            .then_some(v)
        })
}

/// The lines of a Pushgateway's exposition that belong to the group of `command` on
/// `database` (job `eden_reconcile`), to be carried into that group's next push.
pub fn group_samples(text: &str, command: &str, database: &str) -> String {
    text.lines()
        .filter(|l| {
            parse_line(l).is_some_and(|(_, labels, _)| {
                labels.get("job").map(String::as_str) == Some("eden_reconcile")
                    && labels.get("command").map(String::as_str) == Some(command)
                    && labels.get("database").map(String::as_str) == Some(database)
            })
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The previous file's values, if the file exists and can be read.
pub fn previous_from_file(path: &Path, command: &str, database: &str) -> Previous {
    match std::fs::read_to_string(path) {
        Ok(text) => Previous::from_text(&text, command, database),
        Err(_) => Previous::default(),
    }
}

/// Replaces the metrics file at `path` with what `render` makes of its current content
/// (`None` when there is none), atomically ([`write_file`]) and under a lock file
/// (`.<name>.lock` in the same folder, which the textfile collector ignores) so that two
/// runs finishing at once do not drop each other's series. A lock file left by a crashed
/// run is taken over after 30 seconds.
pub fn update_file(path: &Path, render: impl FnOnce(Option<&str>) -> String) -> Result<()> {
    let _lock = FileLock::take(path)?;
    let old = std::fs::read_to_string(path).ok();
    let text = render(old.as_deref());
    write_file(path, &text)
}

/// A lock file next to the metrics file, removed when dropped.
struct FileLock(std::path::PathBuf);

impl FileLock {
    fn take(path: &Path) -> Result<FileLock> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lock = path.with_file_name(format!(".{name}.lock"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => return Ok(FileLock(lock)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(&lock)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(30));
                    if stale || std::time::Instant::now() > deadline {
                        let _ = std::fs::remove_file(&lock);
                    } else {
                        std::thread::sleep(Duration::from_millis(25));
                    }
                }
                Err(e) => {
                    return Err(Error::Io {
                        path: path.display().to_string(),
                        message: format!("cannot write the metrics file: {e}"),
                    });
                }
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Writes `text` to `path` atomically: a temporary file in the same folder, flushed to
/// disk, then renamed over `path`.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        message: format!("cannot write the metrics file: {e}"),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::Io {
            path: path.display().to_string(),
            message: "the metrics file needs a file name".into(),
        })?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}
