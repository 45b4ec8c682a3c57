//! The Redis cache reports for people, in the style of the PostgreSQL ones.

use std::io::{self, Write};

use eden_consistency::redis::{CacheFixReport, CacheReport};

/// The check report: one status line for the cache, the first differences, the verdict.
pub fn check_human(r: &CacheReport, out: &mut dyn Write, color: bool) -> io::Result<()> {
    const SHOWN: usize = 10;
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    writeln!(
        out,
        "database {} (redis)  regions {}",
        r.database,
        r.regions.join(", ")
    )?;
    let status = if r.difference_count > 0 {
        paint("31", &format!("{:<15}", "divergent"))
    } else {
        paint("32", &format!("{:<15}", "consistent"))
    };
    let counts = r
        .key_counts
        .0
        .iter()
        .map(|(region, n)| format!("{region}={n}"))
        .collect::<Vec<_>>()
        .join(" ");
    let mut line = format!("{}  {status}  keys {counts}", r.database);
    if r.difference_count > 0 || r.in_flight_count > 0 {
        line.push_str(&format!(
            "  {} difference{}",
            r.difference_count,
            if r.difference_count == 1 { "" } else { "s" }
        ));
        if r.in_flight_count > 0 {
            line.push_str(&format!(" ({} in flight)", r.in_flight_count));
        }
    }
    writeln!(out, "{line}")?;
    for d in r.differences.iter().take(SHOWN) {
        let mut what = Vec::new();
        if !d.missing_in.is_empty() {
            what.push(format!("missing in {}", d.missing_in.join(", ")));
        }
        if !d.changed.is_empty() {
            what.push(format!("changed: {}", d.changed.join(", ")));
        }
        if d.in_flight {
            what.push("in flight".into());
        }
        writeln!(out, "    {}: {}", d.key, what.join("; "))?;
    }
    let listed = r.differences.len().min(SHOWN);
    let total = (r.difference_count + r.in_flight_count) as usize;
    if total > listed {
        writeln!(out, "    ... and {} more", total - listed)?;
    }
    let verdict = if r.consistent {
        paint("32", "consistent")
    } else {
        paint("31", "NOT consistent")
    };
    let sides = r
        .stats
        .0
        .iter()
        .map(|(region, s)| {
            format!(
                "{region}: {} master{}, {}-side digests",
                s.masters,
                if s.masters == 1 { "" } else { "s" },
                s.digest
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    writeln!(
        out,
        "{verdict} ({sides}; {:.2}s)",
        r.elapsed_ms as f64 / 1000.0
    )
}

/// The fix report: one line per cache, the actions as an aligned table, the archive, the
/// verdict.
pub fn fix_human(r: &CacheFixReport, out: &mut dyn Write) -> io::Result<()> {
    let verb = if r.dry_run {
        "fix plan (dry run, nothing changed)"
    } else {
        "fix"
    };
    writeln!(
        out,
        "{verb}: run {}  database {} (redis)",
        r.run_id, r.database
    )?;
    for t in &r.tables {
        let changed = t.actions.iter().filter(|a| a.status == "changed").count();
        let mut notes = Vec::new();
        if t.in_flight > 0 {
            notes.push(format!("{} in flight (left for the next run)", t.in_flight));
        }
        if changed > 0 {
            notes.push(format!("{changed} changed since read (left alone)"));
        }
        let rows: Vec<[String; 6]> = t
            .actions
            .iter()
            .map(|a| {
                [
                    a.key.clone(),
                    a.region.clone(),
                    a.action.to_string(),
                    a.winner_region.clone().unwrap_or_else(|| "-".into()),
                    a.decided_by.clone(),
                    a.status.to_string(),
                ]
            })
            .collect();
        super::fix_table(
            out,
            &t.table,
            &t.resolution,
            (t.applied, t.unresolved),
            &notes,
            &rows,
        )?;
    }
    if let Some(a) = &r.archive {
        writeln!(out, "archive: {a}")?;
    }
    let verdict = if r.dry_run {
        "dry run: nothing changed"
    } else if r.consistent {
        "consistent after fix"
    } else {
        "NOT consistent after fix"
    };
    writeln!(out, "{verdict}")
}
