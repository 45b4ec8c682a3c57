//! Connections to the cache regions: one per master. A region whose endpoint runs Redis
//! Cluster is read through every master it lists (`CLUSTER NODES`), and single keys are
//! routed to the master serving their hash slot.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use super::config::{CacheRegionConfig, Endpoint};
use crate::error::{Error, Result};

/// How to connect.
#[derive(Debug, Clone)]
pub struct RedisConnectOptions {
    /// Time allowed for TCP, TLS and login to one server (default 10 s).
    pub timeout: Duration,
    /// Time allowed for one reply (default 120 s).
    pub response_timeout: Duration,
}

impl Default for RedisConnectOptions {
    fn default() -> Self {
        RedisConnectOptions {
            timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(120),
        }
    }
}

/// One master of a region (the region's only server when not in cluster mode).
#[derive(Clone)]
pub struct Node {
    /// `host:port`.
    pub addr: String,
    /// The connection (cheap to clone; commands are pipelined on one socket).
    pub conn: MultiplexedConnection,
    endpoint: Endpoint,
    opts: RedisConnectOptions,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("addr", &self.addr).finish()
    }
}

impl Node {
    /// A new connection of its own to this node (for `WATCH`/`MULTI`, which need one).
    pub async fn dedicated(&self) -> redis::RedisResult<MultiplexedConnection> {
        open(&self.endpoint, &self.opts).await
    }
}

/// One connected cache region.
#[derive(Debug, Clone)]
pub struct CacheRegion {
    /// The region's name.
    pub name: String,
    /// The configured endpoint's `host:port`.
    pub addr: String,
    /// Masters: one for a standalone server, every master of a cluster.
    pub nodes: Vec<Node>,
    /// For a cluster: the node index serving each of the 16384 hash slots.
    pub slots: Option<Vec<u16>>,
    /// `redis_version` of the (first) server.
    pub version: String,
    /// True when the server has `PEXPIRETIME` (Redis 7 and later).
    pub has_pexpiretime: bool,
    /// The logical database number.
    pub db: i64,
}

impl CacheRegion {
    /// True when this region runs Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.slots.is_some()
    }

    /// The node holding `key`.
    pub fn node_for(&self, key: &[u8]) -> &Node {
        match &self.slots {
            Some(map) => &self.nodes[map[key_slot(key) as usize] as usize],
            None => &self.nodes[0],
        }
    }

    /// The index of the node holding `key`.
    pub fn node_index(&self, key: &[u8]) -> usize {
        match &self.slots {
            Some(map) => map[key_slot(key) as usize] as usize,
            None => 0,
        }
    }

    pub(crate) fn conn_err(&self, message: impl std::fmt::Display) -> Error {
        Error::Connection {
            region: self.name.clone(),
            addr: self.addr.clone(),
            message: message.to_string(),
        }
    }

    pub(crate) fn query_err(&self, context: &str, e: &redis::RedisError) -> Error {
        Error::Query {
            region: self.name.clone(),
            context: context.to_string(),
            message: redis_message(e),
        }
    }
}

/// A Redis error as one sentence without any connection string.
pub fn redis_message(e: &redis::RedisError) -> String {
    let text = e.to_string();
    text.replace('\n', " ").trim().to_string()
}

fn connection_info(ep: &Endpoint) -> redis::RedisResult<ConnectionInfo> {
    let addr = if ep.tls {
        ConnectionAddr::TcpTls {
            host: ep.host.clone(),
            port: ep.port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(ep.host.clone(), ep.port)
    };
    let mut redis = redis::RedisConnectionInfo::default().set_db(ep.db);
    if let Some(u) = &ep.user {
        redis = redis.set_username(u);
    }
    if let Some(p) = &ep.password {
        redis = redis.set_password(p);
    }
    Ok(addr.into_connection_info()?.set_redis_settings(redis))
}

async fn open(
    ep: &Endpoint,
    opts: &RedisConnectOptions,
) -> redis::RedisResult<MultiplexedConnection> {
    let client = match (&ep.ca_file, ep.tls) {
        (Some(ca), true) => {
            let pem = std::fs::read(ca).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "cannot read the CA file",
                    format!("{}: {e}", ca.display()),
                ))
            })?;
            Client::build_with_tls(
                connection_info(ep)?,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )?
        }
        _ => Client::open(connection_info(ep)?)?,
    };
    let cfg = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(opts.timeout))
        .set_response_timeout(Some(opts.response_timeout));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

/// Reasons a connection failed, worded for an operator (never the password).
fn connect_reason(e: &redis::RedisError) -> String {
    let m = redis_message(e);
    if m.contains("WRONGPASS")
        || m.contains("invalid password")
        || m.contains("invalid username-password")
    {
        "the server refused the login (wrong user or password; REDISCLI_AUTH or the URL's user:password give them)".into()
    } else if m.contains("NOAUTH") {
        "the server needs a password (give it in the URL, the config's instance.password or REDISCLI_AUTH)".into()
    } else {
        format!("cannot connect: {m}")
    }
}

