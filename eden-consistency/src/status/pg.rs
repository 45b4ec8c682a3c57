//! The PostgreSQL side of `status`.
//!
//! The queries follow the server: pglogical is read through its own function and tables
//! (`pglogical.show_subscription_status()`, `pglogical.subscription`, `pglogical.node`) when
//! the extension is installed; native logical replication through `pg_subscription` and
//! `pg_stat_subscription`, plus the counters of `pg_stat_subscription_stats` from
//! PostgreSQL 15 on (with the per-type conflict counters `confl_*` that PostgreSQL 18 adds).
//! The lag of a region is that of the slots its subscriptions read in the other regions
//! (`pg_replication_slots` joined with `pg_stat_replication`); the WAL a slot keeps is
//! `pg_wal_lsn_diff` from its restart point. A catalog that cannot be read (a missing
//! privilege, an old server) is a problem line of that region.

use std::collections::BTreeMap;

use serde_json::Value as Json;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::{
    ConflictCounts, PgRegionStatus, RegionStatus, Replication, Slot, StatusReport, Subscription,
    human_bytes,
};
use crate::config::Config;
use crate::config::connect_region;
use crate::error::{Result, pg_message};
use crate::pg::connect::{ConnectOptions, Region};
use crate::pg::ident::TableName;

/// How to build a [`StatusReport`].
#[derive(Debug, Clone)]
pub struct StatusOptions {
    /// The database.
    pub database: String,
    /// Where `replication_conflicts` lives.
    pub conflicts_table: TableName,
    /// How to connect.
    pub connect: ConnectOptions,
}

/// Inspects every region of `config` for `opts.database`. Fails only when the config
/// cannot be used (no regions, ...); regions that cannot be reached are reported.
pub async fn status(config: &Config, opts: &StatusOptions) -> Result<StatusReport> {
    config.validate()?;
    let probes = futures_util::future::join_all(config.regions.iter().enumerate().map(
        |(i, r)| async move {
            match connect_region(r, i, &opts.database, &opts.connect).await {
                Ok(region) => Ok(probe(&region, opts).await),
                Err(e) => Err(e),
            }
        },
    ))
    .await;
    let max_lag = config.global.max_replication_lag_seconds;
    let provider = config.provider.as_deref().map(str::to_ascii_lowercase);
    // pglogical node name → region, to name each subscription's provider region.
    let node_region: BTreeMap<String, String> = config
        .regions
        .iter()
        .zip(&probes)
        .filter_map(|(r, p)| Some((p.as_ref().ok()?.node.clone()?, r.name.clone())))
        .collect();
    let mut out = Vec::new();
    for (r, p) in config.regions.iter().zip(probes) {
        out.push(match p {
            Ok(p) => finish_region(
                &r.name,
                p,
                config,
                &opts.database,
                &opts.conflicts_table,
                provider.as_deref(),
                &node_region,
            ),
            Err(e) => RegionStatus::unreachable(
                &r.name,
                format!(
                    "{e}: the region is unreachable, so replication to and from it cannot be checked; check that its server is up, reachable from here and holds database {}",
                    opts.database
                ),
            ),
        });
    }
    // Second pass: subscription lags come from the providers' slots.
    let slots: Vec<(String, Vec<Slot>)> = out
        .iter()
        .filter_map(|r| {
            Some((
                r.region.clone(),
                r.postgresql.as_ref()?.replication.slots.clone(),
            ))
        })
        .collect();
    for r in &mut out {
        let name = r.region.clone();
        let Some(pg) = r.postgresql.as_mut() else {
            continue;
        };
        let mut all_known = !pg.replication.subscriptions.is_empty();
        let mut worst: Option<f64> = None;
        for s in &mut pg.replication.subscriptions {
            if s.status != "replicating" {
                all_known = false;
                continue;
            }
            let lag = s.slot.as_deref().and_then(|slot| {
                slots
                    .iter()
                    .filter(|(reg, _)| *reg != name)
                    .filter(|(reg, _)| s.provider.as_deref().is_none_or(|p| p == reg))
                    .flat_map(|(_, v)| v.iter())
                    .filter(|sl| sl.name == slot)
                    .filter_map(|sl| sl.lag_seconds)
                    .reduce(f64::max)
            });
            s.lag_seconds = lag;
            match lag {
                Some(l) => worst = Some(worst.map_or(l, |w| w.max(l))),
                None => all_known = false,
            }
        }
        pg.replication.lag_seconds = if all_known { worst } else { None };
        if let (Some(lag), Some(max)) = (pg.replication.lag_seconds, max_lag) {
            if lag > max as f64 {
                r.problems.push(format!(
                    "region {name}: replication lag is {lag:.1} s, above max_replication_lag_seconds ({max} s); look for long transactions or a slow network between the regions"
                ));
            }
        }
    }
    // Slots, with the subscription reading each (found in the other regions).
    let readers: Vec<(String, String, String)> =
        out.iter()
            .flat_map(|r| {
                r.postgresql.iter().flat_map(move |pg| {
                    pg.replication.subscriptions.iter().filter_map(move |s| {
                        Some((s.slot.clone()?, r.region.clone(), s.name.clone()))
                    })
                })
            })
            .collect();
    for r in &mut out {
        let region = r.region.clone();
        let Some(pg) = &r.postgresql else { continue };
        let mut found = Vec::new();
        for s in &pg.replication.slots {
            let reader = readers
                .iter()
                .find(|(slot, reg, _)| *slot == s.name && *reg != region)
                .map(|(_, reg, sub)| format!(" (read by subscription {sub} of region {reg})"))
                .unwrap_or_default();
            if s.wal_status.as_deref() == Some("lost") {
                found.push(format!(
                    "region {region}: replication slot {}{reader} has lost WAL its subscriber still needed (wal_status lost); that subscription must be re-created",
                    s.name
                ));
            } else if !s.active && s.retained_bytes.unwrap_or(0) > 0 {
                let fix = if reader.is_empty() {
                    format!(
                        "if its subscriber is gone, drop it (SELECT pg_drop_replication_slot('{}')) before it fills the disk",
                        s.name.replace('\'', "''")
                    )
                } else {
                    "re-enable or reconnect that subscription before the WAL fills the disk".into()
                };
                found.push(format!(
                    "region {region}: replication slot {}{reader} is inactive and retains {} of WAL; {fix}",
                    s.name,
                    human_bytes(s.retained_bytes.unwrap_or(0))
                ));
            }
        }
        r.problems.extend(found);
    }
    let healthy = out.iter().all(|r| r.problems.is_empty());
    Ok(StatusReport {
        database: opts.database.clone(),
        kind: "postgresql".into(),
        healthy,
        max_replication_lag_seconds: max_lag,
        regions: out,
    })
}

