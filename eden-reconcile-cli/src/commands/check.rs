//! `check`: compare tables across regions.

use std::io::Write;

use anyhow::{Result, bail};
use eden_consistency::Config;
use eden_consistency::metrics::RunMetrics;
use eden_consistency::redact::{self, Redactor};
use eden_consistency::{CheckOptions, IncrementalOptions, Shard, ShardOptions};

use super::{Outcome, checker};
use crate::cli::{CheckArgs, Format, GlobalOpts};
use crate::print;
use crate::print::progress::Bars;
use crate::summary::Summary;

/// `check`: compare tables across regions; exit 1 when anything is not consistent.
pub async fn run(
    config: Config,
    args: &CheckArgs,
    format: Format,
    g: &GlobalOpts,
    metrics: &mut RunMetrics,
    redactor: &Redactor,
    summary: &mut Summary,
) -> Result<Outcome> {
    // --record writes to the databases: it holds the run lock.
    let (checker, _lock) = checker(config, &args.db, args.record.then_some((g, "check"))).await?;
    let opts = CheckOptions {
        tables: args.select.tables.clone(),
        exclude_tables: args.select.exclude_tables.clone(),
        filter: args.where_clause.clone(),
        max_differences: args.max_differences,
        jobs: args.jobs.unwrap_or(1).max(1),
        mode: args.select.mode.into(),
        record: args.record,
        descent: args.descent.map(usize::from),
        progress: Bars::for_stderr(),
        incremental: incremental_options(args)?,
        shard: match &args.shard {
            None => None,
            Some(text) => {
                let shard: Shard = text.parse().map_err(anyhow::Error::msg)?;
                let mut o = ShardOptions::new(shard);
                if let Some(n) = args.shard_split_rows {
                    o.split_min_rows = n;
                }
                Some(o)
            }
        },
        ..CheckOptions::default()
    };
    let mut report = checker.run(&opts).await?;
    metrics.record_check(&report);
    summary.database = Some(checker.database().to_string());
    summary.tables = Some(report.tables.len());
    summary.differences = Some(report.tables.iter().map(|t| t.difference_count).sum());
    summary.actions = Some(0);
    redact::check_report(redactor, &mut report);
    let mut out = crate::output::stdout();
    match format {
        Format::Json => {
            // Streamed: a table's many differences are read back from disk as they print.
            let mut w = std::io::BufWriter::with_capacity(256 * 1024, &mut out);
            serde_json::to_writer_pretty(&mut w, &report)?;
            writeln!(w)?;
            w.flush()?;
        }
        Format::Human => {
            use std::io::IsTerminal;
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            print::check::human(&report, &mut out, color)?;
        }
    }
    drop(out);
    // The report is printed in full; a table that could not be checked also makes the run
    // an error (exit 2), since its regions were not verified.
    if let Some(t) = report.first_error() {
        bail!(
            "table {}: {}",
            t.table,
            t.message.as_deref().unwrap_or("could not be checked")
        );
    }
    Ok(if report.consistent {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
}

/// `--incremental` and its settings.
fn incremental_options(args: &CheckArgs) -> Result<Option<IncrementalOptions>> {
    if !args.incremental {
        return Ok(None);
    }
    let mut o = IncrementalOptions::default();
    if let Some(p) = &args.state {
        o.state_path = p.clone();
    }
    if let Some(n) = args.full_every {
        if n == 0 {
            bail!("--full-every must be at least 1");
        }
        o.full_every = n;
    }
    if let Some(m) = &args.change_margin {
        o.margin = eden_consistency::lock::parse_duration(m)
            .map_err(|e| anyhow::anyhow!("--change-margin: {e}"))?;
    }
    Ok(Some(o))
}
