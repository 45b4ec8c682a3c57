//! `init`: create `replication_conflicts` in every region.

use std::io::Write;

use anyhow::Result;
use eden_consistency::Config;
use eden_consistency::conflicts;

use super::{Outcome, conflicts_table, connect};
use crate::cli::{Format, InitArgs};

/// `init`: create `replication_conflicts` in every region, or say exactly what it added.
pub async fn run(config: &Config, args: &InitArgs, format: Format) -> Result<Outcome> {
    let regions = connect(config, &args.db).await?;
    let table = conflicts_table(config, &args.db);
    let mut done = Vec::new();
    for r in &regions {
        let report = conflicts::init_with(&r.client, &r.name, &table, args.upgrade).await?;
        done.push((r, report));
    }
    let mut out = crate::output::stdout();
    match format {
        Format::Json => {
            let regions: Vec<_> = done
                .iter()
                .map(|(r, rep)| serde_json::json!({"region": r.name, "database": r.dbname, "table": table.to_string(), "created": rep.created, "added_columns": rep.added_columns, "added_indexes": rep.added_indexes}))
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"regions": regions}))?
            )?;
        }
        Format::Human => {
            for (r, rep) in &done {
                writeln!(
                    out,
                    "{:<16} {}  {table}: {}",
                    r.name,
                    r.dbname,
                    rep.describe()
                )?;
            }
        }
    }
    Ok(Outcome::Clean)
}
