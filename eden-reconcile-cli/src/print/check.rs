//! The `check` report for people.

use std::io::{self, Write};

use eden_consistency::{CheckReport, TableStatus};

/// Writes the short summary of a check: one aligned line per table (status, rows per region,
/// differences, time), then the first few differing keys with what differs. ANSI colour
/// only when `color` (the caller passes true for a terminal).
pub fn human(report: &CheckReport, out: &mut dyn Write, color: bool) -> io::Result<()> {
    const SHOWN: usize = 5;
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let elsewhere = report
        .databases
        .0
        .iter()
        .any(|(_, d)| *d != report.database);
    let connected = if elsewhere {
        let each: Vec<String> = report
            .databases
            .0
            .iter()
            .map(|(r, d)| format!("{r}: {d}"))
            .collect();
        format!(" (connected to {})", each.join(", "))
    } else {
        String::new()
    };
    writeln!(
        out,
        "database {}{connected}  regions {}",
        report.database,
        report.regions.join(", ")
    )?;
    if let Some(sh) = &report.shard {
        writeln!(
            out,
            "shard {}/{} ({} of {} tables; combine the shards' JSON reports with merge-reports)",
            sh.index,
            sh.count,
            report.tables.len(),
            sh.plan.len()
        )?;
    }
    let width = report
        .tables
        .iter()
        .map(|t| t.table.len())
        .max()
        .unwrap_or(5)
        .max(5);
    for t in &report.tables {
        let (code, word) = match t.status {
            TableStatus::Consistent => ("32", "consistent"),
            TableStatus::Divergent => ("31", "divergent"),
            TableStatus::SchemaMismatch => ("35", "schema_mismatch"),
            TableStatus::Skipped => ("33", "skipped"),
            TableStatus::Error => ("31;1", "error"),
        };
        let status = paint(code, &format!("{word:<15}"));
        let rows = t
            .row_counts
            .0
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let mut line = format!("{:<width$}  {status}  {rows}", t.table);
        if t.difference_count > 0 {
            line.push_str(&format!(
                "  {} difference{}",
                t.difference_count,
                if t.difference_count == 1 { "" } else { "s" }
            ));
            if t.in_flight_count > 0 {
                line.push_str(&format!(" ({} in flight)", t.in_flight_count));
            }
        }
        line.push_str(&format!("  {:.2}s", t.elapsed_ms as f64 / 1000.0));
        writeln!(out, "{line}")?;
        if let Some(inc) = &t.incremental {
            if inc.full_pass {
                writeln!(out, "    full pass: {}", inc.reason)?;
            } else {
                writeln!(
                    out,
                    "    incremental: re-hashed {} of {} chunks (last full pass {})",
                    inc.chunks_rehashed, inc.chunks_total, inc.last_full_pass_at
                )?;
            }
        }
        if let Some(r) = t.shard_range.as_ref().filter(|r| !r.whole) {
            writeln!(
                out,
                "    shard range: {} from {} to {}",
                r.column.as_deref().unwrap_or(""),
                r.from.as_deref().unwrap_or("the smallest key"),
                r.to.as_deref().unwrap_or("the largest key")
            )?;
        }
        if let Some(m) = &t.message {
            if t.status != TableStatus::Divergent {
                writeln!(out, "    {m}")?;
            }
        }
        for d in t.differences.iter().take(SHOWN) {
            let key = d
                .key
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut what = Vec::new();
            if !d.missing_in.is_empty() {
                what.push(format!("missing in {}", d.missing_in.join(", ")));
            }
            if !d.changed_columns.is_empty() {
                what.push(format!("changed: {}", d.changed_columns.join(", ")));
            }
            if d.in_flight {
                what.push("in flight".to_string());
            }
            writeln!(out, "    {key}: {}", what.join("; "))?;
        }
        if t.differences.len() > SHOWN
            || t.difference_count as usize > t.differences.len().min(SHOWN)
        {
            let more = t.difference_count as usize - t.differences.len().min(SHOWN);
            if more > 0 {
                writeln!(out, "    ... and {more} more")?;
            }
        }
    }
    let verdict = if report.consistent {
        paint("32", "consistent")
    } else {
        paint("31", "NOT consistent")
    };
    writeln!(
        out,
        "{verdict} ({} table{}, {:.2}s)",
        report.tables.len(),
        if report.tables.len() == 1 { "" } else { "s" },
        report.elapsed_ms as f64 / 1000.0
    )?;
    Ok(())
}
