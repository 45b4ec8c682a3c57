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
//! use eden_consistency::conninfo::{ConnParams, MapEnv, SslMode};
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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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

/// Where the environment comes from: the process ([`ProcessEnv`]) or, in tests, a map
/// ([`MapEnv`]), so that tests never mutate the process environment.
pub trait Env {
    /// An environment variable; empty values count as unset.
    fn var(&self, name: &str) -> Option<String>;
    /// The OS user name (libpq's default user).
    fn os_user(&self) -> Option<String>;
    /// The home directory (for `~/.pgpass` and `~/.postgresql/root.crt`).
    fn home_dir(&self) -> Option<PathBuf>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn os_user(&self) -> Option<String> {
        whoami::username().ok().filter(|u| !u.is_empty())
    }
    fn home_dir(&self) -> Option<PathBuf> {
        #[allow(deprecated)]
        self.var("HOME")
            .map(PathBuf::from)
            .or_else(std::env::home_dir)
    }
}

/// An environment made of a map, for tests.
#[derive(Debug, Clone, Default)]
pub struct MapEnv {
    vars: HashMap<String, String>,
    user: Option<String>,
    home: Option<PathBuf>,
}

impl MapEnv {
    /// An empty environment: no variables, no OS user, no home directory.
    pub fn new() -> MapEnv {
        MapEnv::default()
    }
    /// Sets a variable.
    pub fn var(mut self, name: &str, value: &str) -> MapEnv {
        self.vars.insert(name.to_string(), value.to_string());
        self
    }
    /// Sets the OS user name.
    pub fn os_user(mut self, user: &str) -> MapEnv {
        self.user = Some(user.to_string());
        self
    }
    /// Sets the home directory.
    pub fn home(mut self, dir: &Path) -> MapEnv {
        self.home = Some(dir.to_path_buf());
        self
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.vars.get(name).filter(|v| !v.is_empty()).cloned()
    }
    fn os_user(&self) -> Option<String> {
        self.user.clone()
    }
    fn home_dir(&self) -> Option<PathBuf> {
        self.home.clone()
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

    /// Parses libpq's `key=value key2='quoted value'` form (`\'` and `\\` escapes).
    pub fn parse_keyvalue(conninfo: &str) -> Result<ConnParams, String> {
        let mut p = ConnParams::default();
        // With a password around, don't echo text that may be a piece of it.
        let hide = conninfo.contains("password") || conninfo.contains('@');
        let chars: Vec<char> = conninfo.chars().collect();
        let mut i = 0;
        let n = chars.len();
        loop {
            while i < n && chars[i].is_whitespace() {
                i += 1;
            }
            if i >= n {
                break;
            }
            let start = i;
            while i < n && !chars[i].is_whitespace() && chars[i] != '=' {
                i += 1;
            }
            let key: String = chars[start..i].iter().collect();
            while i < n && chars[i].is_whitespace() {
                i += 1;
            }
            if i >= n || chars[i] != '=' {
                return Err(format!(
                    "missing \"=\" after {} in the connection string",
                    shown_key(&key, hide)
                ));
            }
            i += 1;
            while i < n && chars[i].is_whitespace() {
                i += 1;
            }
            let mut value = String::new();
            if i < n && chars[i] == '\'' {
                i += 1;
                let mut closed = false;
                while i < n {
                    match chars[i] {
                        '\\' if i + 1 < n => {
                            value.push(chars[i + 1]);
                            i += 2;
                        }
                        '\'' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        c => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                if !closed {
                    return Err(format!(
                        "unterminated quoted value of {} in the connection string",
                        shown_key(&key, hide)
                    ));
                }
            } else {
                while i < n && !chars[i].is_whitespace() {
                    if chars[i] == '\\' && i + 1 < n {
                        value.push(chars[i + 1]);
                        i += 2;
                    } else {
                        value.push(chars[i]);
                        i += 1;
                    }
                }
            }
            if hide && !is_listed_key(&key) {
                return Err(format!(
                    "invalid connection option {}",
                    shown_key(&key, hide)
                ));
            }
            p.set(&key, value)?;
        }
        Ok(p)
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

    /// `host:port` for messages (never user or password). Defaults as libpq: the `PGHOST` /
    /// `PGPORT` environment, else `localhost:5432`.
    pub fn addr(&self) -> String {
        self.addr_with(&ProcessEnv)
    }

    /// [`ConnParams::addr`] with an explicit environment.
    pub fn addr_with(&self, env: &dyn Env) -> String {
        let host = self
            .host
            .clone()
            .or_else(|| self.hostaddr.clone())
            .or_else(|| env.var("PGHOST"))
            .unwrap_or_else(|| DEFAULT_HOST.into());
        let port = self
            .port
            .or_else(|| env.var("PGPORT").and_then(|p| p.trim().parse().ok()))
            .unwrap_or(DEFAULT_PORT);
        fmt_addr(&host, port)
    }

    /// Completes the parameters from the process environment; see [`ConnParams::resolve_with`].
    pub fn resolve(&self, db: Option<&str>) -> Result<ResolvedParams, String> {
        self.resolve_with(db, &ProcessEnv)
    }

    /// Completes the parameters like libpq: explicit values, then the `PG*` variables, then
    /// the defaults; the database is this conninfo's `dbname`, else `db`, else `PGDATABASE`,
    /// else the user name. The password, when still missing, comes from the password file.
    /// Errors (a bad `PGPORT`, ...) name the variable, never a password.
    pub fn resolve_with(&self, db: Option<&str>, env: &dyn Env) -> Result<ResolvedParams, String> {
        let host = self.host.clone().or_else(|| env.var("PGHOST"));
        if let Some(h) = &host {
            if h.contains(',') {
                return Err(
                    "PGHOST names several hosts, which is not supported; give one host per region"
                        .into(),
                );
            }
        }
        let hostaddr = self.hostaddr.clone().or_else(|| env.var("PGHOSTADDR"));
        let host = host
            .or_else(|| hostaddr.clone())
            .unwrap_or_else(|| DEFAULT_HOST.to_string());
        let port = match self.port {
            Some(p) => p,
            None => match env.var("PGPORT") {
                Some(v) => parse_port(&v).map_err(|e| format!("PGPORT: {e}"))?,
                None => DEFAULT_PORT,
            },
        };
        let user = self
            .user
            .clone()
            .or_else(|| env.var("PGUSER"))
            .or_else(|| env.os_user())
            .ok_or("no user name: give user= in the connection string or set PGUSER")?;
        let dbname = self
            .dbname
            .clone()
            .or_else(|| db.filter(|d| !d.is_empty()).map(str::to_string))
            .or_else(|| env.var("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        let sslmode = match self.sslmode {
            Some(m) => m,
            None => match env.var("PGSSLMODE") {
                Some(v) => {
                    SslMode::parse(&v).ok_or_else(|| format!("PGSSLMODE: {}", bad_sslmode(&v)))?
                }
                None => SslMode::Prefer,
            },
        };
        let explicit_root = self
            .sslrootcert
            .clone()
            .or_else(|| env.var("PGSSLROOTCERT"));
        let sslrootcert_explicit = explicit_root.is_some();
        let sslrootcert = explicit_root.or_else(|| {
            let default = env.home_dir()?.join(".postgresql").join("root.crt");
            default.is_file().then(|| default.display().to_string())
        });
        let connect_timeout = match self.connect_timeout {
            Some(t) => Some(t),
            None => match env.var("PGCONNECT_TIMEOUT") {
                Some(v) => Some(parse_timeout(&v).map_err(|e| format!("PGCONNECT_TIMEOUT: {e}"))?),
                None => None,
            },
        };
        let application_name = self
            .application_name
            .clone()
            .or_else(|| env.var("PGAPPNAME"));

        let (password, password_source) = if let Some(pw) = &self.password {
            (Some(pw.clone()), Some(PasswordSource::Explicit))
        } else if let Some(pw) = env.var("PGPASSWORD") {
            (Some(pw), Some(PasswordSource::Environment))
        } else {
            let file = env
                .var("PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| env.home_dir().map(|h| h.join(".pgpass")));
            let pw_host = if host.starts_with('/') {
                if host.trim_end_matches('/') == DEFAULT_SOCKET_DIR {
                    DEFAULT_HOST.to_string()
                } else {
                    host.clone()
                }
            } else {
                host.clone()
            };
            match file
                .and_then(|f| password_from_file(&f, &pw_host, &port.to_string(), &dbname, &user))
            {
                Some(pw) => (Some(pw), Some(PasswordSource::PassFile)),
                None => (None, None),
            }
        };

        Ok(ResolvedParams {
            host,
            hostaddr,
            port,
            user,
            password,
            password_source,
            dbname,
            sslmode,
            sslrootcert,
            sslrootcert_explicit,
            connect_timeout,
            application_name,
        })
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

/// `postgres:/...`, `postgres//...`, `postgresql:...`, `postgres:...`: a URL whose `://`
/// was mistyped (never parsed as key=value, whose errors might echo its pieces).
fn looks_like_broken_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ["postgresql", "postgres"].iter().any(|scheme| {
        lower
            .strip_prefix(scheme)
            .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('/'))
    })
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

/// Looks up a password in a libpq password file: lines `host:port:database:user:password`,
/// `*` matching anything, `\:` and `\\` escapes, `#` comments. A file that is not a plain
/// file, or that the group or others may access, is ignored with a warning, like libpq.
pub fn password_from_file(
    path: &Path,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        tracing::warn!("password file \"{}\" is not a plain file", path.display());
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            "password file \"{}\" has group or world access; permissions should be u=rw (0600) or less, so it is ignored",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    pgpass_lookup(&text, host, port, dbname, user)
}

/// The matching logic of [`password_from_file`] on the file's text.
pub fn pgpass_lookup(
    text: &str,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = pgpass_match(line, host)
            .and_then(|r| pgpass_match(r, port))
            .and_then(|r| pgpass_match(r, dbname))
            .and_then(|r| pgpass_match(r, user))
        else {
            continue;
        };
        // The password: up to the first unescaped ':', de-escaped.
        let mut pw = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                ':' => break,
                '\\' => match chars.next() {
                    Some(n) => pw.push(n),
                    None => pw.push('\\'),
                },
                c => pw.push(c),
            }
        }
        return Some(pw);
    }
    None
}

/// libpq's `pwdfMatchesString`: does the next field of `buf` match `token`? Returns the
/// rest of the line after the field's `:`.
fn pgpass_match<'a>(buf: &'a str, token: &str) -> Option<&'a str> {
    if let Some(rest) = buf.strip_prefix("*:") {
        return Some(rest);
    }
    let b = buf.as_bytes();
    let t = token.as_bytes();
    let (mut i, mut j) = (0, 0);
    let mut bslash = false;
    while i < b.len() {
        if b[i] == b'\\' && !bslash {
            i += 1;
            bslash = true;
            if i >= b.len() {
                return None;
            }
        }
        if b[i] == b':' && j == t.len() && !bslash {
            return buf.get(i + 1..);
        }
        bslash = false;
        if j == t.len() {
            return None;
        }
        if b[i] == t[j] {
            i += 1;
            j += 1;
        } else {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_full() {
        let p = ConnParams::parse("postgresql://us%40er:p%3Ass@db.example.com:6432/my%20db?sslmode=verify-ca&application_name=x&connect_timeout=7&sslrootcert=/r.pem").unwrap();
        assert_eq!(p.user.as_deref(), Some("us@er"));
        assert_eq!(p.password.as_deref(), Some("p:ss"));
        assert_eq!(p.host.as_deref(), Some("db.example.com"));
        assert_eq!(p.port, Some(6432));
        assert_eq!(p.dbname.as_deref(), Some("my db"));
        assert_eq!(p.sslmode, Some(SslMode::VerifyCa));
        assert_eq!(p.application_name.as_deref(), Some("x"));
        assert_eq!(p.connect_timeout, Some(7));
        assert_eq!(p.sslrootcert.as_deref(), Some("/r.pem"));
    }

    #[test]
    fn url_minimal_and_v6() {
        let p = ConnParams::parse("postgres://").unwrap();
        assert_eq!(p, ConnParams::default());
        let p = ConnParams::parse("postgres://[::1]:5433/db").unwrap();
        assert_eq!(p.host.as_deref(), Some("::1"));
        assert_eq!(p.port, Some(5433));
        let p = ConnParams::parse("postgres://[fe80::1]").unwrap();
        assert_eq!(p.host.as_deref(), Some("fe80::1"));
        assert_eq!(p.port, None);
        let p = ConnParams::parse("postgres://h/?host=%2Fvar%2Frun%2Fpostgresql").unwrap();
        assert_eq!(p.host.as_deref(), Some("/var/run/postgresql"));
        let p = ConnParams::parse("postgres://u@h?ssl=true").unwrap();
        assert_eq!(p.sslmode, Some(SslMode::Require));
        assert_eq!(p.user.as_deref(), Some("u"));
        assert_eq!(p.dbname, None);
        // A raw '@' in the password: the last '@' ends the user info.
        let p = ConnParams::parse("postgres://u:p@ss@h/d").unwrap();
        assert_eq!(p.password.as_deref(), Some("p@ss"));
        assert_eq!(p.host.as_deref(), Some("h"));
    }

    #[test]
    fn url_errors_never_show_password() {
        for bad in [
            "postgres://u:sekrit@h:abc/d",
            "postgres://u:sekrit@h:70000/d",
            "postgres://u:sek%zzrit@h/d",
            "postgres://u:sekrit@h/d?bogus=1",
            "postgres://u:sekrit@h/d?sslmode=maybe",
            "postgres://u:sekrit@[::1/d",
            "postgres://u:sekrit@h1,h2/d",
            "postgres://u@h/d?password=sek%zzrit",
            "mysql://u:sekrit@h/d",
        ] {
            let e = ConnParams::parse(bad).unwrap_err();
            assert!(!e.contains("sekrit") && !e.contains("sek"), "{bad}: {e}");
        }
        assert_eq!(
            ConnParams::parse("postgres://h:abc/d").unwrap_err(),
            "invalid port number (expected 1-65535)"
        );
        assert_eq!(
            ConnParams::parse("postgres://h/d?bogus=1").unwrap_err(),
            "invalid connection option \"bogus\""
        );
    }

    #[test]
    fn keyvalue() {
        let p = ConnParams::parse(
            r"host=h port = 5433 user=u password='it''s' dbname='my db' sslmode=require",
        )
        .unwrap_err();
        // libpq quotes escape with backslash, not doubling: 'it' then 's' is an unknown token.
        assert!(p.contains("missing \"=\""), "{p}");
        let p = ConnParams::parse(r"host=h port = 5433 user=u password='it\'s a \\ test' dbname='my db' sslmode=require keepalives=1").unwrap();
        assert_eq!(p.host.as_deref(), Some("h"));
        assert_eq!(p.port, Some(5433));
        assert_eq!(p.password.as_deref(), Some(r"it's a \ test"));
        assert_eq!(p.dbname.as_deref(), Some("my db"));
        assert_eq!(p.sslmode, Some(SslMode::Require));
        let p = ConnParams::parse(r"password=a\ b host=x").unwrap();
        assert_eq!(p.password.as_deref(), Some("a b"));
        assert_eq!(ConnParams::parse("").unwrap(), ConnParams::default());
        assert!(
            ConnParams::parse("host='unterminated")
                .unwrap_err()
                .contains("unterminated")
        );
        assert_eq!(
            ConnParams::parse("foo=1").unwrap_err(),
            "invalid connection option \"foo\""
        );
        let e = ConnParams::parse("password='secret").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(
            ConnParams::parse("hostaddr=nothost")
                .unwrap_err()
                .contains("numeric IP")
        );
        assert!(
            ConnParams::parse("sslkey=/k")
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn override_fields() {
        let mut a = ConnParams::parse("host=a port=1 user=u dbname=d").unwrap();
        a.override_with(&ConnParams::parse("host=b password=p").unwrap());
        assert_eq!(a.host.as_deref(), Some("b"));
        assert_eq!(a.port, Some(1));
        assert_eq!(a.user.as_deref(), Some("u"));
        assert_eq!(a.password.as_deref(), Some("p"));
    }

    #[test]
    fn precedence_explicit_env_default() {
        let env = MapEnv::new()
            .var("PGHOST", "envhost")
            .var("PGPORT", "6000")
            .var("PGUSER", "envuser")
            .var("PGDATABASE", "envdb")
            .var("PGSSLMODE", "require")
            .var("PGSSLROOTCERT", "/env/root.pem")
            .var("PGCONNECT_TIMEOUT", "3")
            .var("PGAPPNAME", "envapp")
            .os_user("osuser");
        // Nothing explicit: everything from the environment.
        let r = ConnParams::default().resolve_with(None, &env).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.user.as_str(), r.dbname.as_str()),
            ("envhost", 6000, "envuser", "envdb")
        );
        assert_eq!(r.sslmode, SslMode::Require);
        assert_eq!(r.sslrootcert.as_deref(), Some("/env/root.pem"));
        assert_eq!(r.connect_timeout, Some(3));
        assert_eq!(r.application_name.as_deref(), Some("envapp"));
        // The caller's database beats PGDATABASE.
        assert_eq!(
            ConnParams::default()
                .resolve_with(Some("flagdb"), &env)
                .unwrap()
                .dbname,
            "flagdb"
        );
        // Explicit beats all.
        let p = ConnParams::parse(
            "host=h port=1 user=u dbname=d sslmode=disable connect_timeout=9 application_name=a",
        )
        .unwrap();
        let r = p.resolve_with(Some("flagdb"), &env).unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.user.as_str(), r.dbname.as_str()),
            ("h", 1, "u", "d")
        );
        assert_eq!(r.sslmode, SslMode::Disable);
        assert_eq!(r.connect_timeout, Some(9));
        assert_eq!(r.application_name.as_deref(), Some("a"));
        // Defaults.
        let r = ConnParams::default()
            .resolve_with(None, &MapEnv::new().os_user("osuser"))
            .unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.user.as_str(), r.dbname.as_str()),
            ("localhost", 5432, "osuser", "osuser")
        );
        assert_eq!(r.sslmode, SslMode::Prefer);
        assert_eq!(r.password, None);
        assert_eq!(r.connect_timeout, None);
        assert_eq!(r.addr(), "localhost:5432");
    }

