//! The `conflicts` listing for people.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use eden_consistency::conflicts::ListedConflict;

use super::{key_text, write_aligned};

/// A compact age: `45s`, `12m`, `1h30m`, `2d4h`.
pub fn format_age(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        let (h, m) = (s / 3600, (s % 3600) / 60);
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{m}m")
        }
    } else {
        let (d, h) = (s / 86_400, (s % 86_400) / 3600);
        if h == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{h}h")
        }
    }
}

fn cell(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.chars().count() > max {
        let mut t: String = one_line.chars().take(max - 1).collect();
        t.push('…');
        t
    } else {
        one_line
    }
}

/// Prints `rows` as an aligned table for people, then a count line; `no conflicts
/// recorded` when there are none.
pub fn human(out: &mut dyn Write, rows: &[ListedConflict], now: DateTime<Utc>) -> io::Result<()> {
    if rows.is_empty() {
        return writeln!(out, "no conflicts recorded");
    }
    let header = [
        "AGE",
        "REGION",
        "TABLE",
        "KEY",
        "TYPE",
        "REGIONS",
        "RESOLUTION",
        "DECIDED BY",
        "STATUS",
    ];
    // Records imported from the replication engine carry a `source`: show where they came
    // from when any is listed.
    let source_of = |r: &ListedConflict| {
        r.other
            .get("source")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let with_source = rows.iter().any(|r| source_of(r).is_some());
    let mut table: Vec<Vec<String>> = Vec::with_capacity(rows.len());
    for r in rows {
        let regions = match (&r.local_region, &r.remote_region) {
            (Some(l), Some(rm)) if l != rm => format!("{l} ↔ {rm}"),
            (Some(l), _) => l.clone(),
            (None, Some(rm)) => rm.clone(),
            (None, None) => "-".into(),
        };
        let resolution = match (&r.resolution, &r.winner_region) {
            (Some(res), Some(w)) => format!("{res} → {w}"),
            (Some(res), None) => res.clone(),
            (None, Some(w)) => format!("→ {w}"),
            (None, None) => "-".into(),
        };
        // Imported records are partial (the engine's log shortens values).
        let partial = r
            .details
            .as_ref()
            .and_then(|d| d.get("partial"))
            .and_then(|p| p.as_bool())
            .unwrap_or(false);
        let status = if r.resolved_at.is_some() {
            match (&r.action, partial) {
                (Some(a), _) => format!("resolved ({a})"),
                (None, true) => "resolved (partial record)".into(),
                (None, false) => "resolved".into(),
            }
        } else {
            "unresolved".into()
        };
        let mut line = vec![
            format_age((now - r.created_at).num_seconds()),
            cell(&r.region, 20),
            cell(&r.table_name, 40),
            cell(&key_text(&r.key), 40),
            cell(r.conflict_type.as_deref().unwrap_or("-"), 20),
            cell(&regions, 40),
            cell(&resolution, 40),
            cell(r.decided_by.as_deref().unwrap_or("-"), 30),
            status,
        ];
        if with_source {
            line.push(source_of(r).unwrap_or_else(|| "-".into()));
        }
        table.push(line);
    }
    let mut header = header.to_vec();
    if with_source {
        header.push("SOURCE");
    }
    write_aligned(out, "", &header, &table)?;
    let unresolved = rows.iter().filter(|r| r.is_unresolved()).count();
    writeln!(
        out,
        "\n{} conflict{} ({} unresolved)",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        unresolved
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
    }

    fn listed(region: &str, table: &str, id: i64, age_secs: i64, resolved: bool) -> ListedConflict {
        ListedConflict {
            region: region.into(),
            id,
            created_at: now() - chrono::Duration::seconds(age_secs),
            table_name: table.into(),
            key: json!({ "id": id }),
            conflict_type: Some("update_differs".into()),
            local_region: Some(region.into()),
            remote_region: Some("us-west-2".into()),
            local_row: None,
            remote_row: None,
            resolution: Some("last_write_wins".into()),
            winner_region: Some("us-west-2".into()),
            decided_by: Some("last_updated_at".into()),
            resolved_at: resolved.then(now),
            run_id: None,
            action: None,
            changed_columns: None,
            details: None,
            other: Default::default(),
        }
    }

    #[test]
    fn ages() {
        assert_eq!(format_age(5), "5s");
        assert_eq!(format_age(125), "2m");
        assert_eq!(format_age(5400), "1h30m");
        assert_eq!(format_age(7200), "2h");
        assert_eq!(format_age(86_400 * 2 + 3600 * 4), "2d4h");
    }

    #[test]
    fn imported_records_show_their_source() {
        let mut imported = listed("us-east-1", "public.t", 9, 5, true);
        imported.decided_by = Some("pglogical:apply_remote".into());
        imported.details = Some(json!({"partial": true}));
        imported
            .other
            .insert("source".into(), json!("pglogical-log"));
        let own = listed("us-east-1", "public.t", 8, 50, true);
        let mut out = Vec::new();
        human(&mut out, &[imported, own.clone()], now()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].trim_end().ends_with("SOURCE"), "{text}");
        assert!(
            lines[1].contains("resolved (partial record)") && lines[1].ends_with("pglogical-log"),
            "{text}"
        );
        assert!(lines[2].trim_end().ends_with('-'), "{text}");
        // No imported record listed: no SOURCE column.
        let mut out = Vec::new();
        human(&mut out, &[own], now()).unwrap();
        assert!(!String::from_utf8(out).unwrap().contains("SOURCE"));
    }

    #[test]
    fn empty() {
        let mut out = Vec::new();
        human(&mut out, &[], now()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "no conflicts recorded\n");
    }

    #[test]
    fn aligned_listing() {
        let rows = vec![
            listed("us-east-1", "Other.vault_secrets", 5, 10, false),
            listed("us-west-2", "public.t", 3, 3600, true),
        ];
        let mut out = Vec::new();
        human(&mut out, &rows, now()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("AGE")
                && lines[0].contains("REGION")
                && lines[0].contains("DECIDED BY"),
            "{text}"
        );
        assert!(
            lines[1].contains("Other.vault_secrets")
                && lines[1].contains("id=5")
                && lines[1].contains("unresolved"),
            "{text}"
        );
        assert!(
            lines[2].contains("us-west-2") && lines[2].contains("1h"),
            "{text}"
        );
        assert!(text.contains("2 conflicts (1 unresolved)"), "{text}");
        // Columns are aligned: "REGION" starts at the same offset as each region cell.
        let off = lines[0].find("REGION").unwrap();
        assert_eq!(&lines[1][off..off + 9], "us-east-1", "{text}");
        assert_eq!(&lines[2][off..off + 9], "us-west-2", "{text}");
    }
}
