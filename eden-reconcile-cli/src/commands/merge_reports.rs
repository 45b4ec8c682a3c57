//! `merge-reports`: one report from the shards of a `check --shard I/N` run.

use std::io::Write;

use anyhow::{Result, bail};
use eden_consistency::merge_reports;
use eden_consistency::report_exit_code;

use super::Outcome;
use crate::cli::{Format, MergeReportsArgs};
use crate::print;

/// Reads every shard report, refuses a set that does not tile one run (exit 2), prints the
/// combined report and exits as the unsharded check would.
pub fn run(args: &MergeReportsArgs, format: Format) -> Result<Outcome> {
    let mut inputs = Vec::new();
    for f in &args.files {
        let name = f.display().to_string();
        let text = match std::fs::read(f) {
            Ok(t) => t,
            Err(e) => bail!("{name}: cannot read the shard report ({e})"),
        };
        let doc: serde_json::Value = match serde_json::from_slice(&text) {
            Ok(d) => d,
            Err(e) => bail!("{name} is not a JSON report of check --shard ({e})"),
        };
        inputs.push((name, doc));
    }
    let merged = merge_reports(&inputs)?;
    let mut out = crate::output::stdout();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&merged)?)?,
        Format::Human => print::merge::human(&merged, &mut out)?,
    }
    drop(out);
    match report_exit_code(&merged) {
        2 => {
            let t = merged["tables"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["status"] == "error"));
            bail!(
                "table {}: {}",
                t.and_then(|t| t["table"].as_str()).unwrap_or("?"),
                t.and_then(|t| t["message"].as_str())
                    .unwrap_or("could not be checked")
            )
        }
        1 => Ok(Outcome::Differences),
        _ => Ok(Outcome::Clean),
    }
}
