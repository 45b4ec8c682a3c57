//! The operators' `redis-multi-region.yaml`, read as-is, plus regions given as
//! `--region NAME=redis://…` or `rediss://…`.
//!
//! ```yaml
//! global: { sync_interval_ms: 100 }
//! regions:
//!   - name: us-east-1
//!     instance: { host: redis.us-east-1.eden.internal, port: 6379 }
//! databases:
//!   - name: eden_cache
//!     shards: 3
//!     regions: [us-east-1, us-west-2]
//! ```
//!
//! Unknown keys are ignored. A region's `instance` may also carry `user`, `password`, `tls`
//! (bool) and `db` (logical database number); `REDISCLI_AUTH` gives the password when neither
//! the file nor the URL does, as redis-cli takes it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// How to reach one Redis region.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port (default 6379).
    pub port: u16,
    /// `rediss://` or `tls: true`: TLS through rustls, verifying the server against the
    /// webpki roots.
    pub tls: bool,
    /// ACL user name, if any.
    pub user: Option<String>,
    /// Password, if any (never printed).
    pub password: Option<String>,
    /// Logical database number (default 0).
    pub db: i64,
    /// For TLS: a PEM file of the CA certificates to trust instead of the webpki roots
    /// (`instance.ca_file`, or `?ca_file=PATH` on the URL).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Endpoint {
    /// `host:port`, for messages (never a user or password).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Parses `redis://[user:password@]host[:port][/N]` or `rediss://…`. Errors never echo
    /// the URL (it may hold a password).
    pub fn parse_url(url: &str) -> std::result::Result<Endpoint, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("rediss://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("redis://") {
            (false, r)
        } else {
            return Err("a Redis URL starts with redis:// or rediss://".into());
        };
        // The query starts at the first '?' after the user info (a password may hold '?').
        let after_userinfo = rest.rfind('@').map(|i| i + 1).unwrap_or(0);
        let (rest, query) = match rest[after_userinfo..].find('?') {
            Some(i) => (&rest[..after_userinfo + i], &rest[after_userinfo + i + 1..]),
            None => (rest, ""),
        };
        let (authority, path) = match rest[after_userinfo..].find('/') {
            Some(i) => (&rest[..after_userinfo + i], &rest[after_userinfo + i + 1..]),
            None => (rest, ""),
        };
        let mut ca_file = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("ca_file", v)) => {
                    ca_file = Some(PathBuf::from(
                        percent_decode(v).map_err(|e| format!("ca_file {e}"))?,
                    ))
                }
                _ => return Err("the only URL parameter understood is ca_file=PATH".into()),
            }
        }
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (mut user, mut password) = (None, None);
        if let Some(ui) = userinfo {
            let (u, p) = match ui.find(':') {
                Some(i) => (&ui[..i], Some(&ui[i + 1..])),
                None => (ui, None),
            };
            if !u.is_empty() {
                user = Some(percent_decode(u).map_err(|e| format!("the user name {e}"))?);
            }
            if let Some(p) = p {
                password = Some(percent_decode(p).map_err(|e| format!("the password {e}"))?);
            }
        }
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let end = h.find(']').ok_or("the IPv6 host lacks its closing ']'")?;
            let port = h[end + 1..].strip_prefix(':').unwrap_or("");
            (h[..end].to_string(), port)
        } else {
            match hostport.rfind(':') {
                Some(i) => (hostport[..i].to_string(), &hostport[i + 1..]),
                None => (hostport.to_string(), ""),
            }
        };
        if host.is_empty() {
            return Err("the URL names no host".into());
        }
        let port = if port.is_empty() {
            6379
        } else {
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("the port '{port}' is not a number from 1 to 65535"))?
        };
        let db = if path.is_empty() {
            0
        } else {
            path.parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .ok_or("the path must be a logical database number, e.g. redis://host:6379/0")?
        };
        Ok(Endpoint {
            host,
            port,
            tls,
            user,
            password,
            db,
            ca_file,
        })
    }
}

fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a bad %-escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "is not UTF-8 after %-decoding".to_string())
}

/// One region of the cache deployment.
#[derive(Debug, Clone)]
pub struct CacheRegionConfig {
    /// `name`, e.g. `us-east-1`.
    pub name: String,
    /// `role`, informational.
    pub role: Option<String>,
    /// Where it is.
    pub endpoint: Endpoint,
}

/// A `databases:` entry.
#[derive(Debug, Clone, Default)]
pub struct CacheDatabase {
    /// `name`, e.g. `eden_cache`.
    pub name: String,
    /// `shards` (informational: cluster mode is detected from the server itself).
    pub shards: Option<u32>,
    /// `regions`: the regions holding this database (all regions when absent).
    pub regions: Vec<String>,
    /// `db`: logical database number at every region's endpoint (default 0).
    pub db: Option<i64>,
}

