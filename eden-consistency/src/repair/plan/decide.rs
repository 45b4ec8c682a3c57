//! Deciding a key: the versions shown to a decider, the deciders (the table's rule, the
//! `missing_rows:` setting) and the JSON image merging they use.

use crate::error::{Error, Result};

use super::{ActionKind, FetchedRow, TableShape};

/// One region's version of a row, as shown to a decider.
#[derive(Debug, Clone, Copy)]
pub struct VersionView<'a> {
    /// Region name.
    pub region: &'a str,
    /// Its place in the tie-break order (config order, then `--region` flags).
    pub region_index: usize,
    /// The row there, `None` when absent.
    pub row: Option<&'a FetchedRow>,
    /// For an absent row: when it was deleted, from the table's tombstone table.
    pub tombstone: Option<&'a crate::row::value::Value>,
}

/// Which version wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Winner {
    /// The version of the region at this index (of the versions given) wins.
    Region(usize),
    /// A merged row (per-column resolution): its full `to_jsonb` image, taken from region
    /// `based_on` and changed column by column.
    Merged {
        /// The image to write.
        image: String,
        /// The region whose version the image starts from (recorded as `winner_region`).
        based_on: usize,
    },
    /// The row must not exist (a newer delete won). `by` is the version whose tombstone
    /// won, if known.
    Delete {
        /// Index of the version whose delete won.
        by: Option<usize>,
    },
}

/// A decider's answer for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The winner; ignored when `needs_human`.
    pub winner: Winner,
    /// `decided_by`, see `docs/replication_conflicts.md`.
    pub decided_by: String,
    /// A human must decide: nothing is written, unresolved records are.
    pub needs_human: bool,
    /// Per version (same order), the action, when the decider says (`None`: derived from
    /// the winner by comparing values).
    pub actions: Option<Vec<Option<ActionKind>>>,
}

/// Decides one key from its versions (one per region, in region order).
pub type Decide<'d> = dyn FnMut(&TableShape, &[VersionView<'_>]) -> Result<Resolved> + Send + 'd;

/// Applies a table's `missing_rows:` setting before `inner` decides: when the row exists in
/// some regions and is absent, with no tombstone, in others, `delete` makes the absence win
/// (the row is deleted where it exists, archived first) and `manual` leaves the key to a
/// human; `copy` (the default) lets `inner` decide, which copies the row.
pub fn missing_rows_decider<'d>(
    policy: crate::config::MissingRows,
    mut inner: Box<Decide<'d>>,
) -> Box<Decide<'d>> {
    use crate::config::MissingRows;
    Box::new(move |shape: &TableShape, views: &[VersionView<'_>]| {
        let absent = views
            .iter()
            .position(|v| v.row.is_none() && v.tombstone.is_none());
        let present = views.iter().any(|v| v.row.is_some());
        match (policy, absent, present) {
            (MissingRows::Delete, Some(i), true) => Ok(Resolved {
                winner: Winner::Delete { by: Some(i) },
                decided_by: "missing_rows".into(),
                needs_human: false,
                actions: None,
            }),
            (MissingRows::Manual, Some(_), true) => Ok(Resolved {
                winner: Winner::Delete { by: None },
                decided_by: "manual".into(),
                needs_human: true,
                actions: None,
            }),
            _ => inner(shape, views),
        }
    })
}

