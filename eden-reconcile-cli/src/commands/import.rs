//! `conflicts import`: copy the conflicts the replication engine resolved itself into each
//! region's `replication_conflicts`.

use std::io::Write;

use anyhow::{Result, bail};
use eden_consistency::Config;
use eden_consistency::conflicts;
use eden_consistency::{conflicts::ImportOptions, conflicts::import_region};

use super::conflicts::regions_for;
use super::{Outcome, conflicts_table};
use crate::cli::{Format, ImportArgs};

/// `conflicts import`: copy the replication engine's own conflicts into each region's
/// replication_conflicts. Exit 2 when a region's engine log could not be read.
pub async fn run(config: Config, args: &ImportArgs, format: Format) -> Result<Outcome> {
    let since = match &args.since {
        Some(text) => {
            Some(conflicts::parse_since(text, chrono::Utc::now()).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    let regions = regions_for(&config, &args.db, args.in_region.as_deref()).await?;
    let table = conflicts_table(&config, &args.db);
    let run_id = eden_consistency::new_run_id();
    let mut results = Vec::new();
    for r in &regions {
        let opts = ImportOptions {
            table: table.clone(),
            since,
            run_id: run_id.clone(),
            other_regions: config
                .regions
                .iter()
                .map(|c| c.name.clone())
                .filter(|n| n != &r.name)
                .collect(),
        };
        results.push(import_region(&r.client, &r.name, &opts).await?);
    }
    let mut out = crate::output::stdout();
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"run_id": run_id, "regions": results})
            )?
        )?,
        Format::Human => {
            let mut rows = Vec::new();
            for r in &results {
                for s in &r.sources {
                    rows.push(vec![
                        r.region.clone(),
                        s.source.clone(),
                        s.found.to_string(),
                        s.imported.to_string(),
                        (s.found - s.imported.min(s.found)).to_string(),
                        s.read_from.join(", "),
                    ]);
                }
                if r.sources.is_empty() && r.problems.is_empty() {
                    rows.push(vec![
                        r.region.clone(),
                        "-".into(),
                        "0".into(),
                        "0".into(),
                        "0".into(),
                        "no replication engine records conflicts here".into(),
                    ]);
                }
            }
            if !rows.is_empty() {
                crate::print::write_aligned(
                    &mut out,
                    "",
                    &[
                        "REGION",
                        "SOURCE",
                        "FOUND",
                        "IMPORTED",
                        "ALREADY",
                        "READ FROM",
                    ],
                    &rows,
                )?;
            }
            let total: usize = results
                .iter()
                .flat_map(|r| &r.sources)
                .map(|s| s.imported)
                .sum();
            writeln!(out, "{total} conflict record(s) imported (run {run_id})")?;
        }
    }
    drop(out);
    for w in results.iter().flat_map(|r| &r.warnings) {
        eprintln!("eden-reconcile: warning: {w}");
    }
    let problems: Vec<&String> = results.iter().flat_map(|r| &r.problems).collect();
    if let Some(first) = problems.first() {
        let more = if problems.len() > 1 {
            format!(" (and {} more problem(s))", problems.len() - 1)
        } else {
            String::new()
        };
        bail!("{first}{more}");
    }
    Ok(Outcome::Clean)
}