/// What was read from one region.
struct Probe {
    version: Option<String>,
    commit_ts: Option<bool>,
    pglogical: bool,
    node: Option<String>,
    subscriptions: Option<(String, Vec<Subscription>)>,
    slots: Vec<Slot>,
    conflicts: Option<ConflictCounts>,
    problems: Vec<String>,
}

/// Turns a probe into the region's report and its problems.
fn finish_region(
    region: &str,
    p: Probe,
    config: &Config,
    db: &str,
    conflicts_table: &TableName,
    provider: Option<&str>,
    node_region: &BTreeMap<String, String>,
) -> RegionStatus {
    let mut problems = p.problems;
    let (kind, mut subs) = p
        .subscriptions
        .map(|(k, s)| (Some(k), s))
        .unwrap_or((None, Vec::new()));
    if provider == Some("pglogical") && !p.pglogical {
        problems.push(format!(
            "region {region}: the pglogical extension is not installed in database {db}, although the config's replication provider is pglogical; create it (CREATE EXTENSION pglogical), then the node and its subscriptions"
        ));
    }
    for s in &mut subs {
        if let Some(node) = &s.provider {
            if let Some(r) = node_region.get(node) {
                s.provider = Some(r.clone());
            }
        }
        if s.status != "replicating" {
            let fix = match (kind.as_deref(), s.status.as_str()) {
                (Some("pglogical"), "disabled") => format!(
                    "enable it with SELECT pglogical.alter_subscription_enable('{}')",
                    s.name.replace('\'', "''")
                ),
                (_, "disabled") => format!(
                    "enable it with ALTER SUBSCRIPTION {} ENABLE",
                    sql_name(&s.name)
                ),
                (_, "initializing") => {
                    "its initial copy is still running; check again when it is done".into()
                }
                _ => format!("see the server log of region {region} for the apply worker's error"),
            };
            let from = s
                .provider
                .as_deref()
                .map(|p| format!(" from {p}"))
                .unwrap_or_default();
            problems.push(format!(
                "region {region}: subscription {}{from} is {}, not replicating, so changes made elsewhere do not arrive here; {fix}",
                s.name, s.status
            ));
        }
    }
    if subs.is_empty() && config.regions.len() > 1 && kind.is_some() {
        problems.push(format!(
            "region {region}: database {db} has no subscription, so changes made in the other regions do not arrive here; subscribe it to each other region"
        ));
    } else if subs.is_empty() && config.regions.len() > 1 {
        problems.push(format!(
            "region {region}: database {db} has no logical replication set up (neither a pglogical node nor a native subscription), so changes made in the other regions do not arrive here"
        ));
    }
    if let Some(c) = &p.conflicts {
        if c.unresolved > 0 {
            problems.push(format!(
                "region {region}: {} unresolved conflict(s) in {conflicts_table}; list them with eden-reconcile conflicts --db {db} --in {region} --unresolved",
                c.unresolved
            ));
        }
    }
    RegionStatus {
        region: region.to_string(),
        reachable: true,
        server_version: p.version,
        postgresql: Some(PgRegionStatus {
            track_commit_timestamp: p.commit_ts,
            replication: Replication {
                provider: kind,
                node: p.node,
                subscriptions: subs,
                slots: p.slots,
                lag_seconds: None,
            },
            conflicts: p.conflicts,
        }),
        details: serde_json::Map::new(),
        problems,
    }
}

