//! Reading the server log through SQL, in csvlog, jsonlog or stderr format.
//!
//! Only messages that may be replication conflicts are kept (their text holds
//! `CONFLICT: remote` or `conflict detected on relation`), with their detail and context.
//! Files are read in pieces with `pg_read_binary_file` (bytes, so a value cut in the middle
//! of a multi-byte character cannot make the read fail) and parsed as a stream.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use tokio_postgres::Client;

use super::LogError;
use crate::error::{Error, pg_message};

/// Bytes read per `pg_read_binary_file` call.
const PIECE: i64 = 4 << 20;

/// The server log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `log_destination = csvlog` (`.csv` files).
    Csv,
    /// `log_destination = jsonlog` (`.json` files, PostgreSQL 15+).
    Json,
    /// `log_destination = stderr` with the logging collector (`.log` or other files).
    Stderr,
}

impl LogFormat {
    /// The format's name in `log_destination`.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Csv => "csvlog",
            LogFormat::Json => "jsonlog",
            LogFormat::Stderr => "stderr",
        }
    }

    fn holds(self, file: &str) -> bool {
        match self {
            LogFormat::Csv => file.ends_with(".csv"),
            LogFormat::Json => file.ends_with(".json"),
            LogFormat::Stderr => !file.ends_with(".csv") && !file.ends_with(".json"),
        }
    }
}

/// One log message that may be a conflict.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogMessage {
    /// The log file (as listed by `pg_ls_logdir()`).
    pub file: String,
    /// The line of the file where the message starts (1-based).
    pub line: u64,
    /// The message's time as written in the log.
    pub time_text: Option<String>,
    /// The same, parsed.
    pub time: Option<DateTime<Utc>>,
    /// The process that wrote it.
    pub pid: Option<i64>,
    /// `LOG`, `WARNING`, `ERROR`, ...
    pub severity: String,
    /// The primary message.
    pub message: String,
    /// The `DETAIL` text.
    pub detail: Option<String>,
    /// The `CONTEXT` text.
    pub context: Option<String>,
}

impl LogMessage {
    /// The message's position, unique in the server's log history: the file, the line,
    /// and the time written on it (a file name can come back when the server reuses names
    /// such as `postgresql-Mon.log`).
    pub fn position(&self) -> String {
        match &self.time_text {
            Some(t) => format!("{}:{}@{}", self.file, self.line, t),
            None => format!("{}:{}", self.file, self.line),
        }
    }
}

fn may_be_conflict(text: &[u8]) -> bool {
    fn has(h: &[u8], n: &[u8]) -> bool {
        h.windows(n.len()).any(|w| w == n)
    }
    has(text, b"CONFLICT: remote ") || has(text, b"conflict detected on relation")
}

