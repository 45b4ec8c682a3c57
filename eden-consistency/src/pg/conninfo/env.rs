//! Completing parameters from the `PG*` environment variables and the defaults.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::*;

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

impl ConnParams {
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
