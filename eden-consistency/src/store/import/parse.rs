//! Parsing the replication engines' conflict messages.
//!
//! pglogical (2.x) writes, at `pglogical.conflict_log_level`:
//!
//! ```text
//! CONFLICT: remote UPDATE on relation public.t (local index t_pkey). Resolution: apply_remote.
//! DETAIL:  existing local tuple {id[int4]:1 v[text]:a} xid=750,origin=0,timestamp=2026-12-02 03:50:01.1+00; remote tuple {id[int4]:1 v[text]:b} in xact origin=1,timestamp=2026-12-02 03:50:02.2+00,commit_lsn=0/16B3F48
//! ```
//!
//! and, when the row is not found, `CONFLICT: remote UPDATE on relation public.t replica
//! identity index t_pkey (tuple not found). Resolution: skip.` with `DETAIL:  remote tuple
//! {...} in xact ...`. Each value is the type's output text, cut to 35 bytes plus `...`
//! when longer than 40 bytes.
//!
//! PostgreSQL 18 writes `conflict detected on relation "public.t": conflict=update_origin_differs`
//! with a free-text detail and a context naming the replication origin.

use serde_json::{Map, Value as Json};

/// One pglogical conflict message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PglogicalConflict {
    /// `insert_insert`, `update_update`, `update_delete`, `delete_delete`.
    pub conflict_type: String,
    /// The relation as printed (quoted where SQL needs it), e.g. `public.t`.
    pub relation: String,
    /// The index used to find the row, when printed.
    pub index: Option<String>,
    /// `apply_remote`, `keep_local`, `skip`.
    pub resolution: String,
    /// The local tuple's text (between the braces).
    pub local_tuple: Option<String>,
    /// The local tuple's transaction id.
    pub local_xid: Option<u64>,
    /// The local tuple's replication origin (-1: unknown).
    pub local_origin: Option<i64>,
    /// The local tuple's commit time as printed.
    pub local_commit_ts: Option<String>,
    /// The remote tuple's text.
    pub remote_tuple: Option<String>,
    /// Local BEFORE triggers changed the remote tuple (`*` after it).
    pub before_triggers: bool,
    /// The replication origin the change came through.
    pub remote_origin: Option<u32>,
    /// The remote transaction's commit time as printed.
    pub remote_commit_ts: Option<String>,
    /// The commit LSN as printed (only its low 32 bits are right).
    pub commit_lsn: Option<String>,
}

/// Parses a pglogical `CONFLICT: remote ...` message and its detail; `None` for any other
/// message.
pub fn parse_pglogical(message: &str, detail: Option<&str>) -> Option<PglogicalConflict> {
    let rest = message.trim().strip_prefix("CONFLICT: remote ")?;
    let (op, rest) = rest.split_once(" on relation ")?;
    let (head, resolution) = rest.rsplit_once(". Resolution: ")?;
    let resolution = resolution.trim_end_matches('.').trim().to_string();
    let (relation, index, conflict_type) = if let Some((rel, idx)) = head
        .strip_suffix(" (tuple not found)")
        .and_then(|h| h.rsplit_once(" replica identity index "))
    {
        let t = match op {
            "UPDATE" => "update_delete",
            "DELETE" => "delete_delete",
            _ => return None,
        };
        (rel.to_string(), Some(idx.to_string()), t)
    } else {
        let (rel, idx) = head.strip_suffix(')')?.rsplit_once(" (local index ")?;
        let t = match op {
            "INSERT" => "insert_insert",
            "UPDATE" => "update_update",
            _ => return None,
        };
        (rel.to_string(), Some(idx.to_string()), t)
    };
    let mut c = PglogicalConflict {
        conflict_type: conflict_type.into(),
        relation,
        index: index.filter(|i| i != "(unknown)"),
        resolution,
        ..PglogicalConflict::default()
    };
    let Some(detail) = detail else {
        return Some(c);
    };
    let mut d = detail.trim();
    if let Some(after) = d.strip_prefix("existing local tuple {") {
        let (tuple, tail) = split_tuple(after)?;
        c.local_tuple = Some(tuple.to_string());
        // " xid=750,origin=0,timestamp=...; remote tuple {"
        let (meta, tail) = tail.split_once("; remote tuple {")?;
        for part in split_fields(meta.trim()) {
            match part {
                ("xid", v) => c.local_xid = v.parse().ok(),
                ("origin", v) => c.local_origin = v.parse().ok(),
                ("timestamp", v) => c.local_commit_ts = (!v.is_empty()).then(|| v.to_string()),
                _ => {}
            }
        }
        d = tail;
    } else {
        d = d.strip_prefix("remote tuple {")?;
    }
    let (tuple, tail) = split_tuple(d)?;
    c.remote_tuple = Some(tuple.to_string());
    let tail = match tail.strip_prefix('*') {
        Some(t) => {
            c.before_triggers = true;
            t
        }
        None => tail,
    };
    if let Some(meta) = tail.trim().strip_prefix("in xact ") {
        for part in split_fields(meta) {
            match part {
                ("origin", v) => c.remote_origin = v.parse().ok(),
                ("timestamp", v) => c.remote_commit_ts = Some(v.to_string()),
                ("commit_lsn", v) => c.commit_lsn = Some(v.to_string()),
                _ => {}
            }
        }
    }
    Some(c)
}