/// Finds the active log format and reads every log file of that format (last written at
/// or after `since`), returning the possible conflict messages and the files read.
pub(super) async fn read_messages(
    client: &Client,
    region: &str,
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<LogMessage>, Vec<String>), LogError> {
    let unreadable = |what: String| LogError::Unreadable(format!("region {region}: {what}"));
    let row = client
        .query_one(
            "SELECT current_setting('log_destination'), current_setting('logging_collector'), \
                    current_setting('log_directory')",
            &[],
        )
        .await
        .map_err(|e| Error::query(region, "reading the log settings", &e))?;
    let destination: String = row.get(0);
    let collector: String = row.get(1);
    let directory: String = row.get(2);
    let dests: Vec<String> = destination
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let format = if dests.iter().any(|d| d == "csvlog") {
        LogFormat::Csv
    } else if dests.iter().any(|d| d == "jsonlog") {
        LogFormat::Json
    } else if dests.iter().any(|d| d == "stderr") {
        LogFormat::Stderr
    } else {
        return Err(unreadable(format!(
            "the server log goes to '{destination}', which cannot be read through SQL; \
             add csvlog, jsonlog or stderr to log_destination (with logging_collector = on)"
        )));
    };
    if collector != "on" {
        return Err(unreadable(
            "logging_collector is off, so the server log cannot be read through SQL; \
             set logging_collector = on (and log_destination to csvlog, jsonlog or stderr)"
                .into(),
        ));
    }
    // The file the server writes now, to read it last even if its time equals another's.
    let current: Option<String> = client
        .query_one("SELECT pg_current_logfile($1)", &[&format.name()])
        .await
        .ok()
        .and_then(|r| r.get::<_, Option<String>>(0));
    let files = client
        .query(
            "SELECT name, size, modification FROM pg_ls_logdir() ORDER BY modification, name",
            &[],
        )
        .await
        .map_err(|e| {
            unreadable(format!(
                "cannot list the log directory ({}); the importing role needs pg_monitor or superuser",
                pg_message(&e)
            ))
        })?;
    let mut names: Vec<String> = files
        .iter()
        .filter(|r| {
            let m: DateTime<Utc> = r.get(2);
            since.is_none_or(|s| m >= s)
        })
        .map(|r| r.get::<_, String>(0))
        .filter(|n| format.holds(n))
        .collect();
    if let Some(cur) = current.as_deref().and_then(|c| c.rsplit('/').next()) {
        if let Some(i) = names.iter().position(|n| n == cur) {
            let n = names.remove(i);
            names.push(n);
        }
    }
    let mut out = Vec::new();
    for name in &names {
        let path = format!("{}/{}", directory.trim_end_matches('/'), name);
        let mut parser = Parser::new(format, name.clone());
        let mut offset: i64 = 0;
        loop {
            let piece: Vec<u8> = client
                .query_one(
                    "SELECT pg_read_binary_file($1, $2, $3, true)",
                    &[&path, &offset, &PIECE],
                )
                .await
                .map_err(|e| {
                    unreadable(format!(
                        "cannot read the log file {name} ({}); the importing role needs \
                         pg_read_server_files or superuser",
                        pg_message(&e)
                    ))
                })?
                .get::<_, Option<Vec<u8>>>(0)
                .unwrap_or_default();
            let n = piece.len() as i64;
            parser.feed(&piece, &mut out);
            if n < PIECE {
                break;
            }
            offset += n;
        }
        parser.finish(&mut out);
    }
    Ok((out, names))
}

/// A streaming parser of one log file.
struct Parser {
    format: LogFormat,
    file: String,
    /// Bytes of an incomplete record carried to the next piece.
    carry: Vec<u8>,
    /// Line number of the next byte of input (1-based).
    line: u64,
    /// Line number where `carry` starts.
    carry_line: u64,
    /// stderr: the message being assembled, with its line prefix.
    pending: Option<(LogMessage, String, Field)>,
}

#[derive(Clone, Copy, PartialEq)]
enum Field {
    Message,
    Detail,
    Context,
    Other,
}

impl Parser {
    fn new(format: LogFormat, file: String) -> Parser {
        Parser {
            format,
            file,
            carry: Vec::new(),
            line: 1,
            carry_line: 1,
            pending: None,
        }
    }

    fn feed(&mut self, bytes: &[u8], out: &mut Vec<LogMessage>) {
        let mut buf = std::mem::take(&mut self.carry);
        if buf.is_empty() {
            self.carry_line = self.line;
        }
        buf.extend_from_slice(bytes);
        let mut start = 0;
        let mut line = self.carry_line;
        let mut in_quotes = false;
        let mut newlines_in_record = 0;
        for i in 0..buf.len() {
            let b = buf[i];
            if self.format == LogFormat::Csv && b == b'"' {
                in_quotes = !in_quotes;
            }
            if b == b'\n' {
                if in_quotes {
                    newlines_in_record += 1;
                    continue;
                }
                self.record(&buf[start..i], line, out);
                line += newlines_in_record + 1;
                newlines_in_record = 0;
                start = i + 1;
            }
        }
        self.carry = buf[start..].to_vec();
        self.carry_line = line;
        self.line = line + newlines_in_record;
    }

