//! Connecting to the regions a config names (the connections themselves are
//! [`crate::pg::connect`]'s, which knows nothing of the config).

use super::{Config, RegionConfig};
use crate::error::Result;
use crate::pg::connect::{ConnectOptions, Region, connect_many, connect_one};

/// Connects to one region of the config, at position `index` in tie-break order: its
/// connection parameters completed from the environment (see `docs/config.md`), its
/// database the conninfo's `dbname`, else `db` (when not empty), else `PGDATABASE`, else the
/// user name.
pub async fn connect_region(
    cfg: &RegionConfig,
    index: usize,
    db: &str,
    opts: &ConnectOptions,
) -> Result<Region> {
    connect_one(&cfg.name, &cfg.conn, index, db, opts).await
}

/// Connects to every region of `cfg` (after validating it) concurrently, each within its
/// timeout. On failure the error is that of the first failing region in config order
/// (whatever failed first in time), and the other sessions are closed.
pub async fn connect_all(
    cfg: &Config,
    db: Option<&str>,
    opts: &ConnectOptions,
) -> Result<Vec<Region>> {
    cfg.validate()?;
    connect_many(
        cfg.regions.iter().map(|r| (r.name.as_str(), &r.conn)),
        db,
        opts,
    )
    .await
}
