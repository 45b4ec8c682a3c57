//! Pushing a run's metrics to a Pushgateway, and reading its exposition back, over plain
//! HTTP/1.1.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};

/// A Pushgateway address: `http://[user:password@]host[:port][/prefix]`.
#[derive(Clone)]
pub struct PushUrl {
    host: String,
    pub(super) port: u16,
    prefix: String,
    auth: Option<String>,
}

impl std::fmt::Debug for PushUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for PushUrl {
    /// The address without credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.prefix)
    }
}

impl PushUrl {
    /// Parses a Pushgateway URL (plain `http://`; put a TLS-terminating proxy or sidecar in
    /// front for anything else).
    pub fn parse(url: &str) -> std::result::Result<PushUrl, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                "--metrics-push: https is not supported; push to the Pushgateway over http (inside the cluster) or through a TLS proxy".to_string()
            } else {
                "--metrics-push: the Pushgateway URL must start with http://, e.g. http://pushgateway:9091".to_string()
            }
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (auth, hostport) = match authority.rfind('@') {
            Some(i) => (
                Some(base64(&authority.as_bytes()[..i])),
                &authority[i + 1..],
            ),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>().map_err(|_| {
                    format!("--metrics-push: invalid port \"{p}\" in the Pushgateway URL")
                })?,
            ),
            _ => (hostport, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("--metrics-push: the Pushgateway URL has no host".into());
        }
        Ok(PushUrl {
            host: host.to_string(),
            port,
            prefix: path.to_string(),
            auth,
        })
    }

    /// The group path of a run: `/metrics/job/eden_reconcile/database/NAME/command/CMD`
    /// (values that are not plain words are sent base64-encoded, as the Pushgateway asks).
    pub fn group_path(&self, database: &str, command: &str) -> String {
        format!(
            "{}/metrics/job/eden_reconcile/{}/{}",
            self.prefix,
            path_label("database", database),
            path_label("command", command)
        )
    }

    /// Sends one HTTP/1.1 request and returns the status code and body.
    async fn request(&self, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
        let fail = |m: String| Error::Io {
            path: self.to_string(),
            message: m,
        };
        let addr = format!("{}:{}", self.host, self.port);
        let mut stream = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(&addr))
            .await
            .map_err(|_| fail(format!("no answer within {}s", TIMEOUT.as_secs())))?
            .map_err(|e| fail(format!("cannot connect to the Pushgateway: {e}")))?;
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: eden-reconcile\r\nConnection: close\r\nAccept-Encoding: identity\r\n"
        );
        if let Some(a) = &self.auth {
            req.push_str(&format!("Authorization: Basic {a}\r\n"));
        }
        if method != "GET" {
            req.push_str(&format!(
                "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        req.push_str("\r\n");
        req.push_str(body);
        let exchange = async {
            stream.write_all(req.as_bytes()).await?;
            let mut buf = Vec::new();
            stream.read_to_end(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let raw = tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| fail(format!("no answer within {}s", TIMEOUT.as_secs())))?
            .map_err(|e| fail(format!("the Pushgateway connection failed: {e}")))?;
        parse_response(&raw).ok_or_else(|| fail("the Pushgateway's answer is not HTTP".into()))
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn path_label(name: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if plain {
        format!("{name}/{value}")
    } else {
        let b = base64(value.as_bytes()).replace('+', "-").replace('/', "_");
        format!(
            "{name}@base64/{}",
            if b.is_empty() { "=".into() } else { b }
        )
    }
}

/// Status code and body (chunked transfer decoded) of a raw HTTP/1.1 response.
pub(super) fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = &raw[head_end + 4..];
    let bytes = if chunked {
        let mut out = Vec::new();
        loop {
            let line_end = body.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            body = &body[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(body.get(..size)?);
            body = body.get(size + 2..).unwrap_or(&[]);
        }
        out
    } else {
        body.to_vec()
    };
    Some((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// Replaces the run's group in the Pushgateway (`PUT`) with `text`.
pub async fn push(url: &PushUrl, database: &str, command: &str, text: &str) -> Result<()> {
    let path = url.group_path(database, command);
    let (status, body) = url.request("PUT", &path, text).await?;
    if !(200..300).contains(&status) {
        return Err(Error::Io {
            path: url.to_string(),
            message: format!(
                "the Pushgateway refused the metrics (HTTP {status}): {}",
                body.lines().next().unwrap_or("").trim()
            ),
        });
    }
    Ok(())
}

/// The Pushgateway's whole exposition (`GET /metrics`), e.g. to read back the previous
/// run's values.
pub async fn fetch(url: &PushUrl) -> Result<String> {
    let (status, body) = url
        .request("GET", &format!("{}/metrics", url.prefix), "")
        .await?;
    if status != 200 {
        return Err(Error::Io {
            path: url.to_string(),
            message: format!("reading the Pushgateway's metrics gave HTTP {status}"),
        });
    }
    Ok(body)
}

/// Standard base64 with padding.
pub(super) fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
