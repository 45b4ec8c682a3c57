//! The merged report of `merge-reports` for people (it is JSON from the shards).

use std::io::{self, Write};

use serde_json::Value;

/// One line per table (status, rows per region, differences), the first few differing
/// keys, and the verdict.
pub fn human(report: &Value, out: &mut dyn Write) -> io::Result<()> {
    const SHOWN: usize = 5;
    let names = |v: &Value| -> String {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    writeln!(
        out,
        "database {}  regions {}  (merged from {} shards)",
        report["database"].as_str().unwrap_or(""),
        names(&report["regions"]),
        report["merged_from"].as_array().map_or(0, Vec::len)
    )?;
    let tables = report["tables"].as_array().cloned().unwrap_or_default();
    let width = tables
        .iter()
        .filter_map(|t| t["table"].as_str().map(str::len))
        .max()
        .unwrap_or(5)
        .max(5);
    for t in &tables {
        let rows = t["row_counts"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(r, n)| format!("{r}={n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let mut line = format!(
            "{:<width$}  {:<15}  {rows}",
            t["table"].as_str().unwrap_or(""),
            t["status"].as_str().unwrap_or("")
        );
        let n = t["difference_count"].as_u64().unwrap_or(0);
        if n > 0 {
            line.push_str(&format!(
                "  {n} difference{}",
                if n == 1 { "" } else { "s" }
            ));
        }
        writeln!(out, "{line}")?;
        if let (Some(m), false) = (t["message"].as_str(), t["status"] == "divergent") {
            writeln!(out, "    {m}")?;
        }
        let diffs = t["differences"].as_array().cloned().unwrap_or_default();
        for d in diffs.iter().take(SHOWN) {
            let key = crate::print::key_text(&d["key"]);
            let mut what = Vec::new();
            let missing = names(&d["missing_in"]);
            if !missing.is_empty() {
                what.push(format!("missing in {missing}"));
            }
            let changed = names(&d["changed_columns"]);
            if !changed.is_empty() {
                what.push(format!("changed: {changed}"));
            }
            if d["in_flight"] == Value::Bool(true) {
                what.push("in flight".into());
            }
            writeln!(out, "    {key}: {}", what.join("; "))?;
        }
        if n as usize > diffs.len().min(SHOWN) {
            writeln!(
                out,
                "    ... and {} more",
                n as usize - diffs.len().min(SHOWN)
            )?;
        }
    }
    writeln!(
        out,
        "{} ({} table{})",
        if report["consistent"] == Value::Bool(true) {
            "consistent"
        } else {
            "NOT consistent"
        },
        tables.len(),
        if tables.len() == 1 { "" } else { "s" }
    )
}
