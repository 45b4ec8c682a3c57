//! Replication health of one database in every region (`eden-reconcile status`).
//!
//! For each region: whether it answers, its server version, `track_commit_timestamp`, the
//! replication provider's subscriptions and their state, the replication slots it serves and
//! the WAL they hold back, the lag of the changes arriving there, and the
//! `replication_conflicts` records of the last 24 hours and those still unresolved.
//! Everything wrong becomes a [problem](RegionStatus::problems): one sentence saying what
//! and what to do. Nothing here fails because one region is down or one catalog cannot be
//! read: that is reported as a problem of that region.
//!
//! The report types here are shared by every kind of store: [`StatusReport::kind`] says
//! which, and a region of another kind (a Redis cache) leaves [`RegionStatus::postgresql`]
//! empty and puts what it knows in [`RegionStatus::details`]; [`RegionStatus::lag_seconds`]
//! and [`RegionStatus::conflicts_unresolved`] read either, for the metrics. [`pg`] inspects
//! PostgreSQL regions.

pub mod pg;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value as Json;

pub use pg::{StatusOptions, status};

/// The whole report: one entry per region, in config order.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The database (`--db`).
    pub database: String,
    /// `postgresql` or `redis`.
    pub kind: String,
    /// True when no region has a problem.
    pub healthy: bool,
    /// The config's `global.max_replication_lag_seconds` (null without one).
    pub max_replication_lag_seconds: Option<u64>,
    /// Per region, in config order.
    pub regions: Vec<RegionStatus>,
}

/// One region's state.
#[derive(Debug, Clone, Serialize)]
pub struct RegionStatus {
    /// The region's name.
    pub region: String,
    /// False when it could not be connected to.
    pub reachable: bool,
    /// The server's version (`15.20`), when reachable.
    pub server_version: Option<String>,
    /// What a PostgreSQL region tells (absent for other kinds).
    #[serde(flatten)]
    pub postgresql: Option<PgRegionStatus>,
    /// What a region of another kind tells (e.g. Redis: role, keys, memory, links), as
    /// fields of the region's JSON object.
    #[serde(flatten)]
    pub details: serde_json::Map<String, Json>,
    /// Sentences an operator can act on; empty when all is well.
    pub problems: Vec<String>,
}

impl RegionStatus {
    /// A region that could not be reached, with the reason as its one problem.
    pub fn unreachable(region: &str, problem: String) -> RegionStatus {
        RegionStatus {
            region: region.to_string(),
            reachable: false,
            server_version: None,
            postgresql: None,
            details: serde_json::Map::new(),
            problems: vec![problem],
        }
    }

    /// Seconds the changes arriving in this region lag behind, when known (null when not
    /// replicating).
    pub fn lag_seconds(&self) -> Option<f64> {
        match &self.postgresql {
            Some(pg) => pg.replication.lag_seconds,
            None => self
                .details
                .get("lag_seconds")
                .or_else(|| self.details.get("replication")?.get("lag_seconds"))
                .and_then(Json::as_f64),
        }
    }

    /// Unresolved conflict records held in this region, when known.
    pub fn conflicts_unresolved(&self) -> Option<u64> {
        match &self.postgresql {
            Some(pg) => pg.conflicts.as_ref().map(|c| c.unresolved),
            None => self
                .details
                .get("conflicts")?
                .get("unresolved")
                .and_then(Json::as_u64),
        }
    }
}

/// What a reachable PostgreSQL region tells.
#[derive(Debug, Clone, Serialize)]
pub struct PgRegionStatus {
    /// `track_commit_timestamp` (null when it could not be read).
    pub track_commit_timestamp: Option<bool>,
    /// Subscriptions, slots and lag.
    pub replication: Replication,
    /// `replication_conflicts` counts (zeros with `table_exists: false` when the table has
    /// not been created yet; null when it could not be read).
    pub conflicts: Option<ConflictCounts>,
}

