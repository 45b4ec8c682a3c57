//! Masking secret columns in what the tool prints.
//!
//! A table's `redact_columns: [..]` names columns whose values never appear in any output
//! or log of the tool: `conflicts` (human and JSON), the reports of `check`, `fix` and
//! `undo`. The archive in the database (`replication_conflicts`) keeps the real values,
//! since `undo` needs them; `--show-values` prints them for someone who must see them.

use std::collections::BTreeSet;

use serde_json::Value as Json;

use crate::config::Config;
use crate::pg::ident::TableName;

/// What a masked value is replaced with.
pub const MASK: &str = "[redacted]";

/// Which columns of which tables are masked, for one database.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// (schema or any, table name, columns).
    rules: Vec<(Option<String>, String, BTreeSet<String>)>,
}

impl Redactor {
    /// Masks nothing (`--show-values`).
    pub fn none() -> Redactor {
        Redactor::default()
    }

    /// The `redact_columns` of every table rule of database `db` in `config`.
    pub fn from_config(config: &Config, db: Option<&str>) -> Redactor {
        let groups = config
            .node_groups
            .iter()
            .filter(|g| db.is_none_or(|d| g.database == d));
        let mut rules = Vec::new();
        for g in groups {
            for rule in &g.tables {
                if rule.redact_columns.is_empty() {
                    continue;
                }
                if let Ok((schema, name)) = TableName::parse_user(&rule.table) {
                    rules.push((schema, name, rule.redact_columns.iter().cloned().collect()));
                }
            }
        }
        Redactor { rules }
    }

    /// True when nothing is masked.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The masked columns of `table` (`schema.table`, as the reports print it).
    pub fn columns(&self, table: &str) -> Option<&BTreeSet<String>> {
        let (schema, name) = match TableName::parse_user(table) {
            Ok((s, n)) => (s, n),
            Err(_) => (None, table.to_string()),
        };
        let mut unqualified = None;
        for (s, n, cols) in &self.rules {
            if *n != name {
                continue;
            }
            match (s, &schema) {
                (Some(a), Some(b)) if a == b => return Some(cols),
                (None, _) => unqualified = unqualified.or(Some(cols)),
                _ => {}
            }
        }
        unqualified
    }

    /// Masks the listed columns of `table` in a row image or key (a JSON object); other
    /// values are left alone. Nested objects (e.g. a `details` document holding row images)
    /// are masked too.
    pub fn mask(&self, table: &str, value: &mut Json) {
        if let Some(cols) = self.columns(table) {
            mask_in(cols, value);
        }
    }

    /// [`Redactor::mask`] for a key map.
    pub fn mask_map(&self, table: &str, map: &mut serde_json::Map<String, Json>) {
        if let Some(cols) = self.columns(table) {
            mask_map_in(cols, map);
        }
    }
}

fn mask_map_in(cols: &BTreeSet<String>, map: &mut serde_json::Map<String, Json>) {
    for (k, v) in map.iter_mut() {
        if cols.contains(k) {
            if !v.is_null() {
                *v = Json::String(MASK.into());
            }
        } else {
            mask_in(cols, v);
        }
    }
}

fn mask_in(cols: &BTreeSet<String>, value: &mut Json) {
    match value {
        Json::Object(map) => mask_map_in(cols, map),
        Json::Array(items) => items.iter_mut().for_each(|v| mask_in(cols, v)),
        // Row images are sometimes carried as JSON text (e.g. an archived image).
        Json::String(s) if s.starts_with('{') => {
            if let Ok(mut inner @ Json::Object(_)) = serde_json::from_str::<Json>(s) {
                mask_in(cols, &mut inner);
                *s = inner.to_string();
            }
        }
        _ => {}
    }
}