/// The whole Redis configuration: file (if any) plus `--region` URLs.
#[derive(Debug, Clone, Default)]
pub struct RedisConfig {
    /// The file it was read from.
    pub file: Option<PathBuf>,
    /// `global.sync_interval_ms`.
    pub sync_interval_ms: Option<u64>,
    /// Regions in file order, then those added by `--region`.
    pub regions: Vec<CacheRegionConfig>,
    /// `databases`.
    pub databases: Vec<CacheDatabase>,
}

/// True when `text` is a Redis config (a top-level `databases:` list).
pub fn is_redis_config(text: &str) -> bool {
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
        Ok(serde_yaml_ng::Value::Mapping(m)) => {
            matches!(m.get("databases"), Some(serde_yaml_ng::Value::Sequence(_)))
        }
        _ => false,
    }
}

/// True when `conninfo` is a `redis://` or `rediss://` URL.
pub fn is_redis_url(conninfo: &str) -> bool {
    conninfo.starts_with("redis://") || conninfo.starts_with("rediss://")
}

#[derive(Deserialize)]
struct RawRoot {
    global: Option<RawGlobal>,
    regions: Option<Vec<RawRegion>>,
    databases: Option<Vec<RawDatabase>>,
}

#[derive(Deserialize)]
struct RawGlobal {
    sync_interval_ms: Option<u64>,
}

#[derive(Deserialize)]
struct RawRegion {
    name: Option<String>,
    role: Option<String>,
    instance: Option<RawInstance>,
}

#[derive(Deserialize)]
struct RawInstance {
    host: Option<String>,
    port: Option<u16>,
    tls: Option<bool>,
    #[serde(alias = "username")]
    user: Option<String>,
    password: Option<String>,
    db: Option<i64>,
    #[serde(alias = "tls_ca_file")]
    ca_file: Option<PathBuf>,
}

#[derive(Deserialize)]
struct RawDatabase {
    name: Option<String>,
    shards: Option<u32>,
    regions: Option<Vec<String>>,
    db: Option<i64>,
}

