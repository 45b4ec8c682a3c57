//! The `status` report for people: one aligned line per region, then the problems.

use std::io::{self, Write};

use eden_consistency::status::{RegionStatus, StatusReport, human_bytes};

use super::write_aligned;

/// A short aligned table, one line per region, then the problems.
pub fn human(report: &StatusReport, out: &mut dyn Write) -> io::Result<()> {
    let problems = report.problem_count();
    writeln!(
        out,
        "{} ({}): {}",
        report.database,
        report.kind,
        if report.healthy {
            "healthy".to_string()
        } else {
            format!("{problems} problem(s)")
        }
    )?;
    if report.kind == "redis" {
        let rows: Vec<Vec<String>> = report.regions.iter().map(redis_row).collect();
        write_aligned(
            out,
            "",
            &[
                "region",
                "reachable",
                "version",
                "role",
                "keys",
                "memory",
                "links",
            ],
            &rows,
        )?;
    } else {
        let rows: Vec<Vec<String>> = report.regions.iter().map(human_row).collect();
        write_aligned(
            out,
            "",
            &[
                "region",
                "reachable",
                "version",
                "commit_ts",
                "provider",
                "subscriptions",
                "slots (active/all, WAL kept)",
                "lag",
                "conflicts 24h/unresolved",
            ],
            &rows,
        )?;
    }
    if problems > 0 {
        writeln!(out)?;
        writeln!(out, "problems:")?;
        for r in &report.regions {
            for p in &r.problems {
                writeln!(out, "  - {p}")?;
            }
        }
    }
    Ok(())
}

fn human_row(r: &RegionStatus) -> Vec<String> {
    let dash = || "-".to_string();
    let mut row = vec![
        r.region.clone(),
        if r.reachable { "yes" } else { "NO" }.to_string(),
        r.server_version.clone().unwrap_or_else(dash),
    ];
    match &r.postgresql {
        Some(pg) => {
            let rep = &pg.replication;
            row.push(match pg.track_commit_timestamp {
                Some(true) => "on".into(),
                Some(false) => "off".into(),
                None => dash(),
            });
            row.push(rep.provider.clone().unwrap_or_else(dash));
            row.push(if rep.subscriptions.is_empty() {
                "none".into()
            } else {
                rep.subscriptions
                    .iter()
                    .map(|s| format!("{} {}", s.name, s.status))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            let active = rep.slots.iter().filter(|s| s.active).count();
            let kept: i64 = rep.slots.iter().filter_map(|s| s.retained_bytes).sum();
            row.push(if rep.slots.is_empty() {
                "none".into()
            } else {
                format!("{active}/{}, {}", rep.slots.len(), human_bytes(kept))
            });
            row.push(
                rep.lag_seconds
                    .map(|l| format!("{l:.1}s"))
                    .unwrap_or_else(dash),
            );
            row.push(
                pg.conflicts
                    .map(|c| {
                        if c.table_exists {
                            format!("{}/{}", c.last_24h, c.unresolved)
                        } else {
                            "no table".into()
                        }
                    })
                    .unwrap_or_else(dash),
            );
        }
        None => {
            for k in ["track_commit_timestamp", "provider"] {
                row.push(
                    r.details
                        .get(k)
                        .map(|v| v.as_str().map(String::from).unwrap_or(v.to_string()))
                        .unwrap_or_else(dash),
                );
            }
            row.extend([dash(), dash()]);
            row.push(
                r.lag_seconds()
                    .map(|l| format!("{l:.1}s"))
                    .unwrap_or_else(dash),
            );
            row.push(
                r.conflicts_unresolved()
                    .map(|c| format!("-/{c}"))
                    .unwrap_or_else(dash),
            );
        }
    }
    row
}

/// One Redis region: role, keys, memory, and each server's replication links.
fn redis_row(r: &RegionStatus) -> Vec<String> {
    let dash = || "-".to_string();
    let mut row = vec![
        r.region.clone(),
        if r.reachable { "yes" } else { "NO" }.to_string(),
        r.server_version.clone().unwrap_or_else(dash),
    ];
    let Some(redis) = r.details.get("redis") else {
        row.extend([dash(), dash(), dash(), dash()]);
        return row;
    };
    row.push(match redis["role"].as_str() {
        Some("slave") => "replica".to_string(),
        Some(r) => r.to_string(),
        None => dash(),
    });
    row.push(
        redis["keys"]
            .as_u64()
            .map(|k| k.to_string())
            .unwrap_or_else(dash),
    );
    row.push(
        redis["used_memory_bytes"]
            .as_i64()
            .map(human_bytes)
            .unwrap_or_else(dash),
    );
    let links: Vec<String> = redis["links"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|l| match l["role"].as_str() {
            Some("slave") => format!(
                "replica of {} {}{}",
                l["master"].as_str().unwrap_or("?"),
                l["master_link_status"].as_str().unwrap_or("?"),
                l["master_last_io_seconds_ago"]
                    .as_i64()
                    .filter(|s| *s >= 0)
                    .map(|s| format!(" ({s}s ago)"))
                    .unwrap_or_default()
            ),
            _ => format!("{} replica(s)", l["connected_slaves"].as_u64().unwrap_or(0)),
        })
        .collect();
    row.push(if links.is_empty() {
        dash()
    } else {
        links.join(", ")
    });
    row
}
