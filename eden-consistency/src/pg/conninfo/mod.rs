//! Connection parameters with libpq's habits: URLs and `key=value` conninfo, the `PG*`
//! environment variables, `~/.pgpass` / `PGPASSFILE`.
//!
//! Precedence is libpq's: a value given explicitly (config file, conninfo, URL) wins over the
//! environment (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`,
//! `PGSSLROOTCERT`, `PGCONNECT_TIMEOUT`, `PGAPPNAME`), which wins over the defaults
//! (`localhost`, `5432`, the OS user name). When no password is known after that, the
//! password file (`PGPASSFILE`, else `~/.pgpass`) is searched, with libpq's format and rules.
//!
//! ```
//! use eden_consistency::{ConnParams, conninfo::MapEnv, SslMode};
//!
//! let p = ConnParams::parse("postgresql://app@db.example:6432/eden_vault?sslmode=verify-full").unwrap();
//! assert_eq!(p.port, Some(6432));
//! assert_eq!(p.sslmode, Some(SslMode::VerifyFull));
//!
//! let env = MapEnv::new().var("PGPASSWORD", "s3cret").os_user("alice");
//! let r = p.resolve_with(Some("other_db"), &env).unwrap();
//! assert_eq!(r.dbname, "eden_vault"); // the URL's database beats the caller's
//! assert_eq!(r.user, "app");
//! assert_eq!(r.password.as_deref(), Some("s3cret"));
//! ```
//!
//! Error messages never contain a password nor the connection string they came from.
//!
//! Inside, each form has a module: `url` and `keyvalue` parse, `env` completes the
//! parameters from the environment, `pgpass` reads the password file.

mod env;
mod keyvalue;
mod pgpass;
#[cfg(test)]
mod tests;
mod url;

pub use env::{Env, MapEnv, ProcessEnv};
pub use pgpass::{password_from_file, pgpass_lookup};
use url::looks_like_broken_url;

/// `sslmode`, as libpq spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, without verifying the certificate (libpq's `allow`
    /// is taken as `prefer`).
    #[default]
    Prefer,
    /// TLS required, certificate not verified (like libpq without a root certificate; with
    /// one, the chain is verified as for `verify-ca`).
    Require,
    /// TLS required, the chain verified against `sslrootcert`.
    VerifyCa,
    /// TLS required, chain and host name verified.
    VerifyFull,
}

impl SslMode {
    /// Parses libpq's spelling (`disable`, `allow`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`).
    pub fn parse(text: &str) -> Option<SslMode> {
        match text.trim() {
            "disable" => Some(SslMode::Disable),
            "allow" | "prefer" => Some(SslMode::Prefer),
            "require" => Some(SslMode::Require),
            "verify-ca" => Some(SslMode::VerifyCa),
            "verify-full" => Some(SslMode::VerifyFull),
            _ => None,
        }
    }

    /// libpq's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to connect to one region. `Debug` never shows the password.
#[derive(Clone, Default, PartialEq)]
pub struct ConnParams {
    /// Host name or address (or a Unix socket directory when it starts with `/`).
    pub host: Option<String>,
    /// `hostaddr`: a numeric IP address to connect to instead of resolving `host` (which
    /// is then still used for TLS host name verification and `.pgpass`).
    pub hostaddr: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// User name.
    pub user: Option<String>,
    /// Password (from the conninfo; `PGPASSWORD` and `.pgpass` are consulted at connect time).
    pub password: Option<String>,
    /// Database name given by the conninfo (overrides `--db`).
    pub dbname: Option<String>,
    /// `sslmode`.
    pub sslmode: Option<SslMode>,
    /// `sslrootcert`: PEM file of trusted roots (`system` for the built-in web roots).
    pub sslrootcert: Option<String>,
    /// `connect_timeout` in seconds (libpq: 0 waits forever, 1 counts as 2).
    pub connect_timeout: Option<u64>,
    /// `application_name`.
    pub application_name: Option<String>,
}

impl std::fmt::Debug for ConnParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnParams")
            .field("host", &self.host)
            .field("hostaddr", &self.hostaddr)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .finish()
    }
}

/// Where the password came from (for messages; never the password itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSource {
    /// The config file, URL or conninfo.
    Explicit,
    /// `PGPASSWORD`.
    Environment,
    /// The password file (`PGPASSFILE` or `~/.pgpass`).
    PassFile,
}

