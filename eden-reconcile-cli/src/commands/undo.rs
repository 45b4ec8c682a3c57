//! `undo --run ID`: restore what a fix run changed, from the archive.

use std::io::Write;

use anyhow::{Result, bail};
use eden_consistency::Config;
use eden_consistency::undo::{UndoOptions, undo_run};

use super::{Outcome, apply_options, connect};
use crate::cli::{Format, GlobalOpts, UndoArgs};
use crate::print;

/// `undo --run ID`: restore what a fix run changed, from the archive.
pub async fn run(
    config: Config,
    args: &UndoArgs,
    format: Format,
    g: &GlobalOpts,
) -> Result<Outcome> {
    let apply = apply_options(&config, &args.db, None, None, false)?;
    let regions = connect(&config, &args.db).await?;
    let _lock = if args.dry_run {
        None
    } else {
        Some(crate::unattended::take_lock(g, &regions, "undo").await?)
    };
    let opts = UndoOptions {
        run_id: args.run.clone(),
        dry_run: args.dry_run,
        apply,
    };
    let report = undo_run(&regions, &opts).await?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Human => print::undo::human(&report, &mut out)?,
    }
    drop(out);
    if let Some(first) = report.errors.first() {
        bail!(
            "undo of run {} could not restore everything: {first}",
            args.run
        );
    }
    Ok(if report.exit_code() == 0 {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
}
