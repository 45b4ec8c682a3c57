//! The `undo` report for people.

use std::io::{self, Write};

use eden_consistency::UndoReport;

use super::{key_map_text, write_aligned};

/// Prints an undo report: every archived change with its fate.
pub fn human(report: &UndoReport, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "undo of run {}{}: {} change(s) archived",
        report.undone_run,
        if report.dry_run {
            " (dry run, nothing changed)"
        } else {
            ""
        },
        report.actions.len()
    )?;
    let rows: Vec<[String; 5]> = report
        .actions
        .iter()
        .map(|a| {
            [
                a.region.clone(),
                a.table.clone(),
                key_map_text(&a.key),
                a.action.as_str().to_string(),
                a.status.as_str().to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        write_aligned(
            out,
            "  ",
            &["region", "table", "key", "undo", "status"],
            &rows,
        )?;
    }
    for e in &report.errors {
        writeln!(out, "error: {e}")?;
    }
    if !report.dry_run {
        writeln!(
            out,
            "{} restored, {} changed since the run (left alone); undo run id {}",
            report.restored, report.changed, report.run_id
        )?;
    }
    Ok(())
}