/// Parameters completed from the environment and defaults, ready to connect.
/// `Debug` never shows the password.
#[derive(Clone, PartialEq)]
pub struct ResolvedParams {
    /// Host name, address or socket directory.
    pub host: String,
    /// Numeric address to connect to instead of resolving `host`.
    pub hostaddr: Option<String>,
    /// Port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password, if any was found.
    pub password: Option<String>,
    /// Where the password came from.
    pub password_source: Option<PasswordSource>,
    /// Database.
    pub dbname: String,
    /// TLS mode.
    pub sslmode: SslMode,
    /// Root certificates file (`system` for the built-in web roots), explicit or the
    /// default `~/.postgresql/root.crt` when that file exists.
    pub sslrootcert: Option<String>,
    /// True when `sslrootcert` was given (conninfo or `PGSSLROOTCERT`), not the default file.
    pub sslrootcert_explicit: bool,
    /// `connect_timeout` seconds when given (conninfo or `PGCONNECT_TIMEOUT`).
    pub connect_timeout: Option<u64>,
    /// `application_name` when given (conninfo or `PGAPPNAME`).
    pub application_name: Option<String>,
}

impl std::fmt::Debug for ResolvedParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedParams")
            .field("host", &self.host)
            .field("hostaddr", &self.hostaddr)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "********"))
            .field("password_source", &self.password_source)
            .field("dbname", &self.dbname)
            .field("sslmode", &self.sslmode)
            .field("sslrootcert", &self.sslrootcert)
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .finish()
    }
}

impl ResolvedParams {
    /// `host:port` for messages (`[v6]:port` for IPv6 addresses).
    pub fn addr(&self) -> String {
        fmt_addr(&self.host, self.port)
    }
}

fn fmt_addr(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('/') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// libpq's default host when none is given.
pub const DEFAULT_HOST: &str = "localhost";
/// libpq's default port.
pub const DEFAULT_PORT: u16 = 5432;
/// The Unix socket directory Debian's libpq uses by default (matched as `localhost` in
/// `.pgpass`).
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// Connection options that are understood and used.
const KNOWN_KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "connect_timeout",
    "application_name",
    "fallback_application_name",
];

/// libpq options that are accepted and ignored (they tune what this tool does not need).
const IGNORED_KEYS: &[&str] = &[
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "target_session_attrs",
    "load_balance_hosts",
    "gssencmode",
    "sslcompression",
    "sslsni",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "channel_binding",
    "client_encoding",
    "replication",
];

impl ConnParams {
    /// Parses a `postgres://` / `postgresql://` URL or a libpq `key=value` conninfo.
    /// The error names what is wrong, never the password or the whole string.
    pub fn parse(conninfo: &str) -> Result<ConnParams, String> {
        let t = conninfo.trim();
        if t.starts_with("postgres://") || t.starts_with("postgresql://") {
            ConnParams::parse_url(t)
        } else if t.contains("://") || looks_like_broken_url(t) {
            Err("the connection URL must start with postgres:// or postgresql://".into())
        } else if !t.is_empty() && !t.contains('=') {
            Err("the connection string is neither a postgres:// URL nor key=value pairs (a URL must start with postgres:// or postgresql://)".into())
        } else {
            ConnParams::parse_keyvalue(t)
        }
    }

    /// Sets one libpq option by name. Unknown options are refused like libpq does; a few
    /// tuning options are accepted and ignored.
    pub fn set(&mut self, key: &str, value: String) -> Result<(), String> {
        let opt = |v: String| if v.is_empty() { None } else { Some(v) };
        match key {
            "host" => {
                if value.contains(',') {
                    return Err("several hosts in one connection string are not supported; give one host per region".into());
                }
                self.host = opt(value)
            }
            "hostaddr" => {
                if !value.is_empty() && value.parse::<std::net::IpAddr>().is_err() {
                    return Err("invalid hostaddr: it must be a numeric IP address".into());
                }
                self.hostaddr = opt(value)
            }
            "port" => {
                self.port = if value.is_empty() {
                    None
                } else {
                    Some(parse_port(&value)?)
                }
            }
            "user" => self.user = opt(value),
            "password" => self.password = opt(value),
            "dbname" => self.dbname = opt(value),
            "sslmode" => {
                self.sslmode = if value.is_empty() {
                    None
                } else {
                    Some(SslMode::parse(&value).ok_or_else(|| bad_sslmode(&value))?)
                }
            }
            "sslrootcert" => self.sslrootcert = opt(value),
            "connect_timeout" => {
                self.connect_timeout = if value.is_empty() {
                    None
                } else {
                    Some(parse_timeout(&value)?)
                }
            }
            "application_name" => self.application_name = opt(value),
            "fallback_application_name" => {
                if self.application_name.is_none() {
                    self.application_name = opt(value)
                }
            }
            "sslcert" | "sslkey" | "sslpassword" => {
                return Err(format!("client certificates (\"{key}\") are not supported"));
            }
            "service" | "options" | "requirepeer" | "krbsrvname" | "gsslib" => {
                return Err(format!("the connection option \"{key}\" is not supported"));
            }
            k if IGNORED_KEYS.contains(&k) => {
                tracing::debug!(option = k, "ignoring connection option");
            }
            _ => {
                return Err(format!("invalid connection option \"{}\"", safe_key(key)));
            }
        }
        Ok(())
    }

