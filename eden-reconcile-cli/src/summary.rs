//! The one line each run ends with on stderr, for cron logs: logfmt (`key=value`, values
//! with spaces or quotes quoted), e.g.
//!
//! ```text
//! level=info msg="run finished" command=check database=eden_vault duration_seconds=1.204 tables=3 differences=2 actions=0 exit_code=1
//! ```

use std::fmt::Write as _;
use std::time::Duration;

/// What a run did, filled in by the command as it learns it.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// The subcommand (`check`, `fix`, ...).
    pub command: &'static str,
    /// The database worked on.
    pub database: Option<String>,
    /// Tables covered.
    pub tables: Option<usize>,
    /// Differences found (confirmed, not in flight).
    pub differences: Option<u64>,
    /// Actions planned (fix) or restores (undo).
    pub actions: Option<usize>,
    /// Rows written.
    pub applied: Option<usize>,
    /// Records listed (conflicts).
    pub records: Option<usize>,
}

impl Summary {
    /// A summary for `command` on `database`.
    pub fn new(command: &'static str, database: Option<String>) -> Summary {
        Summary {
            command,
            database,
            ..Summary::default()
        }
    }

    /// The logfmt line.
    pub fn line(&self, duration: Duration, exit_code: u8) -> String {
        let mut s = String::from("level=info msg=\"run finished\"");
        let mut kv = |k: &str, v: String| {
            let _ = write!(s, " {k}={}", logfmt_value(&v));
        };
        kv("command", self.command.to_string());
        if let Some(d) = &self.database {
            kv("database", d.clone());
        }
        kv("duration_seconds", format!("{:.3}", duration.as_secs_f64()));
        for (k, v) in [
            ("tables", self.tables),
            ("differences", self.differences.map(|d| d as usize)),
            ("actions", self.actions),
            ("applied", self.applied),
            ("records", self.records),
        ] {
            if let Some(v) = v {
                kv(k, v.to_string());
            }
        }
        kv("exit_code", exit_code.to_string());
        s
    }
}

/// A logfmt value: bare when it is one plain word, else double-quoted with `\` escapes.
fn logfmt_value(v: &str) -> String {
    let plain = !v.is_empty()
        && v.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if plain {
        return v.to_string();
    }
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_line() {
        let mut s = Summary::new("check", Some("my db".into()));
        s.tables = Some(3);
        s.differences = Some(2);
        s.actions = Some(0);
        assert_eq!(
            s.line(Duration::from_millis(1204), 1),
            "level=info msg=\"run finished\" command=check database=\"my db\" duration_seconds=1.204 tables=3 differences=2 actions=0 exit_code=1"
        );
    }
}
