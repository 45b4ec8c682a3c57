//! `conflicts`: list the records of `replication_conflicts`.

use std::io::Write;

use anyhow::Result;
use eden_consistency::config::Config;
use eden_consistency::conflicts;

use super::{Outcome, conflicts_table, connect_in};
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
    let regions = connect_in(&config, &args.db, args.in_region.as_deref()).await?;
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