/// The replication seen from one region.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Replication {
    /// `pglogical` or `native` (null when neither is set up here).
    pub provider: Option<String>,
    /// The pglogical node of this database, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Subscriptions of this region's database (changes arriving here).
    pub subscriptions: Vec<Subscription>,
    /// Replication slots of this database (changes leaving from here) and physical slots.
    pub slots: Vec<Slot>,
    /// How far behind the changes arriving here are, in seconds: the largest lag of this
    /// region's subscriptions; null when a subscription is not replicating, when there is
    /// none, or when its provider could not be asked.
    pub lag_seconds: Option<f64>,
}

/// One subscription.
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    /// Its name.
    pub name: String,
    /// `replicating`, `initializing`, `disabled`, `down` or `unknown`.
    pub status: String,
    /// Whether it is enabled.
    pub enabled: Option<bool>,
    /// The providing node (pglogical) or region, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The slot it streams from, in the provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// Lag in seconds, from its slot in the provider (null when not replicating or unknown).
    pub lag_seconds: Option<f64>,
    /// Counters of `pg_stat_subscription_stats` (native, PostgreSQL 15+): `apply_error_count`,
    /// `sync_error_count`, and on PostgreSQL 18 the `confl_*` conflict counters.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub counters: BTreeMap<String, i64>,
    /// Conflicts the subscription's apply worker met and resolved itself, summed over the
    /// `confl_*` counters (PostgreSQL 18+; absent before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicts_detected: Option<i64>,
}

impl Subscription {
    /// The sum of the `confl_*` counters, when the server has any.
    pub fn conflict_total(counters: &BTreeMap<String, i64>) -> Option<i64> {
        counters
            .iter()
            .filter(|(k, _)| k.starts_with("confl_"))
            .map(|(_, v)| *v)
            .reduce(|a, b| a + b)
    }
}

/// One replication slot.
#[derive(Debug, Clone, Serialize)]
pub struct Slot {
    /// Its name.
    pub name: String,
    /// `logical` or `physical`.
    pub slot_type: String,
    /// True while a subscriber streams from it.
    pub active: bool,
    /// WAL the server keeps for it (bytes from its restart point to the current position).
    pub retained_bytes: Option<i64>,
    /// `wal_status` (PostgreSQL 13+): `reserved`, `extended`, `unreserved`, `lost`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
    /// Replay lag of its subscriber in seconds (0 when caught up; null when inactive).
    pub lag_seconds: Option<f64>,
}

/// `replication_conflicts` counts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConflictCounts {
    /// Records created in the last 24 hours.
    pub last_24h: u64,
    /// Records not resolved.
    pub unresolved: u64,
    /// False when the table does not exist (yet): `eden-reconcile init` creates it.
    pub table_exists: bool,
}

/// `8192` → `8.0 kB`.
pub fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v.abs() >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl StatusReport {
    /// Exit code: 0 healthy, 1 problems found.
    pub fn exit_code(&self) -> i32 {
        if self.healthy { 0 } else { 1 }
    }

    /// Number of problems in all regions.
    pub fn problem_count(&self) -> usize {
        self.regions.iter().map(|r| r.problems.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_counters() {
        let mut c: BTreeMap<String, i64> = [("apply_error_count".to_string(), 3)].into();
        assert_eq!(Subscription::conflict_total(&c), None);
        c.insert("confl_update_origin_differs".into(), 2);
        c.insert("confl_delete_missing".into(), 1);
        assert_eq!(Subscription::conflict_total(&c), Some(3));
    }

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(8192), "8.0 kB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MB");
    }

    #[test]
    fn unreachable_json() {
        let r = RegionStatus::unreachable("us-east-1", "down".into());
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"region": "us-east-1", "reachable": false, "server_version": null, "problems": ["down"]})
        );
        assert_eq!(r.lag_seconds(), None);
    }
}