/// An identifier as an operator would type it: bare when that is the same name.
fn sql_name(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        crate::pg::ident::quote_ident(name)
    }
}

/// A problem sentence for a query that failed; a missing privilege says what to grant:
/// `grant` completes "grant the user U ...".
fn read_problem(
    region: &str,
    what: &str,
    err: &tokio_postgres::Error,
    user: &str,
    grant: &str,
) -> String {
    let msg = pg_message(err);
    if err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        format!("region {region}: cannot read {what}: {msg}; grant the user {user} {grant}")
    } else {
        format!("region {region}: cannot read {what}: {msg}")
    }
}

const MONITOR: &str = "the pg_monitor role";

/// Reads everything this module reports from one region.
async fn probe(region: &Region, opts: &StatusOptions) -> Probe {
    let c = &region.client;
    let name = region.name.as_str();
    let user = region.user();
    let mut problems = Vec::new();
    let mut p = Probe {
        version: None,
        commit_ts: None,
        pglogical: false,
        node: None,
        subscriptions: None,
        slots: Vec::new(),
        conflicts: None,
        problems: Vec::new(),
    };
    let mut version_num = 0i32;
    match c
        .query_one(
            "SELECT current_setting('server_version'), current_setting('server_version_num')::int, \
             current_setting('track_commit_timestamp') = 'on', \
             EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pglogical')",
            &[],
        )
        .await
    {
        Ok(row) => {
            let v: String = row.get(0);
            p.version = Some(v.split_whitespace().next().unwrap_or(&v).to_string());
            version_num = row.get(1);
            p.commit_ts = Some(row.get(2));
            p.pglogical = row.get(3);
        }
        Err(e) => problems.push(read_problem(name, "the server settings", &e, user, MONITOR)),
    }
    if p.pglogical {
        match pglogical_subscriptions(c).await {
            Ok((node, subs)) => {
                p.node = node;
                p.subscriptions = Some(("pglogical".into(), subs));
            }
            Err(e) => problems.push(read_problem(
                name,
                "pglogical's subscriptions",
                &e,
                user,
                "USAGE on schema pglogical and SELECT on its tables",
            )),
        }
    }
    // Native subscriptions count too (a database may use both, or be migrating).
    if p.subscriptions.as_ref().is_none_or(|(_, s)| s.is_empty()) && version_num >= 100000 {
        match native_subscriptions(c, version_num).await {
            Ok(subs) if !subs.is_empty() => p.subscriptions = Some(("native".into(), subs)),
            Ok(_) => {}
            Err(e) => problems.push(read_problem(name, "pg_subscription", &e, user, MONITOR)),
        }
    }
    match slots(c, version_num).await {
        Ok(s) => p.slots = s,
        Err(e) => problems.push(read_problem(
            name,
            "pg_replication_slots",
            &e,
            user,
            MONITOR,
        )),
    }
    match conflicts(c, &opts.conflicts_table).await {
        Ok(cc) => p.conflicts = cc,
        Err(e) => problems.push(read_problem(
            name,
            &opts.conflicts_table.to_string(),
            &e,
            user,
            &format!(
                "SELECT on {} (and USAGE on its schema)",
                opts.conflicts_table
            ),
        )),
    }
    p.problems = problems;
    p
}

async fn pglogical_subscriptions(
    c: &Client,
) -> std::result::Result<(Option<String>, Vec<Subscription>), tokio_postgres::Error> {
    let node = c
        .query_opt(
            "SELECT n.node_name::text FROM pglogical.local_node l JOIN pglogical.node n ON n.node_id = l.node_id",
            &[],
        )
        .await?
        .map(|r| r.get::<_, String>(0));
    let rows = c
        .query(
            "SELECT s.subscription_name::text, s.status::text, s.provider_node::text, s.slot_name::text, \
             (SELECT sub_enabled FROM pglogical.subscription ps WHERE ps.sub_name = s.subscription_name) \
             FROM pglogical.show_subscription_status() s ORDER BY 1",
            &[],
        )
        .await?;
    let subs = rows
        .iter()
        .map(|r| Subscription {
            name: r.get(0),
            status: r.get(1),
            provider: r.get(2),
            slot: r.get(3),
            enabled: r.get(4),
            lag_seconds: None,
            counters: BTreeMap::new(),
            conflicts_detected: None,
        })
        .collect();
    Ok((node, subs))
}

