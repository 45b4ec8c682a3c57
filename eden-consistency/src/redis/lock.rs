//! The run lock of a cache: a key with an expiry, renewed while the run lasts.
//!
//! `fix` sets `eden-reconcile:lock:<database>` (only if absent, with an expiry of
//! [`lock_ttl`]) in the first region; its value names the holder (command, host, pid,
//! start time). A background task renews the expiry every third of it, only while the key
//! still holds this run's value; the end of the run deletes it, again only if still its own.
//! A killed run's key expires by itself. Check and fix never compare nor archive such keys.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::connect::{CacheRegion, redis_message};
use crate::error::{Error, Result};

/// Keys beginning with this are run locks, never compared, repaired nor archived.
pub const LOCK_PREFIX: &[u8] = b"eden-reconcile:lock:";

/// The lock key of `database`.
pub fn lock_key(database: &str) -> String {
    format!("eden-reconcile:lock:{database}")
}

/// The lock's expiry: 30 s, or `EDEN_RECONCILE_REDIS_LOCK_TTL_MS` milliseconds when set
/// (tests use a short one to see a killed run's lock expire).
pub fn lock_ttl() -> Duration {
    std::env::var("EDEN_RECONCILE_REDIS_LOCK_TTL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms >= 100)
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(30))
}

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A held cache lock; [`CacheLock::release`] gives it back (dropping it stops the renewal
/// and lets the key expire).
pub struct CacheLock {
    conn: MultiplexedConnection,
    key: String,
    value: String,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for CacheLock {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

impl CacheLock {
    /// Stops renewing and deletes the key if it is still this run's.
    pub async fn release(mut self) {
        self.renewer.abort();
        let r: redis::RedisResult<i64> = redis::Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.value)
            .invoke_async(&mut self.conn)
            .await;
        if let Err(e) = r {
            tracing::warn!(key = %self.key, error = %redis_message(&e), "could not delete the run lock; it expires by itself");
        }
    }
}

/// Takes the run lock of `database` in `region` for `command`. When another run holds it:
/// with `wait` `None`, fails at once naming the holder; otherwise tries again every half
/// second for up to `wait`, then fails the same way.
pub async fn acquire(
    region: &CacheRegion,
    database: &str,
    command: &str,
    wait: Option<Duration>,
) -> Result<CacheLock> {
    let key = lock_key(database);
    let node = region.node_for(key.as_bytes());
    let mut conn = node.conn.clone();
    let ttl = lock_ttl();
    let host = whoami::hostname().unwrap_or_else(|_| "unknown".into());
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let value = format!(
        "{command} host={host} pid={} started={started_at}",
        std::process::id()
    );
    let fail = |e: &redis::RedisError| region.query_err("taking the run lock", e);
    let started = Instant::now();
    loop {
        let got: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(|e| fail(&e))?;
        if got.is_some() {
            tracing::info!(region = %region.name, key = %key, "run lock taken");
            let renewer = {
                let (mut conn, key, value) = (conn.clone(), key.clone(), value.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(ttl / 3).await;
                        let r: redis::RedisResult<i64> = redis::Script::new(RENEW)
                            .key(&key)
                            .arg(&value)
                            .arg(ttl.as_millis() as u64)
                            .invoke_async(&mut conn)
                            .await;
                        match r {
                            Ok(1) => {}
                            Ok(_) => {
                                tracing::warn!(key = %key, "the run lock is no longer this run's");
                                return;
                            }
                            Err(e) => {
                                tracing::warn!(key = %key, error = %redis_message(&e), "could not renew the run lock")
                            }
                        }
                    }
                })
            };
            return Ok(CacheLock {
                conn,
                key,
                value,
                renewer,
            });
        }
        let elapsed = started.elapsed();
        match wait {
            Some(w) if elapsed < w => {
                tokio::time::sleep(Duration::from_millis(500).min(w - elapsed)).await;
            }
            _ => {
                let holder: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| fail(&e))?;
                let who = holder
                    .map(|h| format!("the run \"{h}\""))
                    .unwrap_or_else(|| "another run (which has just finished)".into());
                let waited = match wait {
                    Some(w) => format!(
                        "; still held after waiting {}",
                        crate::lock::format_duration(w)
                    ),
                    None => "; wait for it to finish, or pass --wait-lock DURATION (e.g. --wait-lock 5m) to wait".into(),
                };
                return Err(Error::Usage(format!(
                    "cache {database} is locked by {who} (key {key} in region {}){waited}",
                    region.name
                )));
            }
        }
    }
}