/// A decider backed by the table's [`crate::resolve::Resolver`].
pub fn resolver_decider(resolver: crate::resolve::Resolver) -> Box<Decide<'static>> {
    use crate::resolve::{Action, Row, Version, Winner as RW};
    let mut columns: Option<std::sync::Arc<[String]>> = None;
    Box::new(move |shape: &TableShape, views: &[VersionView<'_>]| {
        let cols = columns
            .get_or_insert_with(|| {
                shape
                    .compared_columns()
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .into()
            })
            .clone();
        let mut versions = Vec::with_capacity(views.len());
        for v in views {
            let ver = match v.row {
                Some(r) => {
                    let row =
                        Row::new(cols.clone(), r.values.clone()).map_err(|m| Error::Table {
                            table: shape.table.to_string(),
                            message: m.to_string(),
                        })?;
                    let mut ver = Version::present(v.region, v.region_index, row);
                    if let Some(ts) = r.commit_ts_micros {
                        ver = ver.with_commit_ts(ts);
                    }
                    ver
                }
                None => {
                    let mut ver = Version::absent(v.region, v.region_index);
                    if let Some(t) = v.tombstone {
                        ver = ver.with_tombstone(t.clone());
                    }
                    ver
                }
            };
            versions.push(ver);
        }
        let d = resolver.resolve(&versions);
        let winner = match &d.winner {
            RW::Row(i) => Winner::Region(*i),
            RW::Delete => Winner::Delete { by: d.winner_index },
            RW::Merged(_) => {
                let base = d.winner_index.unwrap_or(0);
                let base_img = views
                    .get(base)
                    .and_then(|v| v.row)
                    .map(|r| r.image.as_str())
                    .ok_or_else(|| Error::Table {
                        table: shape.table.to_string(),
                        message: "the merged row's base version is absent".into(),
                    })?;
                let mut sources: Vec<(&str, &str)> = Vec::new();
                for (col, i) in &d.column_sources {
                    if let Some(img) = views.get(*i).and_then(|v| v.row).map(|r| r.image.as_str()) {
                        sources.push((col.as_str(), img));
                    }
                }
                let image = merge_images(base_img, &sources).map_err(|m| Error::Table {
                    table: shape.table.to_string(),
                    message: m,
                })?;
                Winner::Merged {
                    image,
                    based_on: base,
                }
            }
        };
        let actions = d
            .actions
            .iter()
            .map(|(_, a)| match a {
                Action::None => None,
                Action::Insert => Some(ActionKind::Insert),
                Action::Update => Some(ActionKind::Update),
                Action::Delete => Some(ActionKind::Delete),
                Action::Manual => Some(ActionKind::Manual),
            })
            .collect();
        Ok(Resolved {
            winner,
            decided_by: d.decided_by.clone(),
            needs_human: d.needs_human,
            actions: Some(actions),
        })
    })
}

/// Splits the text of a JSON object into its members' keys (decoded) and raw value texts,
/// without parsing numbers (so nothing loses precision).
pub fn split_json_object(text: &str) -> std::result::Result<Vec<(String, &str)>, String> {
    let b = text.as_bytes();
    let bad = || {
        format!(
            "not a JSON object: {}",
            text.chars().take(60).collect::<String>()
        )
    };
    let skip_ws = |mut i: usize| {
        while i < b.len() && (b[i] as char).is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // end of a string starting at b[i] == '"' (index after the closing quote)
    let str_end = |mut i: usize| -> Option<usize> {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    };
    let mut i = skip_ws(0);
    if b.get(i) != Some(&b'{') {
        return Err(bad());
    }
    i = skip_ws(i + 1);
    let mut out = Vec::new();
    if b.get(i) == Some(&b'}') {
        return Ok(out);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return Err(bad());
        }
        let ke = str_end(i).ok_or_else(bad)?;
        let key: String = serde_json::from_str(&text[i..ke]).map_err(|_| bad())?;
        i = skip_ws(ke);
        if b.get(i) != Some(&b':') {
            return Err(bad());
        }
        i = skip_ws(i + 1);
        let vs = i;
        let mut depth = 0i32;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i = str_end(i).ok_or_else(bad)?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth > 0 => depth -= 1,
                b',' | b'}' if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        out.push((key, text[vs..i].trim_end()));
        match b.get(i) {
            Some(b',') => i = skip_ws(i + 1),
            Some(b'}') => return Ok(out),
            _ => return Err(bad()),
        }
    }
}

/// Builds a merged row image: `base` with each `(column, image)` source's value of that
/// column. Keeps `base`'s member order (so jsonb's canonical text stays canonical).
pub fn merge_images(base: &str, sources: &[(&str, &str)]) -> std::result::Result<String, String> {
    let mut members = split_json_object(base)?;
    for (col, img) in sources {
        let src = split_json_object(img)?;
        if let Some((_, v)) = src.iter().find(|(k, _)| k == col) {
            if let Some(m) = members.iter_mut().find(|(k, _)| k == col) {
                m.1 = v;
            }
        }
    }
    let mut s = String::from("{");
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&serde_json::Value::String(k.clone()).to_string());
        s.push_str(": ");
        s.push_str(v);
    }
    s.push('}');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_exact_numbers() {
        let base = r#"{"a": 1, "b": "x, \"y\"}", "c": 12345678901234567890.12345678901, "d": {"e": [1, 2]}}"#;
        let other = r#"{"a": 2, "b": "z", "c": 0.1, "d": null}"#;
        let m = merge_images(base, &[("c", other), ("d", other)]).unwrap();
        assert_eq!(m, r#"{"a": 1, "b": "x, \"y\"}", "c": 0.1, "d": null}"#);
        let back = merge_images(other, &[("c", base)]).unwrap();
        assert!(back.contains("12345678901234567890.12345678901"));
        assert!(split_json_object("[1]").is_err());
        assert_eq!(split_json_object("{}").unwrap(), vec![]);
    }
}
