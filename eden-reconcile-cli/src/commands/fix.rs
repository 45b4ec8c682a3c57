//! `fix`: check, resolve by each table's rule, then print the plan, write scripts or apply.

use std::io::Write;

use anyhow::{Result, bail};
use eden_consistency::CheckOptions;
use eden_consistency::Config;
use eden_consistency::metrics::RunMetrics;
use eden_consistency::redact::{self, Redactor};
use eden_consistency::{FixRun, run_fix};

use super::{Outcome, apply_options, checker};
use crate::cli::{FixArgs, Format, GlobalOpts};
use crate::print;
use crate::print::progress::Bars;
use crate::summary::Summary;

/// `fix`: check, resolve, then print the plan (`--dry-run`), write scripts (`--sql-out`) or
/// apply and re-check. Exit 0 only when every region agrees afterwards.
pub async fn run(
    config: Config,
    args: &FixArgs,
    format: Format,
    g: &GlobalOpts,
    metrics: &mut RunMetrics,
    redactor: &Redactor,
    summary: &mut Summary,
) -> Result<Outcome> {
    let apply = apply_options(
        &config,
        &args.db,
        args.batch_size,
        args.max_rows_per_second,
        args.no_replicate,
    )?;
    // A dry run (or --sql-out, which writes nothing to the databases) takes no lock.
    let writes = !args.dry_run && args.sql_out.is_none();
    let (checker, _lock) = checker(config, &args.db, writes.then_some((g, "fix"))).await?;
    let check = CheckOptions {
        tables: args.select.tables.clone(),
        exclude_tables: args.select.exclude_tables.clone(),
        mode: args.select.mode.into(),
        progress: Bars::for_stderr(),
        ..CheckOptions::default()
    };
    let run = FixRun {
        dry_run: args.dry_run,
        sql_out: args.sql_out.clone(),
        allow_tiebreak: args.allow_tiebreak,
        apply,
        ..FixRun::default()
    };
    let mut report = run_fix(&checker, &check, &run).await?;
    metrics.record_fix(&report);
    summary.database = Some(checker.database().to_string());
    fix_summary(summary, &report);
    redact::fix_report(redactor, &mut report);
    let mut out = crate::output::stdout();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Human => print::fix::human(&report, &mut out)?,
    }
    drop(out);
    // The report is printed in full; a table that could not be handled makes the run an
    // error (exit 2), like in `check`.
    if let Some(n) = report.first_unhandled() {
        bail!("table {}: {}", n.table, n.message);
    }
    let errors: Vec<&String> = report.tables.iter().flat_map(|t| &t.errors).collect();
    if let Some(first) = errors.first() {
        let more = if errors.len() > 1 {
            format!(
                " (and {} more failed batch(es), see the report)",
                errors.len() - 1
            )
        } else {
            String::new()
        };
        bail!("{first}; that batch was rolled back, nothing was lost{more}");
    }
    Ok(if report.exit_code() == 0 {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
}

/// The summary's counts for a fix run: tables, keys that differed (or were left in
/// flight), actions planned, rows written.
fn fix_summary(summary: &mut Summary, report: &eden_consistency::FixReport) {
    summary.tables = Some(report.tables.len() + report.not_planned.len());
    let differences: usize = report
        .tables
        .iter()
        .map(|t| {
            let keys: std::collections::HashSet<String> = t
                .actions
                .iter()
                .map(|a| serde_json::Value::Object(a.key.clone()).to_string())
                .collect();
            keys.len() + t.deferred.len()
        })
        .sum();
    summary.differences = Some(differences as u64);
    summary.actions = Some(report.tables.iter().map(|t| t.actions.len()).sum());
    summary.applied = Some(report.applied());
}