/// Masks values the server quotes in an error's detail: `Failing row contains (...)` (the
/// whole row) and `Key (a, b)=(...)` when the key names a masked column.
pub fn mask_message(cols: &BTreeSet<String>, text: &str) -> String {
    let mut out = text.to_string();
    if let Some(i) = out.find("Failing row contains (") {
        let start = i + "Failing row contains (".len();
        if let Some(end) = out[start..].rfind(").").or_else(|| out[start..].rfind(')')) {
            out.replace_range(start..start + end, MASK);
        }
    }
    let mut from = 0;
    while let Some(i) = out[from..].find("Key (") {
        let at = from + i + "Key (".len();
        let Some(close) = out[at..].find(")=(") else {
            break;
        };
        let names = &out[at..at + close];
        let vals_start = at + close + 3;
        let masked = names
            .split(',')
            .any(|n| cols.contains(n.trim().trim_matches('"')));
        let vals_end = out[vals_start..]
            .find(") ")
            .or_else(|| out[vals_start..].rfind(')'))
            .map(|e| vals_start + e);
        match (masked, vals_end) {
            (true, Some(end)) => {
                out.replace_range(vals_start..end, MASK);
                from = vals_start + MASK.len();
            }
            _ => from = vals_start,
        }
    }
    out
}

/// Masks a fix report in place: keys, deferred entries, keys still differing, values
/// quoted in batch errors.
pub fn fix_report(r: &Redactor, report: &mut crate::repair::apply::FixReport) {
    if r.is_empty() {
        return;
    }
    for t in &mut report.tables {
        let table = t.table.clone();
        if let Some(cols) = r.columns(&table) {
            for e in &mut t.errors {
                *e = mask_message(cols, e);
            }
        }
        for a in &mut t.actions {
            r.mask_map(&table, &mut a.key);
        }
        for d in &mut t.deferred {
            r.mask(&table, d);
        }
        for k in &mut t.still_differing {
            r.mask_map(&table, k);
        }
    }
}

/// Masks an undo report in place (keys).
pub fn undo_report(r: &Redactor, report: &mut crate::repair::undo::UndoReport) {
    for a in &mut report.actions {
        r.mask_map(&a.table.clone(), &mut a.key);
    }
}

/// Masks a check report in place (keys of differences).
pub fn check_report(r: &Redactor, report: &mut crate::check::report::CheckReport) {
    if r.is_empty() {
        return;
    }
    for t in &mut report.tables {
        let table = t.table.clone();
        let r = r.clone();
        t.differences.mask(move |d| r.mask_map(&table, &mut d.key));
    }
}

/// Masks listed conflicts in place: key, `local_row`, `remote_row`, `details`.
pub fn conflicts(r: &Redactor, rows: &mut [crate::store::conflicts::ListedConflict]) {
    if r.is_empty() {
        return;
    }
    for c in rows {
        let table = c.table_name.clone();
        r.mask(&table, &mut c.key);
        for v in [&mut c.local_row, &mut c.remote_row, &mut c.details]
            .into_iter()
            .flatten()
        {
            r.mask(&table, v);
        }
        for v in c.other.values_mut() {
            r.mask(&table, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_in_server_details() {
        let cols: BTreeSet<String> = ["secret".to_string()].into();
        assert_eq!(
            mask_message(
                &cols,
                "new row violates check constraint \"c\" (Failing row contains (1, s3cr3t, x).)"
            ),
            "new row violates check constraint \"c\" (Failing row contains ([redacted]).)"
        );
        assert_eq!(
            mask_message(
                &cols,
                "duplicate key (Key (secret)=(s3cr3t) already exists.)"
            ),
            "duplicate key (Key (secret)=([redacted]) already exists.)"
        );
        let other = "duplicate key (Key (id)=(7) already exists.)";
        assert_eq!(mask_message(&cols, other), other);
    }

    #[test]
    fn masks_listed_columns_only() {
        let yaml = "regions: []\nreplication:\n  node_groups:\n    - name: g\n      database: d\n      conflict_resolution_tables:\n        - {table: vault_secrets, resolution: last_write_wins, redact_columns: [encrypted_value]}\n";
        let cfg = Config::from_yaml_str(yaml, "c.yaml").unwrap();
        let r = Redactor::from_config(&cfg, Some("d"));
        let mut row = serde_json::json!({"id": 1, "encrypted_value": "s3", "nested": {"encrypted_value": "x"}, "n": null});
        r.mask("public.vault_secrets", &mut row);
        assert_eq!(
            row,
            serde_json::json!({"id": 1, "encrypted_value": MASK, "nested": {"encrypted_value": MASK}, "n": null})
        );
        let mut other = serde_json::json!({"encrypted_value": "s3"});
        r.mask("public.other", &mut other);
        assert_eq!(other["encrypted_value"], "s3");
        assert!(Redactor::none().columns("public.vault_secrets").is_none());
    }
}
