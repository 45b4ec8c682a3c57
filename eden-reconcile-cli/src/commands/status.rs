//! `status`: replication health of every region.

use std::io::Write;

use anyhow::{Result, bail};
use eden_consistency::Config;
use eden_consistency::ConnectOptions;
use eden_consistency::metrics::RunMetrics;
use eden_consistency::status::StatusOptions;

use super::{Outcome, conflicts_table};
use crate::cli::{DbArg, Format};
use crate::print;

/// `status`: replication health of every region; exit 1 when any region has a problem.
pub async fn run(
    config: &Config,
    args: &DbArg,
    format: Format,
    metrics: &mut RunMetrics,
) -> Result<Outcome> {
    let Some(database) = args.db.clone() else {
        bail!("status needs --db NAME: the database whose replication to inspect");
    };
    let opts = StatusOptions {
        database,
        conflicts_table: conflicts_table(config, args),
        connect: ConnectOptions::default(),
    };
    let report = eden_consistency::status::status(config, &opts).await?;
    metrics.record_status(&report);
    let mut out = crate::output::stdout();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Human => print::status::human(&report, &mut out)?,
    }
    Ok(if report.healthy {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
}
