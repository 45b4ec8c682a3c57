//! `postgres://` and `postgresql://` URLs.

use super::*;

impl ConnParams {
    /// Parses `postgres[ql]://[user[:password]@][host][:port][/dbname][?key=value&...]`
    /// with percent-decoding and `[v6]` addresses, like libpq.
    pub fn parse_url(url: &str) -> Result<ConnParams, String> {
        let rest = url
            .strip_prefix("postgresql://")
            .or_else(|| url.strip_prefix("postgres://"))
            .ok_or("the connection URL must start with postgres:// or postgresql://")?;
        let mut p = ConnParams::default();
        // Text that may hold a password (user info, a password parameter) is never echoed.
        let hide = url.contains('@') || url.contains("password");
        // Split off the query string, then the path (database).
        let (before_query, query) = match rest.find('?') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        // The user info ends at the last '@' before the path.
        let authority_end = before_query.find('/').unwrap_or(before_query.len());
        let (authority, path) = (
            &before_query[..authority_end],
            &before_query[authority_end..],
        );
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        if let Some(ui) = userinfo {
            let (u, pw) = match ui.find(':') {
                Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                None => (ui, None),
            };
            if !u.is_empty() {
                p.user = Some(percent_decode(u, "user name")?);
            }
            if let Some(pw) = pw {
                // Never show the password's text in an error.
                let pw = percent_decode(pw, "password").map_err(|_| {
                    "the password in the connection URL has an invalid %-escape".to_string()
                })?;
                if !pw.is_empty() {
                    p.password = Some(pw);
                }
            }
        }
        if hostport.contains(',') {
            return Err(
                "several hosts in one connection URL are not supported; give one host per region"
                    .into(),
            );
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let close = v6
                .find(']')
                .ok_or("an IPv6 address in the connection URL lacks its closing ']'")?;
            let host = &v6[..close];
            let after = &v6[close + 1..];
            let port = if after.is_empty() {
                None
            } else if let Some(port) = after.strip_prefix(':') {
                Some(port)
            } else {
                return Err("unexpected text after the IPv6 address in the connection URL".into());
            };
            (host.to_string(), port)
        } else {
            match hostport.rfind(':') {
                Some(c) => (
                    percent_decode(&hostport[..c], "host")?,
                    Some(&hostport[c + 1..]),
                ),
                None => (percent_decode(hostport, "host")?, None),
            }
        };
        if !host.is_empty() {
            p.host = Some(host);
        }
        if let Some(port) = port {
            if !port.is_empty() {
                p.port = Some(parse_port(&percent_decode(port, "port")?)?);
            }
        }
        if let Some(db) = path.strip_prefix('/') {
            if !db.is_empty() {
                p.dbname = Some(percent_decode(db, "database name")?);
            }
        }
        if let Some(q) = query {
            for pair in q.split('&').filter(|s| !s.is_empty()) {
                let (k, v) = match pair.find('=') {
                    Some(e) => (&pair[..e], &pair[e + 1..]),
                    None => {
                        return Err(format!(
                            "connection URL parameter {} lacks \"=value\"",
                            shown_key(pair, hide)
                        ));
                    }
                };
                let key = percent_decode(k, "parameter name")?;
                if hide && !is_listed_key(&key) {
                    return Err(format!(
                        "invalid connection option {}",
                        shown_key(&key, hide)
                    ));
                }
                let value = if key == "password" {
                    percent_decode(v, "password").map_err(|_| {
                        "the password parameter of the connection URL has an invalid %-escape"
                            .to_string()
                    })?
                } else {
                    percent_decode(v, &key)?
                };
                // JDBC's ssl=true, accepted by libpq too.
                if key == "ssl" {
                    if value == "true" {
                        p.sslmode = Some(SslMode::Require);
                        continue;
                    }
                    return Err(
                        "invalid ssl value in the connection URL (only ssl=true is understood)"
                            .into(),
                    );
                }
                p.set(&key, value)?;
            }
        }
        Ok(p)
    }
}

/// `postgres:/...`, `postgres//...`, `postgresql:...`, `postgres:...`: a URL whose `://`
/// was mistyped (never parsed as key=value, whose errors might echo its pieces).
pub(super) fn looks_like_broken_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["postgresql", "postgres"].iter().any(|scheme| {
        lower
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('/'))
    })
}

/// Strict percent-decoding (an invalid `%` escape is an error, as in libpq).
fn percent_decode(text: &str, what: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    return Err(format!(
                        "invalid %-escape in the {what} of the connection URL"
                    ));
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| format!("the {what} of the connection URL is not valid UTF-8 once %-decoded"))
}
