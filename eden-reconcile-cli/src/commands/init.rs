//! `init`: create `replication_conflicts` in every region.

use std::io::Write;

use anyhow::Result;
use eden_consistency::Config;
use eden_consistency::conflicts;

use super::{Outcome, conflicts_table, connect};
use crate::cli::{DbArg, Format};

/// `init`: create `replication_conflicts` in every region.
pub async fn run(config: &Config, args: &DbArg, format: Format) -> Result<Outcome> {
    let regions = connect(config, args).await?;
    let table = conflicts_table(config, args);
    let mut created = Vec::new();
    for r in &regions {
        let new = conflicts::init(&r.client, &r.name, &table).await?;
        created.push((r, new));
    }
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let regions: Vec<_> = created
                .iter()
                .map(|(r, new)| serde_json::json!({"region": r.name, "database": r.dbname, "table": table.to_string(), "created": new}))
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"regions": regions}))?
            )?;
        }
        Format::Human => {
            for (r, new) in &created {
                let what = if *new { "created" } else { "already present" };
                writeln!(out, "{:<16} {}  {table}: {what}", r.name, r.dbname)?;
            }
        }
    }
    Ok(Outcome::Clean)
}