    #[test]
    fn env_errors() {
        let e = ConnParams::default()
            .resolve_with(None, &MapEnv::new().os_user("u").var("PGPORT", "x"))
            .unwrap_err();
        assert_eq!(e, "PGPORT: invalid port number (expected 1-65535)");
        let e = ConnParams::default()
            .resolve_with(None, &MapEnv::new().os_user("u").var("PGSSLMODE", "on"))
            .unwrap_err();
        assert!(e.starts_with("PGSSLMODE: invalid sslmode"), "{e}");
        let e = ConnParams::default()
            .resolve_with(None, &MapEnv::new())
            .unwrap_err();
        assert!(e.contains("PGUSER"), "{e}");
    }

    #[test]
    fn password_precedence() {
        let dir = tempfile::tempdir().unwrap();
        write_600(&dir.path().join(".pgpass"), "*:*:*:*:frompass\n");
        let env = MapEnv::new().os_user("u").home(dir.path());
        let r = ConnParams::default().resolve_with(None, &env).unwrap();
        assert_eq!(r.password.as_deref(), Some("frompass"));
        assert_eq!(r.password_source, Some(PasswordSource::PassFile));
        let env2 = env.clone().var("PGPASSWORD", "fromenv");
        let r = ConnParams::default().resolve_with(None, &env2).unwrap();
        assert_eq!(r.password.as_deref(), Some("fromenv"));
        let r = ConnParams::parse("password=explicit")
            .unwrap()
            .resolve_with(None, &env2)
            .unwrap();
        assert_eq!(r.password.as_deref(), Some("explicit"));
        assert_eq!(r.password_source, Some(PasswordSource::Explicit));
        // PGPASSFILE beats ~/.pgpass.
        let other = dir.path().join("other");
        write_600(&other, "localhost:5432:u:u:fromother\n");
        let r = ConnParams::default()
            .resolve_with(
                None,
                &env.clone().var("PGPASSFILE", other.to_str().unwrap()),
            )
            .unwrap();
        assert_eq!(r.password.as_deref(), Some("fromother"));
        // The debug output hides it.
        assert!(!format!("{r:?}").contains("fromother"));
    }