    fn finish(&mut self, out: &mut Vec<LogMessage>) {
        if !self.carry.is_empty() {
            let rest = std::mem::take(&mut self.carry);
            self.record(&rest, self.carry_line, out);
        }
        if let Some((m, _, _)) = self.pending.take() {
            out.push(m);
        }
    }

    fn record(&mut self, raw: &[u8], line: u64, out: &mut Vec<LogMessage>) {
        match self.format {
            LogFormat::Csv => {
                if may_be_conflict(raw) {
                    if let Some(m) = self.csv(raw, line) {
                        out.push(m);
                    }
                }
            }
            LogFormat::Json => {
                if may_be_conflict(raw) {
                    if let Some(m) = self.json(raw, line) {
                        out.push(m);
                    }
                }
            }
            LogFormat::Stderr => self.stderr(raw, line, out),
        }
    }

    fn csv(&self, raw: &[u8], line: u64) -> Option<LogMessage> {
        let text = String::from_utf8_lossy(raw);
        let f = csv_fields(text.trim_end_matches('\r'));
        let get = |i: usize| f.get(i).filter(|s| !s.is_empty()).cloned();
        let time_text = get(0);
        Some(LogMessage {
            file: self.file.clone(),
            line,
            time: time_text.as_deref().and_then(parse_log_time),
            time_text,
            pid: get(3).and_then(|p| p.parse().ok()),
            severity: get(11)?,
            message: get(13)?,
            detail: get(14),
            context: get(18),
        })
    }

    fn json(&self, raw: &[u8], line: u64) -> Option<LogMessage> {
        let text = String::from_utf8_lossy(raw);
        let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let time_text = s("timestamp");
        Some(LogMessage {
            file: self.file.clone(),
            line,
            time: time_text.as_deref().and_then(parse_log_time),
            time_text,
            pid: v.get("pid").and_then(|p| p.as_i64()),
            severity: s("error_severity")?,
            message: s("message")?,
            detail: s("detail"),
            context: s("context"),
        })
    }

    /// stderr format: `<prefix><SEVERITY>:  <text>`, then `<prefix>DETAIL:  ...` and
    /// `<prefix>CONTEXT:  ...` lines of the same message; a line starting with a tab
    /// continues the previous one.
    fn stderr(&mut self, raw: &[u8], line: u64, out: &mut Vec<LogMessage>) {
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches('\r');
        if let Some(cont) = text.strip_prefix('\t') {
            if let Some((m, _, field)) = &mut self.pending {
                let slot = match field {
                    Field::Message => Some(&mut m.message),
                    Field::Detail => m.detail.as_mut(),
                    Field::Context => m.context.as_mut(),
                    Field::Other => None,
                };
                if let Some(s) = slot {
                    s.push('\n');
                    s.push_str(cont);
                }
            }
            return;
        }
        if let Some((m, prefix, field)) = &mut self.pending {
            // The lines of one message follow each other (the collector writes a message
            // whole); their prefix is the message's, except for a per-line counter (%l).
            let pid_tag = m.pid.map(|p| format!("[{p}]"));
            let rest = text.strip_prefix(prefix.as_str()).or_else(|| {
                let tag = pid_tag.as_deref()?;
                let (before, _) = text.split_once(": ")?;
                let cut = before.rfind(' ').map(|i| i + 1).unwrap_or(0);
                text[..cut].contains(tag).then(|| &text[cut..])
            });
            if let Some(rest) = rest {
                for (label, f) in [
                    ("DETAIL:  ", Field::Detail),
                    ("CONTEXT:  ", Field::Context),
                    ("HINT:  ", Field::Other),
                    ("STATEMENT:  ", Field::Other),
                    ("LOCATION:  ", Field::Other),
                ] {
                    if let Some(v) = rest.strip_prefix(label) {
                        match f {
                            Field::Detail => m.detail = Some(v.to_string()),
                            Field::Context => m.context = Some(v.to_string()),
                            _ => {}
                        }
                        *field = f;
                        return;
                    }
                }
            }
            if let Some((m, _, _)) = self.pending.take() {
                out.push(m);
            }
        }
        if !may_be_conflict(text.as_bytes()) {
            return;
        }
        for sev in [
            "LOG", "WARNING", "ERROR", "NOTICE", "INFO", "DEBUG1", "DEBUG2", "DEBUG3", "DEBUG4",
            "DEBUG5", "FATAL",
        ] {
            let label = format!("{sev}:  ");
            let Some(pos) = text.find(&label) else {
                continue;
            };
            let prefix = &text[..pos];
            let message = &text[pos + label.len()..];
            if !(message.starts_with("CONFLICT: remote ")
                || message.starts_with("conflict detected on relation"))
            {
                continue;
            }
            let (time_text, time) = prefix_time(prefix);
            let pid = prefix.split_once('[').and_then(|(_, r)| {
                r.split_once(']')
                    .and_then(|(p, _)| p.trim().parse::<i64>().ok())
            });
            let m = LogMessage {
                file: self.file.clone(),
                line,
                time_text,
                time,
                pid,
                severity: sev.to_string(),
                message: message.to_string(),
                detail: None,
                context: None,
            };
            self.pending = Some((m, prefix.to_string(), Field::Message));
            return;
        }
    }
}