    /// Replaces every field that `other` sets (used by `--region` over a config region).
    pub fn override_with(&mut self, other: &ConnParams) {
        macro_rules! over {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f.clone(); } )* };
        }
        over!(
            host,
            hostaddr,
            port,
            user,
            password,
            dbname,
            sslmode,
            sslrootcert,
            connect_timeout,
            application_name
        );
    }

    /// True when a host (or hostaddr) is given.
    pub fn has_host(&self) -> bool {
        self.host.is_some() || self.hostaddr.is_some()
    }
}

// Values are never echoed in messages: in a mistyped connection string, any value may be a
// piece of a password (`hostaddr= password=...`, `user:pw/x@host`, ...).
fn bad_sslmode(_value: &str) -> String {
    "invalid sslmode (use disable, allow, prefer, require, verify-ca or verify-full)".to_string()
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        _ => Err("invalid port number (expected 1-65535)".to_string()),
    }
}

fn parse_timeout(text: &str) -> Result<u64, String> {
    let t = text.trim();
    match t.parse::<i64>() {
        Ok(v) if v <= 0 => Ok(0),
        Ok(v) => Ok(v as u64),
        Err(_) => Err("invalid connect_timeout (expected whole seconds)".to_string()),
    }
}

/// True for option names this module knows (used, ignored or refused by name).
fn is_listed_key(key: &str) -> bool {
    KNOWN_KEYS.contains(&key)
        || IGNORED_KEYS.contains(&key)
        || [
            "sslcert",
            "sslkey",
            "sslpassword",
            "service",
            "options",
            "requirepeer",
            "krbsrvname",
            "gsslib",
            "ssl",
        ]
        .contains(&key)
}

/// A key for a message: quoted, or a neutral phrase when it might be part of a password.
fn shown_key(key: &str, hide: bool) -> String {
    if hide && !is_listed_key(key) {
        "a word that is not an option name (is a value with spaces or '&' left unquoted?)"
            .to_string()
    } else {
        format!("\"{}\"", safe_key(key))
    }
}

/// A piece of user text shown in a message: truncated, control characters removed.
fn safe_key(text: &str) -> String {
    let cleaned: String = text.chars().filter(|c| !c.is_control()).take(40).collect();
    if text.chars().count() > 40 {
        format!("{cleaned}...")
    } else {
        cleaned
    }
}

/// A conninfo or URL with its password replaced by `********`, for logs and messages.
///
/// ```
/// use eden_consistency::conninfo::redact;
/// assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:********@h/db");
/// assert_eq!(redact("host=h password='a b' user=u"), "host=h password=******** user=u");
/// ```
pub fn redact(conninfo: &str) -> String {
    let t = conninfo.trim();
    if let Some(scheme_end) = t.find("://") {
        let rest = &t[scheme_end + 3..];
        let (before_query, query) = match rest.find('?') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let auth_end = before_query.find('/').unwrap_or(before_query.len());
        let authority = &before_query[..auth_end];
        let mut out = t[..scheme_end + 3].to_string();
        match authority.rfind('@') {
            Some(at) => {
                let ui = &authority[..at];
                match ui.find(':') {
                    Some(c) => {
                        out.push_str(&ui[..c]);
                        out.push_str(":********");
                    }
                    None => out.push_str(ui),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        out.push_str(&before_query[auth_end..]);
        if let Some(q) = query {
            out.push('?');
            let parts: Vec<String> = q
                .split('&')
                .map(|kv| {
                    if kv.starts_with("password=") {
                        "password=********".to_string()
                    } else {
                        kv.to_string()
                    }
                })
                .collect();
            out.push_str(&parts.join("&"));
        }
        out
    } else {
        // key=value: rebuild, masking the password's value (quoted or not).
        let chars: Vec<char> = t.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            // Find "password" as a key at a token start.
            let at_token_start = i == 0 || chars[i - 1].is_whitespace();
            let rest: String = chars[i..chars.len().min(i + 8)].iter().collect();
            if at_token_start && rest == "password" {
                let mut j = i + 8;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                if j < chars.len() && chars[j] == '=' {
                    j += 1;
                    while j < chars.len() && chars[j].is_whitespace() {
                        j += 1;
                    }
                    // Skip the value.
                    if j < chars.len() && chars[j] == '\'' {
                        j += 1;
                        while j < chars.len() {
                            if chars[j] == '\\' {
                                j += 2;
                                continue;
                            }
                            if chars[j] == '\'' {
                                j += 1;
                                break;
                            }
                            j += 1;
                        }
                    } else {
                        while j < chars.len() && !chars[j].is_whitespace() {
                            if chars[j] == '\\' {
                                j += 1;
                            }
                            j += 1;
                        }
                    }
                    out.push_str("password=********");
                    i = j.min(chars.len());
                    continue;
                }
            }
            out.push(chars[i]);
            i += 1;
        }
        out
    }
}