/// `tuple} rest` → (`tuple`, `rest`): the brace that closes the tuple is the last `}`
/// followed by ` xid=` (local) or ` in xact ` / `* in xact ` (remote).
fn split_tuple(s: &str) -> Option<(&str, &str)> {
    for marker in ["} xid=", "} in xact ", "}* in xact "] {
        if let Some(pos) = s.rfind(marker) {
            return Some((&s[..pos], &s[pos + 1..]));
        }
    }
    let pos = s.rfind('}')?;
    Some((&s[..pos], &s[pos + 1..]))
}

/// `a=1,timestamp=2026-12-02 03:50:01+00,b=2` → pairs (values may hold spaces, not commas).
fn split_fields(s: &str) -> Vec<(&str, &str)> {
    s.split(',')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// A tuple printed by pglogical, as a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedTuple {
    /// Column → value: integers as numbers, `(null)` as null, everything else as text.
    pub values: Map<String, Json>,
    /// Columns whose printed value was shortened (ends in `...`).
    pub truncated: Vec<String>,
    /// Columns printed as `(unchanged-toast-datum)` (value unknown).
    pub unchanged: Vec<String>,
}

/// pglogical cuts a value longer than 40 bytes to its first 35 bytes plus `...`.
const TRUNCATED_LEN: usize = 38;

/// Splits `id[int4]:1 v[text]:a b` into columns. With the table's `(column, type name)`
/// list the split follows it exactly (values may contain spaces); without it, or when
/// the text does not fit it, every ` name[type]:` starts a new column.
pub fn parse_tuple(text: &str, columns: Option<&[(String, String)]>) -> ParsedTuple {
    let pairs = columns
        .and_then(|cols| split_known(text, cols))
        .unwrap_or_else(|| split_generic(text));
    let mut t = ParsedTuple::default();
    for (name, ty, raw) in pairs {
        let v = if raw == "(null)" {
            Json::Null
        } else if raw == "(unchanged-toast-datum)" {
            t.unchanged.push(name.clone());
            Json::Null
        } else if raw.ends_with("...") && (raw.len() == TRUNCATED_LEN || raw.contains('\u{FFFD}')) {
            t.truncated.push(name.clone());
            Json::String(raw.to_string())
        } else if matches!(ty.as_str(), "int2" | "int4" | "int8" | "oid") {
            raw.parse::<i64>()
                .map(Json::from)
                .unwrap_or_else(|_| Json::String(raw.to_string()))
        } else {
            Json::String(raw.to_string())
        };
        t.values.insert(name, v);
    }
    t
}

fn split_known<'a>(
    text: &'a str,
    cols: &[(String, String)],
) -> Option<Vec<(String, String, &'a str)>> {
    let heads: Vec<String> = cols.iter().map(|(n, ty)| format!("{n}[{ty}]:")).collect();
    let mut out = Vec::with_capacity(cols.len());
    let mut pos = text
        .strip_prefix(heads.first()?.as_str())
        .map(|_| heads[0].len())?;
    for (i, (name, ty)) in cols.iter().enumerate() {
        let next = heads.get(i + 1);
        let end = match next {
            Some(h) => pos + text[pos..].find(&format!(" {h}"))?,
            None => text.len(),
        };
        out.push((name.clone(), ty.clone(), &text[pos..end]));
        if let Some(h) = next {
            pos = end + 1 + h.len();
        }
    }
    Some(out)
}

fn split_generic(text: &str) -> Vec<(String, String, &str)> {
    // Starts of `name[type]:` at the beginning or after a space.
    let bytes = text.as_bytes();
    let mut starts: Vec<(usize, usize, String, String)> = Vec::new(); // (start, value start, name, type)
    let mut i = 0;
    while i < bytes.len() {
        if i == 0 || bytes[i - 1] == b' ' {
            if let Some((name, ty, len)) = head_at(&text[i..]) {
                starts.push((i, i + len, name, ty));
            }
        }
        i += 1;
    }
    let mut out = Vec::new();
    for (k, (_, vstart, name, ty)) in starts.iter().enumerate() {
        let end = starts
            .get(k + 1)
            .map(|(s, ..)| s.saturating_sub(1))
            .unwrap_or(text.len());
        if *vstart <= end {
            out.push((name.clone(), ty.clone(), &text[*vstart..end]));
        }
    }
    out
}