    fn write_600(path: &Path, text: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    #[test]
    fn pgpass_matching() {
        let text = "# comment\n\
                    db1.example:5432:eden:alice:pw1\n\
                    *:5433:*:alice:pw2\n\
                    weird\\:host:*:*:*:p\\:w\\\\3\n\
                    *:*:*:bob:pass:with:colons\n\
                    \n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            pgpass_lookup(text, "db1.example", "5432", "eden", "alice").as_deref(),
            Some("pw1")
        );
        assert_eq!(
            pgpass_lookup(text, "db2.example", "5433", "x", "alice").as_deref(),
            Some("pw2")
        );
        assert_eq!(
            pgpass_lookup(text, "weird:host", "1", "d", "u").as_deref(),
            Some("p:w\\3")
        );
        // An unescaped ':' ends the password (libpq).
        assert_eq!(
            pgpass_lookup(text, "h", "1", "d", "bob").as_deref(),
            Some("pass")
        );
        assert_eq!(
            pgpass_lookup(text, "db1.example", "5432", "eden", "carol").as_deref(),
            Some("fallback")
        );
        // Prefixes don't match.
        assert_eq!(
            pgpass_lookup(
                "db1:5432:eden:alice:x\n",
                "db1.example",
                "5432",
                "eden",
                "alice"
            ),
            None
        );
        assert_eq!(
            pgpass_lookup(
                "db1.example:5432:eden:alice:x\n",
                "db1",
                "5432",
                "eden",
                "alice"
            ),
            None
        );
        // Windows line ends.
        assert_eq!(
            pgpass_lookup("*:*:*:*:crlf\r\n", "h", "1", "d", "u").as_deref(),
            Some("crlf")
        );
        // A '*' only acts as a wildcard for the whole field.
        assert_eq!(pgpass_lookup("db*:*:*:*:x\n", "db1", "1", "d", "u"), None);
    }

