//! `conflicts`: list the records of `replication_conflicts`.

use std::io::Write;

use anyhow::{Result, bail};
use eden_consistency::Config;
use eden_consistency::conflicts;
use eden_consistency::redact::{self, Redactor};
use eden_consistency::{ConnectOptions, Region};

use super::{Outcome, conflicts_table, connect};
use crate::cli::{ConflictsArgs, DbArg, Format, ResolveArgs};
use crate::print;
use crate::summary::Summary;

/// `conflicts`: list records, newest first, from every region (or `--in` one).
pub async fn run(
    config: Config,
    args: &ConflictsArgs,
    format: Format,
    redactor: &Redactor,
    summary: &mut Summary,
) -> Result<Outcome> {
    let now = chrono::Utc::now();
    let since = match &args.since {
        Some(text) => Some(conflicts::parse_since(text, now).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let regions = regions_for(&config, &args.db, args.in_region.as_deref()).await?;
    let table = conflicts_table(&config, &args.db);
    let filter = conflicts::ListFilter {
        table: args.table.clone(),
        since,
        unresolved: args.unresolved,
        limit: args.limit,
    };
    let pairs: Vec<(&str, &tokio_postgres::Client)> = regions
        .iter()
        .map(|r| (r.name.as_str(), &r.client))
        .collect();
    let mut rows = conflicts::list(&pairs, &table, &filter).await?;
    summary.records = Some(rows.len());
    redact::conflicts(redactor, &mut rows);
    let mut out = crate::output::stdout();
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&conflicts::to_json(&rows))?
        )?,
        Format::Human => print::conflicts::human(&mut out, &rows, now)?,
    }
    Ok(Outcome::Clean)
}

/// The regions whose records `conflicts` reads: `--in` one region only (connected alone,
/// since the others may be unreachable), else all.
pub(super) async fn regions_for(
    config: &Config,
    db: &DbArg,
    in_region: Option<&str>,
) -> Result<Vec<Region>> {
    Ok(match in_region {
        Some(name) => {
            let Some(index) = config.region_index(name) else {
                let known: Vec<&str> = config.regions.iter().map(|r| r.name.as_str()).collect();
                bail!(
                    "--in {name}: no such region (defined: {})",
                    known.join(", ")
                );
            };
            if !db.no_rules {
                config.require_node_group(db.db.as_deref())?;
            }
            let db = db.db.as_deref().unwrap_or("");
            vec![
                eden_consistency::connect_region(
                    &config.regions[index],
                    index,
                    db,
                    &ConnectOptions::default(),
                )
                .await?,
            ]
        }
        None => connect(config, db).await?,
    })
}

/// `conflicts resolve --id N...`: acknowledge records by hand.
pub async fn resolve(config: Config, args: &ResolveArgs, format: Format) -> Result<Outcome> {
    let regions = regions_for(&config, &args.db, args.in_region.as_deref()).await?;
    let table = conflicts_table(&config, &args.db);
    let pairs: Vec<(&str, &tokio_postgres::Client)> = regions
        .iter()
        .map(|r| (r.name.as_str(), &r.client))
        .collect();
    let done = eden_consistency::conflicts::resolve_by_hand(
        &pairs,
        &table,
        &args.ids,
        args.note.as_deref(),
    )
    .await?;
    let mut out = crate::output::stdout();
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"resolved": done}))?
        )?,
        Format::Human => {
            for d in &done {
                let what = if d.outcome == "resolved" {
                    "resolved now"
                } else {
                    "was already resolved"
                };
                writeln!(out, "record {} in {}: {what}", d.id, d.region)?;
            }
        }
    }
    Ok(Outcome::Clean)
}