/// `name[type]:` at the start of `s` → (name, type, length).
fn head_at(s: &str) -> Option<(String, String, usize)> {
    let open = s.find('[')?;
    let name = &s[..open];
    if name.is_empty() || name.contains([' ', ']', ':']) {
        return None;
    }
    let close = open + s[open..].find(']')?;
    let ty = &s[open + 1..close];
    if ty.is_empty() || ty.contains([' ', '[']) || !s[close + 1..].starts_with(':') {
        return None;
    }
    Some((name.to_string(), ty.to_string(), close + 2))
}

/// One native (PostgreSQL 18) conflict message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NativeConflict {
    /// The relation's schema.
    pub schema: String,
    /// The relation's name.
    pub table: String,
    /// `update_origin_differs`, `insert_exists`, ...
    pub conflict_type: String,
    /// The replication origin named in the context (`pg_<subscription oid>`).
    pub origin: Option<String>,
    /// `finished at` LSN from the context.
    pub lsn: Option<String>,
    /// The key, from `replica identity (cols)=(vals)` or `key (cols)=(vals)` in the detail.
    pub key: Option<Json>,
}

/// Parses PostgreSQL's `conflict detected on relation "s.t": conflict=TYPE` message.
pub fn parse_native(
    message: &str,
    detail: Option<&str>,
    context: Option<&str>,
) -> Option<NativeConflict> {
    let rest = message
        .trim()
        .strip_prefix("conflict detected on relation \"")?;
    let (rel, ty) = rest.rsplit_once("\": conflict=")?;
    let (schema, table) = rel.split_once('.')?;
    let mut c = NativeConflict {
        schema: schema.into(),
        table: table.into(),
        conflict_type: ty.trim().trim_end_matches('.').to_string(),
        ..NativeConflict::default()
    };
    if let Some(ctx) = context {
        if let Some(after) = ctx.split_once("replication origin \"").map(|(_, a)| a) {
            c.origin = after.split_once('"').map(|(o, _)| o.to_string());
        }
        if let Some(after) = ctx.split_once("finished at ").map(|(_, a)| a) {
            c.lsn = after
                .split(|ch: char| ch.is_whitespace() || ch == ',')
                .next()
                .map(|s| s.to_string());
        }
    }
    if let Some(d) = detail {
        for marker in ["replica identity (", "key ("] {
            if let Some((_, after)) = d.split_once(marker) {
                if let Some((cols, vals)) = after.split_once(")=(") {
                    let vals = vals.split_once(')').map(|(v, _)| v).unwrap_or(vals);
                    let names: Vec<&str> = cols.split(", ").collect();
                    let values: Vec<&str> = vals.split(", ").collect();
                    if names.len() == values.len() {
                        let mut m = Map::new();
                        for (n, v) in names.iter().zip(values) {
                            let j = v
                                .parse::<i64>()
                                .map(Json::from)
                                .unwrap_or_else(|_| Json::String(v.to_string()));
                            m.insert(n.to_string(), j);
                        }
                        c.key = Some(Json::Object(m));
                        break;
                    }
                }
            }
        }
    }
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cols() -> Vec<(String, String)> {
        [
            ("id", "int4"),
            ("secret", "text"),
            ("last_updated_at", "timestamptz"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    }

    #[test]
    fn update_update() {
        let c = parse_pglogical(
            "CONFLICT: remote UPDATE on relation public.vault_secrets (local index vault_secrets_pkey). Resolution: apply_remote.",
            Some("existing local tuple {id[int4]:1 secret[text]:east side last_updated_at[timestamptz]:2026-12-02 03:50:01.1+00} xid=750,origin=0,timestamp=2026-12-02 03:50:01.123456+00; remote tuple {id[int4]:1 secret[text]:west last_updated_at[timestamptz]:2026-12-02 03:50:02+00} in xact origin=1,timestamp=2026-12-02 03:50:02.5+00,commit_lsn=0/16B3F48"),
        )
        .unwrap();
        assert_eq!(c.conflict_type, "update_update");
        assert_eq!(c.relation, "public.vault_secrets");
        assert_eq!(c.index.as_deref(), Some("vault_secrets_pkey"));
        assert_eq!(c.resolution, "apply_remote");
        assert_eq!(c.local_xid, Some(750));
        assert_eq!(c.local_origin, Some(0));
        assert_eq!(c.remote_origin, Some(1));
        assert_eq!(c.commit_lsn.as_deref(), Some("0/16B3F48"));
        assert_eq!(
            c.local_commit_ts.as_deref(),
            Some("2026-12-02 03:50:01.123456+00")
        );
        let t = parse_tuple(c.local_tuple.as_deref().unwrap(), Some(&cols()));
        assert_eq!(
            Json::Object(t.values),
            json!({"id": 1, "secret": "east side", "last_updated_at": "2026-12-02 03:50:01.1+00"})
        );
    }

    #[test]
    fn update_delete_and_insert() {
        let c = parse_pglogical(
            "CONFLICT: remote UPDATE on relation public.t replica identity index t_pkey (tuple not found). Resolution: skip.",
            Some("remote tuple {id[int4]:7 v[text]:(null)}* in xact origin=2,timestamp=2026-12-02 03:50:02+00,commit_lsn=0/1"),
        )
        .unwrap();
        assert_eq!(c.conflict_type, "update_delete");
        assert_eq!(c.resolution, "skip");
        assert!(c.before_triggers);
        assert!(c.local_tuple.is_none());
        let t = parse_tuple(c.remote_tuple.as_deref().unwrap(), None);
        assert_eq!(Json::Object(t.values), json!({"id": 7, "v": null}));
        let c = parse_pglogical(
            "CONFLICT: remote INSERT on relation \"My Schema\".\"T\" (local index \"T_pkey\"). Resolution: keep_local.",
            None,
        )
        .unwrap();
        assert_eq!(c.conflict_type, "insert_insert");
        assert_eq!(c.relation, "\"My Schema\".\"T\"");
        assert!(parse_pglogical("checkpoint starting: time", None).is_none());
    }

    #[test]
    fn truncated_values_and_spaces() {
        let long = format!("{}...", "x".repeat(35));
        let text = format!("id[int4]:2 secret[text]:{long} last_updated_at[timestamptz]:a b[c]:d");
        let t = parse_tuple(&text, Some(&cols()));
        assert_eq!(t.truncated, vec!["secret".to_string()]);
        assert_eq!(t.values["last_updated_at"], json!("a b[c]:d"));
        // Without the column list, a value holding ` x[y]:` is split there.
        let g = parse_tuple("a[int4]:1 b[text]:two words", None);
        assert_eq!(Json::Object(g.values), json!({"a": 1, "b": "two words"}));
    }

    /// What pglogical prints for one value: the text, cut to 35 bytes plus `...` when
    /// longer than 40 bytes (at a byte, as pglogical does; here the cut is moved back to a
    /// character boundary since the test builds a `String`).
    fn printed(v: &str) -> String {
        if v.len() > 40 {
            let mut cut = 35;
            while !v.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}...", &v[..cut])
        } else {
            v.to_string()
        }
    }

    proptest::proptest! {
        /// With the table's columns known, any values (spaces, brackets, colons, other
        /// columns' names) come back as printed, and exactly the cut ones are marked.
        #[test]
        fn tuples_split_by_known_columns(
            a in 0i64..1_000_000,
            b in "[ a-z\\[\\]:é]{0,60}",
            c in "[ -~]{0,50}",
        ) {
            let cols = cols();
            let text = format!(
                "id[int4]:{a} secret[text]:{} last_updated_at[timestamptz]:{}",
                printed(&b),
                printed(&c)
            );
            let t = parse_tuple(&text, Some(&cols));
            proptest::prop_assert_eq!(&t.values["id"], &json!(a));
            proptest::prop_assert_eq!(&t.values["secret"], &json!(printed(&b)));
            proptest::prop_assert_eq!(&t.values["last_updated_at"], &json!(printed(&c)));
            let mut cut = Vec::new();
            if b.len() > 40 && printed(&b).len() == TRUNCATED_LEN {
                cut.push("secret".to_string());
            }
            if c.len() > 40 {
                cut.push("last_updated_at".to_string());
            }
            proptest::prop_assert!(cut.iter().all(|x| t.truncated.contains(x)), "{:?} {:?}", cut, t.truncated);
        }
    }

    #[test]
    fn native() {
        let c = parse_native(
            "conflict detected on relation \"public.t\": conflict=update_origin_differs",
            Some("Updating the row that was modified locally in transaction 790 at 2026-12-02 03:50:01+00: local row (1, a), remote row (1, b), replica identity (id)=(1)."),
            Some("processing remote data for replication origin \"pg_16395\" during message type \"UPDATE\" for replication target relation \"public.t\" in transaction 760, finished at 0/1A2B3C"),
        )
        .unwrap();
        assert_eq!(c.schema, "public");
        assert_eq!(c.conflict_type, "update_origin_differs");
        assert_eq!(c.origin.as_deref(), Some("pg_16395"));
        assert_eq!(c.lsn.as_deref(), Some("0/1A2B3C"));
        assert_eq!(c.key, Some(json!({"id": 1})));
    }
}
