//! The `fix` report for people.

use std::io::{self, Write};

use eden_consistency::apply::FixReport;

use super::{fix_table, key_map_text};

/// Prints a fix report: one aligned table of actions per table.
pub fn human(report: &FixReport, out: &mut dyn Write) -> io::Result<()> {
    let verb = if report.dry_run {
        "fix plan (dry run, nothing changed)"
    } else {
        "fix"
    };
    writeln!(out, "{verb}: run {}", report.run_id)?;
    for t in &report.tables {
        writeln!(out)?;
        let notes: Vec<String> = (t.changed > 0)
            .then(|| format!("{} changed since read (left for the next run)", t.changed))
            .into_iter()
            .collect();
        let rows: Vec<[String; 6]> = t
            .actions
            .iter()
            .map(|a| {
                [
                    key_map_text(&a.key),
                    a.region.clone(),
                    a.action.as_str().to_string(),
                    a.winner_region.clone().unwrap_or_else(|| "-".into()),
                    a.decided_by.clone(),
                    if a.possible_undelete {
                        format!("{:?} (possible undelete)", a.status).to_lowercase()
                    } else {
                        format!("{:?}", a.status).to_lowercase()
                    },
                ]
            })
            .collect();
        fix_table(
            out,
            &t.table,
            &t.resolution,
            (t.applied as u64, t.unresolved as u64),
            &notes,
            &rows,
        )?;
        let undeletes = t.actions.iter().filter(|a| a.possible_undelete).count();
        if undeletes > 0 {
            writeln!(
                out,
                "  {undeletes} insert(s) copy a row into a region that lacks it with no tombstone: \
                 if it was deleted there on purpose, this undoes the delete \
                 (set missing_rows: delete or manual, or a tombstone, for this table)"
            )?;
        }
        for d in &t.deferred {
            writeln!(out, "  deferred: {}", entry_text(d, "key", "reason"))?;
        }
        for k in &t.still_differing {
            writeln!(out, "  still differs after fix: {}", key_map_text(k))?;
        }
        for e in &t.errors {
            writeln!(out, "  error: {e}")?;
        }
        for c in &t.collisions {
            writeln!(out, "  {}", c.message())?;
        }
    }
    for n in &report.not_planned {
        let what = if n.error {
            "could not be handled"
        } else {
            "not planned"
        };
        writeln!(out, "{what}: {}: {}", n.table, n.message)?;
    }
    for c in &report.fk_cycles {
        let names: Vec<String> = c.tables.iter().map(|t| t.to_string()).collect();
        writeln!(
            out,
            "foreign-key cycle: {} ({})",
            names.join(" <-> "),
            if c.deferrable {
                "deferrable: written in one transaction"
            } else {
                "NOT deferrable"
            }
        )?;
    }
    for f in &report.sql_files {
        writeln!(out, "wrote {f}")?;
    }
    if report.tables.iter().all(|t| t.actions.is_empty()) && report.not_planned.is_empty() {
        writeln!(out, "nothing to fix: every region agrees")?;
    } else if !report.dry_run && report.sql_files.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            if report.consistent {
                "all regions agree now"
            } else {
                "regions still differ (see above)"
            }
        )?;
    }
    Ok(())
}

/// A `{what: ..., why: "..."}` report entry as text for people: `id=7 (in flight)`; no
/// raw JSON in human output.
fn entry_text(entry: &serde_json::Value, what: &str, why: &str) -> String {
    let subject = match entry.get(what) {
        Some(serde_json::Value::Object(k)) => key_map_text(k),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    match entry.get(why) {
        Some(serde_json::Value::String(r)) if subject.is_empty() => r.clone(),
        Some(serde_json::Value::String(r)) => format!("{subject} ({r})"),
        _ => subject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eden_consistency::plan::KeyMap;

    /// A deferred key reads as text in human output, never raw JSON.
    #[test]
    fn deferred_entries_are_text() {
        let mut key = KeyMap::new();
        key.insert("b".into(), serde_json::json!(1));
        key.insert("a".into(), serde_json::json!("x"));
        let entry = serde_json::json!({"key": key, "reason": "in flight"});
        assert_eq!(entry_text(&entry, "key", "reason"), "b=1, a=x (in flight)");
        let entry = serde_json::json!({"key": key});
        assert_eq!(entry_text(&entry, "key", "reason"), "b=1, a=x");
    }
}
