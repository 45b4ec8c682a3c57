//! Redis caches: the same check and fix over a second keyed source, a cache's keyspace.
//!
//! The operators' `redis-multi-region.yaml` names the regions and the cache databases
//! ([`RedisConfig`]); [`CacheChecker::connect`] reaches every region (every master of a
//! Redis Cluster), [`CacheChecker::check`] compares every key in both directions (presence,
//! type, content through a canonical digest, absolute expiry) and re-reads differing keys to
//! tell settled differences from keys still being written, and [`CacheChecker::fix`]
//! repairs what differs: deleting the key everywhere (a cache refills from its source of
//! truth) or copying one region's version, every change guarded and every overwritten or
//! deleted key archived first as a JSON line holding its `DUMP` payload.
//!
//! ```no_run
//! # async fn demo() -> eden_consistency::Result<()> {
//! use std::path::Path;
//! use eden_consistency::redis::{CacheChecker, CacheCheckOptions, CacheFixOptions, RedisConfig, RedisConnectOptions};
//! let config = RedisConfig::load(Path::new("redis-multi-region.yaml"))?;
//! let checker = CacheChecker::connect(&config, "eden_cache", &RedisConnectOptions::default()).await?;
//! let report = checker.check(&CacheCheckOptions::default()).await?;
//! if !report.consistent {
//!     let fixed = checker.fix(&CacheFixOptions { dry_run: true, ..Default::default() }).await?;
//!     println!("{} change(s) planned", fixed.tables[0].actions.len());
//! }
//! # Ok(()) }
//! ```

pub mod check;
pub mod config;
pub mod connect;
pub mod digest;
pub mod fix;
pub mod lock;
pub(crate) mod source;
pub mod status;

pub use check::{CacheCheckOptions, CacheChecker, CacheDifference, CacheReport};
pub use config::{Endpoint, RedisConfig, is_redis_config, is_redis_url};
pub use connect::{CacheRegion, RedisConnectOptions};
pub use fix::{CacheAction, CacheFixOptions, CacheFixReport};
