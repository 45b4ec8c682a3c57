//! `undo --run ID`: restore what a fix run changed, from the archive.

use std::io::Write;

use anyhow::{Result, bail};
use eden_consistency::Config;
use eden_consistency::redact::{self, Redactor};
use eden_consistency::{UndoOptions, undo_run};

use super::{Outcome, apply_options, connect};
use crate::cli::{Format, GlobalOpts, UndoArgs};
use crate::print;
use crate::summary::Summary;

/// `undo --run ID`: restore what a fix run changed, from the archive.
pub async fn run(
    config: Config,
    args: &UndoArgs,
    format: Format,
    g: &GlobalOpts,
    redactor: &Redactor,
    summary: &mut Summary,
) -> Result<Outcome> {
    let apply = apply_options(&config, &args.db, None, None, false)?;
    let regions = connect(&config, &args.db).await?;
    let _lock = if args.dry_run {
        None
    } else {
        Some(crate::unattended::take_lock(g, &regions, "undo").await?)
    };
    let run_id =
        eden_consistency::resolve_run_id(&regions, &apply.conflicts_schema, &args.run).await?;
    let opts = UndoOptions {
        run_id: run_id.clone(),
        dry_run: args.dry_run,
        apply,
    };
    let mut report = undo_run(&regions, &opts).await?;
    let tables: std::collections::HashSet<&str> =
        report.actions.iter().map(|a| a.table.as_str()).collect();
    summary.tables = Some(tables.len());
    summary.actions = Some(report.actions.len());
    summary.applied = Some(report.restored);
    redact::undo_report(redactor, &mut report);
    let mut out = crate::output::stdout();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Human => print::undo::human(&report, &mut out)?,
    }
    drop(out);
    if let Some(first) = report.errors.first() {
        bail!("undo of run {run_id} could not restore everything: {first}");
    }
    Ok(if report.exit_code() == 0 {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
}