    #[test]
    fn pgpass_permissions_and_socket_host() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pgpass");
        std::fs::write(&f, "localhost:5432:d:u:pw\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(password_from_file(&f, "localhost", "5432", "d", "u"), None);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(password_from_file(&f, "localhost", "5432", "d", "u"), None);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            password_from_file(&f, "localhost", "5432", "d", "u").as_deref(),
            Some("pw")
        );
        // A directory is not a password file.
        assert_eq!(
            password_from_file(dir.path(), "localhost", "5432", "d", "u"),
            None
        );
        // The default socket directory is looked up as localhost.
        let env = MapEnv::new()
            .os_user("u")
            .var("PGPASSFILE", f.to_str().unwrap());
        let r = ConnParams::parse("host=/var/run/postgresql dbname=d")
            .unwrap()
            .resolve_with(None, &env)
            .unwrap();
        assert_eq!(r.password.as_deref(), Some("pw"));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("postgres://u:pw@h:1/db?sslmode=require&password=x"),
            "postgres://u:********@h:1/db?sslmode=require&password=********"
        );
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact("host=h password=secret"), "host=h password=********");
        assert_eq!(
            redact(r"password = 'a\'b c' host=h"),
            "password=******** host=h"
        );
        assert!(!format!("{:?}", ConnParams::parse("password=zz").unwrap()).contains("zz"));
    }

    fn quote_kv(v: &str) -> String {
        let mut q = String::from("'");
        for c in v.chars() {
            if c == '\'' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('\'');
        q
    }

    fn pct(v: &str) -> String {
        v.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    proptest::proptest! {
        #[test]
        fn keyvalue_round_trip(user in "[^\\x00]{1,12}", pw in "[^\\x00]{1,12}", db in "[^\\x00]{1,12}", port in 1u16..) {
            let ci = format!("host=h port={port} user={} password={} dbname={}", quote_kv(&user), quote_kv(&pw), quote_kv(&db));
            let p = ConnParams::parse_keyvalue(&ci).unwrap();
            proptest::prop_assert_eq!(p.user.as_deref(), Some(user.as_str()));
            proptest::prop_assert_eq!(p.password.as_deref(), Some(pw.as_str()));
            proptest::prop_assert_eq!(p.dbname.as_deref(), Some(db.as_str()));
            proptest::prop_assert_eq!(p.port, Some(port));
        }

        #[test]
        fn url_round_trip(user in "[^\\x00]{1,12}", pw in "[^\\x00]{1,12}", db in "[^\\x00]{1,12}", host in "[a-z0-9.-]{1,20}", port in 1u16..) {
            let url = format!("postgresql://{}:{}@{host}:{port}/{}?application_name={}", pct(&user), pct(&pw), pct(&db), pct(&db));
            let p = ConnParams::parse(&url).unwrap();
            proptest::prop_assert_eq!(p.user.as_deref(), Some(user.as_str()));
            proptest::prop_assert_eq!(p.password.as_deref(), Some(pw.as_str()));
            proptest::prop_assert_eq!(p.dbname.as_deref(), Some(db.as_str()));
            proptest::prop_assert_eq!(p.application_name.as_deref(), Some(db.as_str()));
            proptest::prop_assert_eq!(p.host.as_deref(), Some(host.as_str()));
            proptest::prop_assert_eq!(p.port, Some(port));
        }

        #[test]
        fn redaction_hides_password(pw in "ZQ[a-zA-Z0-9 '\\\\]{2,12}", rest in "[a-y0-9]{1,8}") {
            let kv = format!("host={rest} password={} user={rest}", quote_kv(&pw));
            proptest::prop_assert!(!redact(&kv).contains(&pw));
            let url = format!("postgres://{rest}:{}@{rest}/{rest}?password={}", pct(&pw), pct(&pw));
            let r = redact(&url);
            proptest::prop_assert!(!r.contains(&pw) && !r.contains(&pct(&pw)), "{}", r);
        }

        #[test]
        fn parse_never_panics_nor_leaks(text in ".{0,60}") {
            let with_pw = format!("{text} password=ZQsecretZQ {text}");
            if let Err(e) = ConnParams::parse(&with_pw) {
                proptest::prop_assert!(!e.contains("ZQsecretZQ"), "{}", e);
            }
            let url = format!("postgres://u:ZQsecretZQ@{text}");
            if let Err(e) = ConnParams::parse(&url) {
                proptest::prop_assert!(!e.contains("ZQsecretZQ"), "{}", e);
            }
        }
    }
}

/// Whatever shape a mistyped connection string takes, its password never reaches a message.
#[cfg(test)]
mod secret_props {
    use super::*;
    use crate::config::Config;
    use proptest::prelude::*;

    const PREFIXES: &[&str] = &[
        "postgres://",
        "postgresql://",
        "postgres:/",
        "postgres//",
        "postgres:",
        "postgresql:",
        "postgresql//",
        "Postgres:/",
        "postgres:///",
        "mysql://",
        "",
        "//",
        "://",
    ];
    const HOSTS: &[&str] = &[
        "h", "h:abc", "h:99999", "[::1", "[::1]x", "h1,h2", "", "h:", "h:5432",
    ];
    const TAILS: &[&str] = &[
        "",
        "/db",
        "/d%zzb",
        "/db?sslmode=maybe",
        "/db?bogus=1",
        "/db?x",
        "/db?ssl=yes",
        "/db?hostaddr=nothost",
        "/db?port=x&",
        "?connect_timeout=soon",
    ];

    /// A URL-like string, maybe mistyped, carrying `pw` where a password goes.
    fn url_shape() -> impl Strategy<Value = (String, String)> {
        (
            "Pw[a-zA-Z0-9/@:=' %?&,\\\\#]{3,12}",
            prop::sample::select(PREFIXES),
            prop::sample::select(HOSTS),
            prop::sample::select(TAILS),
            prop::option::of("[a-z]{1,5}"),
            any::<bool>(),
        )
            .prop_map(|(pw, prefix, host, tail, user, in_query)| {
                let user = user.unwrap_or_default();
                let s = if in_query {
                    let sep = if tail.contains('?') { "&" } else { "?" };
                    let tail = if tail.is_empty() { "/db" } else { tail };
                    format!("{prefix}{user}@{host}{tail}{sep}password={pw}")
                } else {
                    format!("{prefix}{user}:{pw}@{host}{tail}")
                };
                (s, pw)
            })
    }

    /// A key=value conninfo, maybe with unquoted spaces, bad values or bad keys.
    fn keyvalue_shape() -> impl Strategy<Value = (String, String)> {
        let pieces = prop::sample::subsequence(
            vec![
                "host=h",
                "port=x",
                "port=",
                "hostaddr=",
                "hostaddr=nothost",
                "sslmode=maybe",
                "bogus=1",
                "bogus",
                "user=u",
                "connect_timeout=soon",
                "dbname='unterminated",
            ],
            0..4,
        );
        (
            "Pw[a-zA-Z0-9/@:=' %?&,\\\\#]{3,12}",
            pieces,
            prop::sample::select(vec!["password=", "password = ", "password='", "password="]),
            0usize..5,
        )
            .prop_map(|(pw, pieces, key, at)| {
                let mut parts: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
                let at = at.min(parts.len());
                parts.insert(at, format!("{key}{pw}"));
                (parts.join(" "), pw)
            })
    }

    fn assert_hidden(text: &str, pw: &str) -> Result<(), TestCaseError> {
        // The password, and any 5-character piece of it, never shows.
        let chars: Vec<char> = pw.chars().collect();
        for w in chars.windows(5) {
            let piece: String = w.iter().collect();
            if piece.trim().len() == 5 {
                prop_assert!(
                    !text.contains(&piece),
                    "{piece:?} of the password shown in: {text}"
                );
            }
        }
        Ok(())
    }

    fn check_everywhere(conninfo: &str, pw: &str) -> Result<(), TestCaseError> {
        if let Err(e) = ConnParams::parse(conninfo) {
            assert_hidden(&e, pw)?;
        } else if let Ok(p) = ConnParams::parse(conninfo) {
            if let Err(e) = p.resolve_with(Some("db"), &MapEnv::new().os_user("me")) {
                assert_hidden(&e, pw)?;
            }
        }
        let mut config = Config::default();
        if let Err(e) = config.apply_region_flag(&format!("r1={conninfo}")) {
            assert_hidden(&e.to_string(), pw)?;
        }
        let yaml = format!(
            "regions:\n  - name: r1\n    conninfo: {}\n",
            serde_json::to_string(conninfo).unwrap()
        );
        match Config::from_yaml_str(&yaml, "cfg.yaml") {
            Err(e) => assert_hidden(&e.to_string(), pw)?,
            Ok(c) => {
                if let Err(e) = c.validate() {
                    assert_hidden(&e.to_string(), pw)?;
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn url_password_never_in_errors((conninfo, pw) in url_shape()) {
            check_everywhere(&conninfo, &pw)?;
        }

        #[test]
        fn keyvalue_password_never_in_errors((conninfo, pw) in keyvalue_shape()) {
            check_everywhere(&conninfo, &pw)?;
        }
    }

    #[test]
    fn typos_of_the_scheme_are_named() {
        for bad in [
            "postgres:/user:pw1secret@host/db",
            "postgres//user:pw1secret@host/db",
            "postgresql:user:pw1secret@host/db",
        ] {
            assert_eq!(
                ConnParams::parse(bad).unwrap_err(),
                "the connection URL must start with postgres:// or postgresql://"
            );
        }
        let e = ConnParams::parse("user:pw1secret@host/db").unwrap_err();
        assert!(e.starts_with("the connection string is neither"), "{e}");
    }
}
