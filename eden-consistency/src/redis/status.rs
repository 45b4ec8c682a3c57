//! Replication health of a Redis cache in every region (`eden-reconcile status` on a cache).
//!
//! Per region: whether it answers, its version, and per server (every master of a Redis
//! Cluster) its role, key count, memory used and what `INFO replication` says of its links.
//! A region that cannot be reached, or a replica whose link to its master is down, is a
//! problem of that region; the other regions are still reported.

use serde_json::{Value as Json, json};

use super::config::RedisConfig;
use super::connect::{RedisConnectOptions, connect_region, info_field, redis_message};
use crate::error::Result;
use crate::status::{RegionStatus, StatusReport};

/// Inspects every region holding the cache `database`, in config order.
pub async fn status(
    config: &RedisConfig,
    database: &str,
    opts: &RedisConnectOptions,
) -> Result<StatusReport> {
    let regions = config.regions_for(database)?;
    let tasks: Vec<_> = regions
        .into_iter()
        .map(|r| {
            let opts = opts.clone();
            tokio::spawn(async move { region_status(&r, &opts).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            t.await
                .map_err(|e| crate::Error::Usage(format!("status: {e}")))?,
        );
    }
    Ok(StatusReport {
        database: database.to_string(),
        kind: "redis".into(),
        healthy: out.iter().all(|r| r.problems.is_empty()),
        max_replication_lag_seconds: None,
        regions: out,
    })
}

async fn region_status(
    r: &super::config::CacheRegionConfig,
    opts: &RedisConnectOptions,
) -> RegionStatus {
    let region = match connect_region(r, opts).await {
        Ok(c) => c,
        Err(e) => {
            return RegionStatus::unreachable(
                &r.name,
                format!(
                    "{e}: the region is unreachable; check that its Redis server is running and reachable from here"
                ),
            );
        }
    };
    let mut problems = Vec::new();
    let mut nodes = Vec::new();
    let (mut keys, mut memory) = (0u64, 0u64);
    for node in &region.nodes {
        let mut conn = node.conn.clone();
        let info: redis::RedisResult<String> = redis::cmd("INFO")
            .arg("replication")
            .arg("memory")
            .query_async(&mut conn)
            .await;
        let size: redis::RedisResult<u64> = redis::cmd("DBSIZE").query_async(&mut conn).await;
        let (info, size) = match (info, size) {
            (Ok(i), Ok(s)) => (i, s),
            (Err(e), _) | (_, Err(e)) => {
                problems.push(format!(
                    "region {}: server {} does not answer INFO/DBSIZE ({}); check its ACL allows them",
                    region.name,
                    node.addr,
                    redis_message(&e)
                ));
                continue;
            }
        };
        let num = |f: &str| info_field(&info, f).and_then(|v| v.parse::<u64>().ok());
        let role = info_field(&info, "role").unwrap_or_else(|| "unknown".into());
        let used = num("used_memory").unwrap_or(0);
        keys += size;
        memory += used;
        let mut link = serde_json::Map::new();
        link.insert("server".into(), json!(node.addr));
        link.insert("role".into(), json!(role));
        link.insert("keys".into(), json!(size));
        link.insert("used_memory_bytes".into(), json!(used));
        link.insert("connected_slaves".into(), json!(num("connected_slaves")));
        if role == "slave" {
            let master = format!(
                "{}:{}",
                info_field(&info, "master_host").unwrap_or_default(),
                info_field(&info, "master_port").unwrap_or_default()
            );
            let status = info_field(&info, "master_link_status").unwrap_or_else(|| "down".into());
            let last_io =
                info_field(&info, "master_last_io_seconds_ago").and_then(|v| v.parse::<i64>().ok());
            if status != "up" {
                problems.push(format!(
                    "region {}: server {} is a replica whose link to its master {master} is {status}; check that master is running and reachable, or run REPLICAOF NO ONE if it is gone",
                    region.name, node.addr
                ));
            }
            link.insert("master".into(), json!(master));
            link.insert("master_link_status".into(), json!(status));
            link.insert("master_last_io_seconds_ago".into(), json!(last_io));
        }
        nodes.push(Json::Object(link));
    }
    let role = if region.is_cluster() {
        "cluster".to_string()
    } else {
        nodes
            .first()
            .and_then(|n| n["role"].as_str())
            .unwrap_or("unknown")
            .to_string()
    };
    let mut details = serde_json::Map::new();
    details.insert(
        "redis".into(),
        json!({
            "role": role,
            "keys": keys,
            "used_memory_bytes": memory,
            "links": nodes,
        }),
    );
    RegionStatus {
        region: region.name.clone(),
        reachable: true,
        server_version: Some(region.version.clone()),
        postgresql: None,
        details,
        problems,
    }
}