/// The time at the start of a stderr line prefix (`%m` or `%t`), if there is one.
fn prefix_time(prefix: &str) -> (Option<String>, Option<DateTime<Utc>>) {
    let words: Vec<&str> = prefix.split_whitespace().collect();
    for n in [3, 2] {
        if words.len() >= n {
            let t = words[..n].join(" ");
            if let Some(parsed) = parse_log_time(&t) {
                return (Some(t), Some(parsed));
            }
        }
    }
    (None, None)
}

/// `2026-12-02 03:50:01.123 UTC`, `... GMT`, `... +01`, `... +0530`, `... -03:00`.
pub(super) fn parse_log_time(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    let (dt, zone) = match t.rsplit_once(' ') {
        Some((a, z)) if !z.contains(':') || z.starts_with(['+', '-']) => (a, Some(z)),
        _ => (t, None),
    };
    let naive = NaiveDateTime::parse_from_str(dt, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let offset_secs = match zone {
        None | Some("UTC") | Some("GMT") | Some("Z") | Some("Etc/UTC") => 0,
        Some(z) if z.starts_with(['+', '-']) => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let digits: String = z[1..].chars().filter(|c| c.is_ascii_digit()).collect();
            let (h, m) = match digits.len() {
                1 | 2 => (digits.parse::<i32>().ok()?, 0),
                4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
                _ => return None,
            };
            sign * (h * 3600 + m * 60)
        }
        Some(_) => return None,
    };
    let off = FixedOffset::east_opt(offset_secs)?;
    off.from_local_datetime(&naive)
        .single()
        .map(|d| d.with_timezone(&Utc))
}