async fn native_subscriptions(
    c: &Client,
    version_num: i32,
) -> std::result::Result<Vec<Subscription>, tokio_postgres::Error> {
    let rows = c
        .query(
            "SELECT s.subname::text, s.subenabled, s.subslotname::text, \
             EXISTS (SELECT 1 FROM pg_stat_subscription st WHERE st.subid = s.oid AND st.relid IS NULL AND st.pid IS NOT NULL), \
             EXISTS (SELECT 1 FROM pg_subscription_rel r WHERE r.srsubid = s.oid AND r.srsubstate <> 'r') \
             FROM pg_subscription s \
             WHERE s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY 1",
            &[],
        )
        .await?;
    let mut counters: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    if version_num >= 150000 {
        // Every counter the server has (PostgreSQL 18 adds the confl_* conflict counters).
        for r in c
            .query(
                "SELECT subname::text, (to_jsonb(s) - 'subid' - 'subname' - 'stats_reset')::text \
                 FROM pg_stat_subscription_stats s",
                &[],
            )
            .await?
        {
            let name: String = r.get(0);
            let text: String = r.get(1);
            if let Ok(Json::Object(m)) = serde_json::from_str::<Json>(&text) {
                counters.insert(
                    name,
                    m.into_iter()
                        .filter_map(|(k, v)| Some((k, v.as_i64()?)))
                        .collect(),
                );
            }
        }
    }
    Ok(rows
        .iter()
        .map(|r| {
            let name: String = r.get(0);
            let enabled: bool = r.get(1);
            let running: bool = r.get(3);
            let syncing: bool = r.get(4);
            let status = match (enabled, running, syncing) {
                (false, _, _) => "disabled",
                (true, true, true) => "initializing",
                (true, true, false) => "replicating",
                (true, false, _) => "down",
            };
            let counters = counters.remove(&name).unwrap_or_default();
            Subscription {
                conflicts_detected: Subscription::conflict_total(&counters),
                counters,
                name,
                status: status.into(),
                enabled: Some(enabled),
                provider: None,
                slot: r.get(2),
                lag_seconds: None,
            }
        })
        .collect())
}

async fn slots(
    c: &Client,
    version_num: i32,
) -> std::result::Result<Vec<Slot>, tokio_postgres::Error> {
    let wal_status = if version_num >= 130000 {
        "s.wal_status::text"
    } else {
        "NULL::text"
    };
    let sql = format!(
        "SELECT s.slot_name::text, s.slot_type::text, s.active, \
           CASE WHEN pg_is_in_recovery() OR s.restart_lsn IS NULL THEN NULL \
                ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint END, \
           {wal_status}, \
           CASE WHEN s.active AND r.pid IS NOT NULL THEN \
             CASE WHEN NOT pg_is_in_recovery() AND s.confirmed_flush_lsn >= pg_current_wal_lsn() THEN 0::float8 \
                  ELSE coalesce(extract(epoch FROM r.replay_lag)::float8, 0::float8) END \
           END \
         FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid \
         WHERE s.database IS NULL OR s.database = current_database() ORDER BY 1"
    );
    Ok(c.query(&sql, &[])
        .await?
        .iter()
        .map(|r| Slot {
            name: r.get(0),
            slot_type: r.get(1),
            active: r.get(2),
            retained_bytes: r.get(3),
            wal_status: r.get(4),
            lag_seconds: r.get(5),
        })
        .collect())
}

async fn conflicts(
    c: &Client,
    table: &TableName,
) -> std::result::Result<Option<ConflictCounts>, tokio_postgres::Error> {
    let exists: bool = c
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()])
        .await?
        .get(0);
    if !exists {
        return Ok(Some(ConflictCounts {
            last_24h: 0,
            unresolved: 0,
            table_exists: false,
        }));
    }
    let row = c
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE created_at > now() - interval '24 hours'), \
                 count(*) FILTER (WHERE resolved_at IS NULL) FROM {}",
                table.quoted()
            ),
            &[],
        )
        .await?;
    Ok(Some(ConflictCounts {
        last_24h: row.get::<_, i64>(0) as u64,
        unresolved: row.get::<_, i64>(1) as u64,
        table_exists: true,
    }))
}