impl RedisConfig {
    /// Reads a `redis-multi-region.yaml`.
    pub fn load(path: &Path) -> Result<RedisConfig> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            file: file.clone(),
            message: format!("cannot read the config file: {e}"),
        })?;
        let mut cfg = RedisConfig::from_yaml_str(&text, &file)?;
        cfg.file = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses config text; `file` names it in error messages.
    pub fn from_yaml_str(text: &str, file: &str) -> Result<RedisConfig> {
        let cerr = |message: String| Error::Config {
            file: file.to_string(),
            message,
        };
        let raw: RawRoot = serde_yaml_ng::from_str(text).map_err(|e| {
            let loc = e
                .location()
                .map(|l| format!("line {}, column {}: ", l.line(), l.column()))
                .unwrap_or_default();
            let msg = e.to_string();
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            cerr(format!("{loc}{msg}"))
        })?;
        let mut cfg = RedisConfig {
            sync_interval_ms: raw.global.and_then(|g| g.sync_interval_ms),
            ..RedisConfig::default()
        };
        for (i, r) in raw.regions.unwrap_or_default().into_iter().enumerate() {
            let name = r
                .name
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| cerr(format!("regions[{i}] has no name")))?;
            if cfg.regions.iter().any(|x| x.name == name) {
                return Err(cerr(format!("region {name} is defined twice")));
            }
            let inst = r.instance.ok_or_else(|| {
                cerr(format!(
                    "region {name} has no instance: (host and port of its Redis endpoint)"
                ))
            })?;
            let host = inst
                .host
                .filter(|h| !h.trim().is_empty())
                .ok_or_else(|| cerr(format!("region {name}: instance has no host")))?;
            cfg.regions.push(CacheRegionConfig {
                name,
                role: r.role,
                endpoint: Endpoint {
                    host,
                    port: inst.port.unwrap_or(6379),
                    tls: inst.tls.unwrap_or(false),
                    user: inst.user,
                    password: inst.password,
                    db: inst.db.unwrap_or(0),
                    ca_file: inst.ca_file,
                },
            });
        }
        for (i, d) in raw.databases.unwrap_or_default().into_iter().enumerate() {
            let name = d
                .name
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| cerr(format!("databases[{i}] has no name")))?;
            let regions = d.regions.unwrap_or_default();
            for r in &regions {
                if !cfg.regions.iter().any(|x| &x.name == r) {
                    return Err(cerr(format!(
                        "database {name} names region {r}, which is not defined under regions:"
                    )));
                }
            }
            cfg.databases.push(CacheDatabase {
                name,
                shards: d.shards,
                regions,
                db: d.db,
            });
        }
        Ok(cfg)
    }

    /// Adds or overrides a region from `--region NAME=redis://…`.
    pub fn apply_region_flag(&mut self, name: &str, url: &str) -> Result<()> {
        let ep = Endpoint::parse_url(url).map_err(|e| {
            Error::Usage(format!(
                "--region {name}: {e} (e.g. redis://[user:password@]host:6379/0)"
            ))
        })?;
        match self.regions.iter_mut().find(|r| r.name == name) {
            Some(r) => {
                let keep_user = r.endpoint.user.take();
                let keep_pw = r.endpoint.password.take();
                let keep_ca = r.endpoint.ca_file.take();
                r.endpoint = Endpoint {
                    user: ep.user.clone().or(keep_user),
                    password: ep.password.clone().or(keep_pw),
                    ca_file: ep.ca_file.clone().or(keep_ca),
                    ..ep
                };
            }
            None => self.regions.push(CacheRegionConfig {
                name: name.to_string(),
                role: None,
                endpoint: ep,
            }),
        }
        Ok(())
    }

    /// The `databases:` entry named `db`.
    pub fn database(&self, db: &str) -> Option<&CacheDatabase> {
        self.databases.iter().find(|d| d.name == db)
    }

    /// The regions holding `db`, in order: the database's `regions:` list when given
    /// (plus regions added by `--region` only), else every region.
    pub fn regions_for(&self, db: &str) -> Result<Vec<CacheRegionConfig>> {
        let mut out: Vec<CacheRegionConfig> = match self.database(db) {
            Some(d) if !d.regions.is_empty() => self
                .regions
                .iter()
                .filter(|r| d.regions.contains(&r.name))
                .cloned()
                .collect(),
            _ => self.regions.clone(),
        };
        if let Some(n) = self.database(db).and_then(|d| d.db) {
            for r in &mut out {
                if r.endpoint.db == 0 {
                    r.endpoint.db = n;
                }
            }
        }
        if out.is_empty() {
            return Err(Error::Usage(format!(
                "no Redis regions for {db}: give --config redis-multi-region.yaml or --region NAME=redis://host:port"
            )));
        }
        // REDISCLI_AUTH supplies the password redis-cli would use.
        if let Ok(pw) = std::env::var("REDISCLI_AUTH") {
            for r in &mut out {
                if r.endpoint.password.is_none() && !pw.is_empty() {
                    r.endpoint.password = Some(pw.clone());
                }
            }
        }
        Ok(out)
    }

    /// The pause between re-reads of differing keys: the larger of 1 s and ten times
    /// `sync_interval_ms`.
    pub fn round_pause(&self) -> Duration {
        let sync = Duration::from_millis(self.sync_interval_ms.unwrap_or(0).saturating_mul(10));
        sync.max(Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let e = Endpoint::parse_url("redis://u:p%40ss@h.example:6380/2").unwrap();
        assert_eq!(
            (
                e.host.as_str(),
                e.port,
                e.user.as_deref(),
                e.password.as_deref(),
                e.db,
                e.tls
            ),
            ("h.example", 6380, Some("u"), Some("p@ss"), 2, false)
        );
        let e = Endpoint::parse_url("rediss://:secret@[::1]").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("::1", 6379, true));
        assert_eq!(e.password.as_deref(), Some("secret"));
        let err = Endpoint::parse_url("redis://u:secret@h:99999").unwrap_err();
        assert!(!err.contains("secret"));
        assert!(Endpoint::parse_url("http://h").is_err());
        let e = Endpoint::parse_url("rediss://u:p/?@h:7000?ca_file=/etc/ca.pem").unwrap();
        assert_eq!(e.password.as_deref(), Some("p/?"));
        assert_eq!(
            e.ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!((e.host.as_str(), e.port, e.db), ("h", 7000, 0));
    }

    #[test]
    fn guide_file() {
        let text = "global:\n  sync_interval_ms: 100\nregions:\n  - name: a\n    instance: {host: h1, port: 6379}\n  - name: b\n    instance: {host: h2, port: 6380}\ndatabases:\n  - name: eden_cache\n    shards: 3\n    regions: [a, b]\n    crdt_options: {source_ttl: true}\n";
        assert!(is_redis_config(text));
        let c = RedisConfig::from_yaml_str(text, "f").unwrap();
        assert_eq!(c.regions_for("eden_cache").unwrap().len(), 2);
        assert_eq!(c.round_pause(), Duration::from_secs(1));
        assert!(!is_redis_config("replication:\n  node_groups: []\n"));
    }
}
