//! `conflicts`: list the records of `replication_conflicts`.

use std::io::Write;

use anyhow::{Result, bail};
use eden_consistency::config::Config;
use eden_consistency::conflicts;
use eden_consistency::connect::ConnectOptions;

use super::{Outcome, conflicts_table, connect};
use crate::cli::{ConflictsArgs, Format};
use crate::print;

/// `conflicts`: list records, newest first, from every region (or `--in` one).
pub async fn run(config: Config, args: &ConflictsArgs, format: Format) -> Result<Outcome> {
    let now = chrono::Utc::now();
    let since = match &args.since {
        Some(text) => Some(conflicts::parse_since(text, now).map_err(anyhow::Error::msg)?),
        None => None,
    };
    // `--in` reads one region only: connect to it alone (the others may be unreachable).
    let regions = match &args.in_region {
        Some(name) => {
            let Some(index) = config.region_index(name) else {
                let known: Vec<&str> = config.regions.iter().map(|r| r.name.as_str()).collect();
                bail!(
                    "--in {name}: no such region (defined: {})",
                    known.join(", ")
                );
            };
            let db = args.db.db.as_deref().unwrap_or("");
            vec![
                eden_consistency::connect::connect_region(
                    &config.regions[index],
                    index,
                    db,
                    &ConnectOptions::default(),
                )
                .await?,
            ]
        }
        None => connect(&config, &args.db).await?,
    };
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
    let rows = conflicts::list(&pairs, &table, &filter).await?;
    let mut out = std::io::stdout().lock();
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