/// Connects to one region: its endpoint, then, when it runs Redis Cluster, every master.
pub async fn connect_region(
    region: &CacheRegionConfig,
    opts: &RedisConnectOptions,
) -> Result<CacheRegion> {
    let ep = &region.endpoint;
    let mut out = CacheRegion {
        name: region.name.clone(),
        addr: ep.addr(),
        nodes: Vec::new(),
        slots: None,
        version: String::new(),
        has_pexpiretime: false,
        db: ep.db,
    };
    let mut conn = open(ep, opts)
        .await
        .map_err(|e| out.conn_err(connect_reason(&e)))?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .map_err(|e| out.conn_err(connect_reason(&e)))?;
    out.version = info_field(&info, "redis_version").unwrap_or_default();
    let major: u32 = out
        .version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    out.has_pexpiretime = major >= 7;
    let cluster: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if info_field(&cluster, "cluster_enabled").as_deref() != Some("1") {
        out.nodes.push(Node {
            addr: out.addr.clone(),
            conn,
            endpoint: ep.clone(),
            opts: opts.clone(),
        });
        return Ok(out);
    }
    if ep.db != 0 {
        return Err(
            out.conn_err("the endpoint runs Redis Cluster, which has only logical database 0")
        );
    }
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .map_err(|e| out.query_err("reading CLUSTER NODES", &e))?;
    let masters = parse_cluster_nodes(&nodes, &ep.host);
    if masters.is_empty() {
        return Err(out.conn_err("the cluster lists no master serving slots"));
    }
    let mut slots = vec![u16::MAX; 16384];
    for (i, (host, port, ranges)) in masters.iter().enumerate() {
        let node_ep = Endpoint {
            host: host.clone(),
            port: *port,
            ..ep.clone()
        };
        let addr = node_ep.addr();
        let conn = open(&node_ep, opts)
            .await
            .map_err(|e| out.conn_err(format!("cluster master {addr}: {}", connect_reason(&e))))?;
        for (a, b) in ranges {
            for s in *a..=*b {
                if (s as usize) < slots.len() {
                    slots[s as usize] = i as u16;
                }
            }
        }
        out.nodes.push(Node {
            addr,
            conn,
            endpoint: node_ep,
            opts: opts.clone(),
        });
    }
    if let Some(s) = slots.iter().position(|n| *n == u16::MAX) {
        return Err(out.conn_err(format!(
            "the cluster does not serve hash slot {s} (cluster_state is not ok)"
        )));
    }
    out.slots = Some(slots);
    Ok(out)
}

/// Connects to every region at once; all failures are reported together in one sentence.
pub async fn connect_all(
    regions: &[CacheRegionConfig],
    opts: &RedisConnectOptions,
) -> Result<Vec<CacheRegion>> {
    let tasks: Vec<_> = regions
        .iter()
        .map(|r| {
            let r = r.clone();
            let opts = opts.clone();
            tokio::spawn(async move { connect_region(&r, &opts).await })
        })
        .collect();
    let mut out = Vec::new();
    let mut errors: Vec<Error> = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(r)) => out.push(r),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(Error::Usage(format!("connecting: {e}"))),
        }
    }
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => {
            let first = errors.remove(0);
            let (region, addr, message) = match first {
                Error::Connection {
                    region,
                    addr,
                    message,
                } => (region, addr, message),
                other => return Err(other),
            };
            let rest: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            Err(Error::Connection {
                region,
                addr,
                message: format!("{message}; and {}", rest.join("; ")),
            })
        }
    }
}

/// `field:value` from an `INFO` reply.
pub fn info_field(info: &str, field: &str) -> Option<String> {
    info.lines().find_map(|l| {
        let l = l.trim_end_matches('\r');
        l.strip_prefix(field)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::to_string)
    })
}

type Master = (String, u16, Vec<(u16, u16)>);

/// Masters with their slot ranges from a `CLUSTER NODES` reply; an empty address (a node
/// that does not know its own) becomes `seed_host`.
fn parse_cluster_nodes(text: &str, seed_host: &str) -> Vec<Master> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let flags = f[2];
        if !flags.split(',').any(|x| x == "master")
            || flags
                .split(',')
                .any(|x| x == "fail" || x == "noaddr" || x == "handshake")
        {
            continue;
        }
        let addr = f[1].split('@').next().unwrap_or("");
        let addr = addr.split(',').next().unwrap_or("");
        let Some(colon) = addr.rfind(':') else {
            continue;
        };
        let mut host = addr[..colon]
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        let Ok(port) = addr[colon + 1..].parse::<u16>() else {
            continue;
        };
        if host.is_empty() {
            host = seed_host.to_string();
        }
        let mut ranges = Vec::new();
        for s in &f[8..] {
            if s.starts_with('[') {
                continue;
            }
            let (a, b) = match s.split_once('-') {
                Some((a, b)) => (a.parse().ok(), b.parse().ok()),
                None => (s.parse().ok(), s.parse().ok()),
            };
            if let (Some(a), Some(b)) = (a, b) {
                ranges.push((a, b));
            }
        }
        if !ranges.is_empty() {
            out.push((host, port, ranges));
        }
    }
    out
}

/// The Redis Cluster hash slot of a key (CRC16/XMODEM of the key or its `{hash tag}`).
pub fn key_slot(key: &[u8]) -> u16 {
    let mut k = key;
    if let Some(open) = key.iter().position(|&c| c == b'{') {
        if let Some(close) = key[open + 1..].iter().position(|&c| c == b'}') {
            if close > 0 {
                k = &key[open + 1..open + 1 + close];
            }
        }
    }
    crc16(k) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
    }

    #[test]
    fn nodes() {
        let t = "a 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\nb 127.0.0.1:7002@17002 master - 0 0 2 connected 5461-10922 [1->-x]\nc 127.0.0.1:7004@17004 slave b 0 0 2 connected\n";
        let m = parse_cluster_nodes(t, "h");
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].2, vec![(5461, 10922)]);
    }
}
