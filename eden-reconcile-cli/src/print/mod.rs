//! Everything the binary prints for people: the reports of each command as aligned text, and
//! progress bars on a terminal. The library only returns values; this is where they become
//! text.

pub mod cache;
pub mod check;
pub mod conflicts;
pub mod fix;
pub mod progress;
pub mod status;
pub mod undo;

use std::io::{self, Write};

/// A key for people: `id=7, name=x` for a JSON object (strings unquoted), the JSON text for
/// anything else.
pub fn key_text(key: &serde_json::Value) -> String {
    match key {
        serde_json::Value::Object(m) => key_map_text(m),
        other => other.to_string(),
    }
}

/// [`key_text`] of a key map.
pub fn key_map_text(m: &serde_json::Map<String, serde_json::Value>) -> String {
    m.iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes rows as an aligned text table for people: each line starts with `indent`, columns
/// are separated by at least two spaces, trailing blanks are trimmed. `head` is the first
/// line; every row should have as many cells as `head`.
pub fn write_aligned<R: AsRef<[String]>>(
    out: &mut dyn Write,
    indent: &str,
    head: &[&str],
    rows: &[R],
) -> io::Result<()> {
    let mut widths: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.as_ref().iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut s = String::from(indent);
        for (i, c) in cells.enumerate() {
            s.push_str(c);
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(c.chars().count())
                + 2;
            s.push_str(&" ".repeat(pad));
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(&mut head.iter().copied()))?;
    for row in rows {
        writeln!(
            out,
            "{}",
            line(&mut row.as_ref().iter().map(String::as_str))
        )?;
    }
    Ok(())
}

/// One table's part of a fix report (PostgreSQL or Redis): the heading
/// `table (resolution): N action(s), A applied, U unresolved, notes...` and the actions as
/// an aligned table of `[key, region, action, winner, decided_by, status]` rows.
pub fn fix_table(
    out: &mut dyn Write,
    table: &str,
    resolution: &str,
    (applied, unresolved): (u64, u64),
    notes: &[String],
    actions: &[[String; 6]],
) -> io::Result<()> {
    let mut line = format!(
        "{table} ({resolution}): {} action(s), {applied} applied, {unresolved} unresolved",
        actions.len()
    );
    for n in notes {
        line.push_str(", ");
        line.push_str(n);
    }
    writeln!(out, "{line}")?;
    if !actions.is_empty() {
        write_aligned(
            out,
            "  ",
            &["key", "region", "action", "winner", "decided_by", "status"],
            actions,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fix_table_heading_and_rows() {
        let mut out = Vec::new();
        let row = ["id=7", "us", "update", "eu", "last_write_wins", "applied"].map(String::from);
        fix_table(
            &mut out,
            "public.t",
            "last_write_wins",
            (1, 0),
            &["2 in flight".into()],
            &[row],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "public.t (last_write_wins): 1 action(s), 1 applied, 0 unresolved, 2 in flight\n  \
             key   region  action  winner  decided_by       status\n  \
             id=7  us      update  eu      last_write_wins  applied\n"
        );
    }

    #[test]
    fn aligned() {
        let mut out = Vec::new();
        write_aligned(
            &mut out,
            "  ",
            &["key", "action"],
            &[vec!["id=7".into(), "update".into()]],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  key   action\n  id=7  update\n"
        );
    }

    #[test]
    fn keys() {
        assert_eq!(
            key_text(&serde_json::json!({"id": 42, "r": "us"})),
            "id=42, r=us"
        );
        assert_eq!(key_text(&serde_json::json!([1])), "[1]");
    }
}