/// The fields of one CSV record (`"` quoting, `""` escapes).
fn csv_fields(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' {
            quoted = true;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(format: LogFormat, text: &str, pieces: usize) -> Vec<LogMessage> {
        let mut p = Parser::new(format, "f".into());
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let step = bytes.len().div_ceil(pieces).max(1);
        for chunk in bytes.chunks(step) {
            p.feed(chunk, &mut out);
        }
        p.finish(&mut out);
        out
    }

    #[test]
    fn csv_records_with_newlines_across_pieces() {
        let text = "2026-12-02 03:50:00.000 UTC,,,1,,a.1,1,,2026-12-02 03:49:00 UTC,,0,LOG,00000,\"checkpoint\nstarting\",,,,,,,,,\"\",\"checkpointer\",,0\n\
2026-12-02 03:50:01.123 UTC,,,4242,,a.2,2,,2026-12-02 03:49:00 UTC,3/4,751,LOG,23000,\"CONFLICT: remote UPDATE on relation public.t (local index t_pkey). Resolution: apply_remote.\",\"existing local tuple {id[int4]:1 v[text]:say \"\"hi\"\"} xid=1,origin=0,timestamp=x; remote tuple {id[int4]:1 v[text]:b} in xact origin=1,timestamp=y,commit_lsn=0/5\",,,,,,,,\"\",\"pglogical apply\",,0\n";
        for pieces in [1, 3, 17, 200] {
            let out = parse(LogFormat::Csv, text, pieces);
            assert_eq!(out.len(), 1, "{pieces}");
            let m = &out[0];
            assert_eq!(m.line, 3);
            assert_eq!(m.pid, Some(4242));
            assert_eq!(m.severity, "LOG");
            assert!(m.detail.as_deref().unwrap().contains("v[text]:say \"hi\"}"));
            assert_eq!(
                m.time.unwrap().to_rfc3339(),
                "2026-12-02T03:50:01.123+00:00"
            );
            assert_eq!(m.position(), "f:3@2026-12-02 03:50:01.123 UTC");
        }
    }

    #[test]
    fn stderr_messages_with_detail_and_continuations() {
        let text = "2026-12-02 03:50:00.000 UTC [10] LOG:  checkpoint starting: time\n\
2026-12-02 03:50:01.500 UTC [4242] LOG:  CONFLICT: remote UPDATE on relation public.t (local index t_pkey). Resolution: apply_remote.\n\
2026-12-02 03:50:01.500 UTC [4242] DETAIL:  existing local tuple {id[int4]:1 v[text]:two\n\
\tlines} xid=1,origin=0,timestamp=x; remote tuple {id[int4]:1 v[text]:b} in xact origin=1,timestamp=y,commit_lsn=0/5\n\
2026-12-02 03:50:02.000 UTC [10] LOG:  checkpoint complete\n";
        for pieces in [1, 5, 300] {
            let out = parse(LogFormat::Stderr, text, pieces);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].line, 2);
            assert_eq!(out[0].pid, Some(4242));
            assert!(out[0].detail.as_deref().unwrap().contains("two\nlines}"));
        }
    }

    #[test]
    fn stderr_prefix_with_line_numbers() {
        let text = "2026-12-02 03:50:01.500 UTC [4242] 7 LOG:  CONFLICT: remote INSERT on relation public.t (local index t_pkey). Resolution: apply_remote.\n\
2026-12-02 03:50:01.500 UTC [4242] 8 DETAIL:  existing local tuple {id[int4]:1} xid=1,origin=0,timestamp=; remote tuple {id[int4]:1} in xact origin=1,timestamp=y,commit_lsn=0/5\n\
2026-12-02 03:50:01.600 UTC [99] 1 LOG:  something else\n";
        let out = parse(LogFormat::Stderr, text, 2);
        assert_eq!(out.len(), 1);
        assert!(
            out[0]
                .detail
                .as_deref()
                .unwrap()
                .starts_with("existing local tuple")
        );
    }

    #[test]
    fn json_records() {
        let text = "{\"timestamp\":\"2026-12-02 03:50:01.123 UTC\",\"pid\":7,\"error_severity\":\"LOG\",\"message\":\"CONFLICT: remote INSERT on relation public.t (local index t_pkey). Resolution: apply_remote.\",\"detail\":\"existing local tuple {id[int4]:1} xid=1,origin=0,timestamp=; remote tuple {id[int4]:1} in xact origin=1,timestamp=y,commit_lsn=0/5\"}\n";
        let out = parse(LogFormat::Json, text, 4);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].pid, Some(7));
    }

    #[test]
    fn log_times() {
        let t = parse_log_time("2026-12-02 05:50:01.5 +02").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-12-02T03:50:01.500+00:00");
        assert!(parse_log_time("2026-12-02 05:50:01 CET").is_none());
        assert_eq!(
            parse_log_time("2026-12-02 03:50:01 UTC")
                .unwrap()
                .to_rfc3339(),
            "2026-12-02T03:50:01+00:00"
        );
    }
}
