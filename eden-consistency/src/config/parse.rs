//! Reading the YAML file: its shape as serde reads it, and its conversion (with every table
//! rule validated) to a [`Config`].

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use super::*;
use crate::pg::conninfo::SslMode;

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            file: path.display().to_string(),
            message: format!("cannot read the config file: {}", io_reason(&e)),
        })?;
        let mut cfg = Config::from_yaml_str(&text, &path.display().to_string())?;
        cfg.file = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Parses and validates config text; `file` names it in error messages.
    pub fn from_yaml_str(text: &str, file: &str) -> Result<Config> {
        let cerr = |message: String| Error::Config {
            file: file.to_string(),
            message,
        };
        let has_content = text.lines().any(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#') && t != "---"
        });
        if !has_content {
            return Err(cerr(
                "the config file is empty; it needs at least a regions: list (see postgresql-multi-region.yaml)".into(),
            ));
        }
        let mut value = match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text) {
            Ok(v) => v,
            Err(e) => return Err(cerr(yaml_message(&e, true))),
        };
        // Merge keys (`<<: *defaults`) need the generic value; without them, reading the
        // text directly keeps line and column in type errors.
        let raw: Root = if text.contains("<<") {
            value
                .apply_merge()
                .map_err(|e| cerr(yaml_message(&e, true)))?;
            serde_yaml_ng::from_value(value).map_err(|e| cerr(yaml_message(&e, false)))?
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| cerr(yaml_message(&e, false)))?
        };
        build(raw).map_err(cerr)
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::InvalidData => "it is not UTF-8 text".into(),
        _ => e.to_string(),
    }
}

/// `line L, column C: what` from a serde_yaml_ng error; `syntax` when the text is not
/// YAML at all (as opposed to YAML of the wrong shape).
fn yaml_message(e: &serde_yaml_ng::Error, syntax: bool) -> String {
    let full = e.to_string();
    let msg = match full.find(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    let what = if syntax {
        format!("the file is not valid YAML: {msg}")
    } else {
        msg
    };
    match e.location() {
        Some(loc) => format!("line {}, column {}: {what}", loc.line(), loc.column()),
        None => what,
    }
}

#[derive(Deserialize)]
pub(super) struct Root {
    global: Option<RawGlobal>,
    regions: Option<Vec<RawRegion>>,
    replication: Option<RawReplication>,
}

#[derive(Deserialize)]
struct RawGlobal {
    replication_user: Option<String>,
    max_replication_lag_seconds: Option<u64>,
    conflict_resolution: Option<String>,
}

#[derive(Deserialize)]
struct RawRegion {
    name: Option<String>,
    role: Option<String>,
    instance: Option<RawInstance>,
    conninfo: Option<String>,
}

#[derive(Deserialize)]
struct RawInstance {
    host: Option<String>,
    #[serde(default, deserialize_with = "port")]
    port: Option<u16>,
    user: Option<String>,
    password: Option<String>,
    dbname: Option<String>,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    connect_timeout: Option<u64>,
    application_name: Option<String>,
}

#[derive(Deserialize)]
struct RawReplication {
    provider: Option<String>,
    node_groups: Option<Vec<RawNodeGroup>>,
}

#[derive(Deserialize)]
struct RawNodeGroup {
    name: Option<String>,
    database: Option<String>,
    conflict_resolution_tables: Option<Vec<RawTable>>,
    conflicts_schema: Option<String>,
}

#[derive(Deserialize)]
struct RawTable {
    table: Option<String>,
    resolution: Option<String>,
    tracking_column: Option<String>,
    column: Option<String>,
    regions: Option<Vec<String>>,
    expression: Option<String>,
    key_columns: Option<Vec<String>>,
    exclude_columns: Option<Vec<String>>,
    redact_columns: Option<Vec<String>>,
    columns: Option<BTreeMap<String, String>>,
    custom_rust: Option<String>,
    name: Option<String>,
    tombstone: Option<RawTombstone>,
    missing_rows: Option<String>,
    unique_collisions: Option<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
struct RawTombstone {
    column: Option<String>,
    table: Option<String>,
    deleted_at_column: Option<String>,
}

/// A port as a number or a numeric string.
fn port<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<u16>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = Option<u16>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a port number (1-65535)")
        }
        fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
            match u16::try_from(v) {
                Ok(p) if p > 0 => Ok(Some(p)),
                _ => Err(E::custom(format!(
                    "port {v} is out of range: expected a port number (1-65535)"
                ))),
            }
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
            match u64::try_from(v) {
                Ok(u) => self.visit_u64(u),
                Err(_) => Err(E::custom(format!(
                    "port {v} is out of range: expected a port number (1-65535)"
                ))),
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            match v.trim().parse::<u64>() {
                Ok(u) => self.visit_u64(u),
                Err(_) => Err(E::custom(format!(
                    "invalid port \"{v}\": expected a port number (1-65535)"
                ))),
            }
        }
    }
    d.deserialize_any(V)
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

pub(super) fn build(root: Root) -> std::result::Result<Config, String> {
    let mut cfg = Config::default();
    if let Some(g) = root.global {
        cfg.global.replication_user = nonempty(g.replication_user);
        cfg.global.max_replication_lag_seconds = g.max_replication_lag_seconds;
        if let Some(name) = nonempty(g.conflict_resolution) {
            cfg.global.conflict_resolution = Some(global_resolution(&name)?);
        }
    }

    for (i, r) in root.regions.unwrap_or_default().into_iter().enumerate() {
        let region = build_region(i, r)?;
        if cfg.regions.iter().any(|o| o.name == region.name) {
            return Err(format!(
                "region \"{}\" is defined twice under regions:; give each region a unique name",
                region.name
            ));
        }
        cfg.regions.push(region);
    }
    let region_names: Vec<String> = cfg.regions.iter().map(|r| r.name.clone()).collect();
    let names: Vec<&str> = region_names.iter().map(String::as_str).collect();

    if let Some(rep) = root.replication {
        cfg.provider = nonempty(rep.provider);
        for (i, g) in rep.node_groups.unwrap_or_default().into_iter().enumerate() {
            let group = build_group(i, g, &cfg.default_resolution(), &names)?;
            if let Some(other) = cfg
                .node_groups
                .iter()
                .find(|o| o.database == group.database)
            {
                return Err(format!(
                    "node groups \"{}\" and \"{}\" both use database \"{}\"; merge their conflict_resolution_tables into one node group",
                    other.name, group.name, group.database
                ));
            }
            cfg.node_groups.push(group);
        }
    }
    Ok(cfg)
}

fn global_resolution(name: &str) -> std::result::Result<Resolution, String> {
    match name {
        "last_write_wins" => Ok(Resolution::LastWriteWins {
            tracking_column: None,
        }),
        "first_write_wins" => Ok(Resolution::FirstWriteWins {
            tracking_column: None,
        }),
        "manual" => Ok(Resolution::Manual),
        n if RESOLUTION_NAMES.contains(&n) => Err(format!(
            "global.conflict_resolution: {n} needs a per-table setting, so it cannot be the default for all tables; \
             use last_write_wins, first_write_wins or manual there and set {n} on the tables that need it under conflict_resolution_tables"
        )),
        n => Err(format!(
            "global.conflict_resolution: unknown resolution \"{n}\"; use last_write_wins, first_write_wins or manual"
        )),
    }
}

fn build_region(i: usize, r: RawRegion) -> std::result::Result<RegionConfig, String> {
    let name = nonempty(r.name).ok_or_else(|| {
        format!(
            "regions entry {} has no name; add \"name: <region>\" to it",
            i + 1
        )
    })?;
    let mut conn = ConnParams::default();
    if let Some(inst) = r.instance {
        conn.host = nonempty(inst.host);
        conn.port = inst.port;
        conn.user = nonempty(inst.user);
        conn.password = inst.password.filter(|p| !p.is_empty());
        conn.dbname = nonempty(inst.dbname);
        if let Some(m) = nonempty(inst.sslmode) {
            conn.sslmode = Some(SslMode::parse(&m).ok_or_else(|| {
                format!(
                    "region \"{name}\": invalid instance.sslmode \"{m}\"; use disable, allow, prefer, require, verify-ca or verify-full"
                )
            })?);
        }
        conn.sslrootcert = nonempty(inst.sslrootcert);
        conn.connect_timeout = inst.connect_timeout;
        conn.application_name = nonempty(inst.application_name);
    }
    if let Some(ci) = nonempty(r.conninfo) {
        let over =
            ConnParams::parse(&ci).map_err(|e| format!("region \"{name}\": conninfo: {e}"))?;
        conn.override_with(&over);
    }
    if !conn.has_host() {
        return Err(format!(
            "region \"{name}\" has no host; add \"instance: {{host: <host>, port: 5432}}\" (or a conninfo:) to it"
        ));
    }
    Ok(RegionConfig {
        name,
        role: nonempty(r.role),
        conn,
    })
}

fn build_group(
    i: usize,
    g: RawNodeGroup,
    default: &Resolution,
    regions: &[&str],
) -> std::result::Result<NodeGroup, String> {
    let name = nonempty(g.name);
    let label = name.clone().unwrap_or_else(|| format!("#{}", i + 1));
    let database = nonempty(g.database).ok_or_else(|| {
        format!("node group \"{label}\" has no database; add \"database: <name>\" to it")
    })?;
    let mut group = NodeGroup {
        name: name.unwrap_or_else(|| database.clone()),
        database,
        tables: Vec::new(),
        conflicts_schema: nonempty(g.conflicts_schema),
    };
    let mut seen = HashSet::new();
    for (j, t) in g
        .conflict_resolution_tables
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let rule = build_table(j, t, &group.name, default, regions)?;
        let parsed = TableName::parse_user(&rule.table).map_err(|e| {
            format!(
                "table entry \"{}\" in node group \"{}\": {e}",
                rule.table, group.name
            )
        })?;
        if !seen.insert(parsed) {
            return Err(format!(
                "table {} is listed twice in node group \"{}\"; keep one entry",
                rule.table, group.name
            ));
        }
        group.tables.push(rule);
    }
    Ok(group)
}

fn build_table(
    j: usize,
    t: RawTable,
    group: &str,
    default: &Resolution,
    regions: &[&str],
) -> std::result::Result<TableRule, String> {
    let table = nonempty(t.table).ok_or_else(|| {
        format!(
            "entry {} of conflict_resolution_tables in node group \"{group}\" has no table; add \"table: <name>\" to it",
            j + 1
        )
    })?;
    let at = format!("table {table} in node group \"{group}\"");
    let tracking = nonempty(t.tracking_column);
    let custom_rust = nonempty(t.custom_rust);
    let resolution_name = nonempty(t.resolution);
    let need = |what: &str, fix: &str| -> String {
        format!(
            "{at}: resolution {} needs {what}; add {fix} to the table's entry",
            resolution_name.as_deref().unwrap_or("")
        )
    };
    let resolution = match (resolution_name.as_deref(), custom_rust) {
        (None | Some("custom_rust"), Some(name)) => Resolution::CustomRust { name },
        (Some(other), Some(_)) => {
            return Err(format!(
                "{at}: has both resolution: {other} and custom_rust:; keep only one of them"
            ));
        }
        (None, None) => match default.clone() {
            Resolution::LastWriteWins { .. } if tracking.is_some() => Resolution::LastWriteWins {
                tracking_column: tracking.clone(),
            },
            Resolution::FirstWriteWins { .. } if tracking.is_some() => Resolution::FirstWriteWins {
                tracking_column: tracking.clone(),
            },
            d => d,
        },
        (Some(name), None) => match name {
            "last_write_wins" => Resolution::LastWriteWins {
                tracking_column: tracking.clone(),
            },
            "first_write_wins" => Resolution::FirstWriteWins {
                tracking_column: tracking.clone(),
            },
            "region_priority" => {
                let list: Vec<String> = t
                    .regions
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| r.trim().to_string())
                    .collect();
                if list.is_empty() || list.iter().any(String::is_empty) {
                    let example = if regions.is_empty() {
                        "regions: [<most trusted region>, <next>]".to_string()
                    } else {
                        format!("regions: [{}]", regions.join(", "))
                    };
                    return Err(need(
                        "the ordered list of regions, most trusted first",
                        &format!("\"{example}\""),
                    ));
                }
                Resolution::RegionPriority { regions: list }
            }
            "highest_value" => match nonempty(t.column) {
                Some(column) => Resolution::HighestValue { column },
                None => return Err(need("the column to compare", "\"column: <column name>\"")),
            },
            "custom" => match t.expression.filter(|e| !e.trim().is_empty()) {
                Some(expression) => Resolution::Custom { expression },
                None => {
                    return Err(need(
                        "an expression",
                        "\"expression: <SQL boolean over a and b, true when a beats b>\"",
                    ));
                }
            },
            "custom_rust" => match nonempty(t.name) {
                Some(name) => Resolution::CustomRust { name },
                None => {
                    return Err(need(
                        "the registered resolver's name",
                        "\"name: <resolver>\"",
                    ));
                }
            },
            "column_merge" => match t.columns.filter(|c| !c.is_empty()) {
                Some(columns) => Resolution::ColumnMerge {
                    columns,
                    tracking_column: tracking.clone(),
                },
                None => {
                    return Err(need(
                        "the columns to merge",
                        "\"columns: {<column>: <its tracking column>, ...}\"",
                    ));
                }
            },
            "manual" => Resolution::Manual,
            other => {
                return Err(format!(
                    "{at}: unknown resolution \"{other}\"; use one of {}",
                    RESOLUTION_NAMES.join(", ")
                ));
            }
        },
    };
    if !regions.is_empty() {
        check_rule_regions(&table, group, &resolution, regions)?;
    }
    validate_syntax(&resolution).map_err(|e| format!("{at}: {e}"))?;

    let tombstone = match t.tombstone {
        None => None,
        Some(ts) => Some(
            match (
                nonempty(ts.column),
                nonempty(ts.table),
                nonempty(ts.deleted_at_column),
            ) {
                (Some(column), None, _) => Tombstone::Column { column },
                (None, Some(table), Some(deleted_at_column)) => Tombstone::Table {
                    table,
                    deleted_at_column,
                },
                (None, Some(_), None) => {
                    return Err(format!(
                        "{at}: tombstone: table needs deleted_at_column; add \"deleted_at_column: <column>\" to the tombstone"
                    ));
                }
                (Some(_), Some(_), _) => {
                    return Err(format!(
                        "{at}: tombstone: gives both column and table; use either {{column: deleted_at}} or {{table: <t>, deleted_at_column: <c>}}"
                    ));
                }
                (None, None, _) => {
                    return Err(format!(
                        "{at}: tombstone: is empty; use either {{column: deleted_at}} or {{table: <t>, deleted_at_column: <c>}}"
                    ));
                }
            },
        ),
    };
    let clean_list =
        |v: Option<Vec<String>>, key: &str| -> std::result::Result<Option<Vec<String>>, String> {
            match v {
                None => Ok(None),
                Some(list) => {
                    if list.iter().any(|c| c.trim().is_empty()) {
                        return Err(format!("{at}: {key} has an empty column name"));
                    }
                    Ok(Some(
                        list.into_iter().map(|c| c.trim().to_string()).collect(),
                    ))
                }
            }
        };
    let key_columns = clean_list(t.key_columns, "key_columns")?;
    if key_columns.as_ref().is_some_and(Vec::is_empty) {
        return Err(format!(
            "{at}: key_columns is empty; list the columns that identify a row, or remove it"
        ));
    }
    let exclude_columns = clean_list(t.exclude_columns, "exclude_columns")?.unwrap_or_default();
    let redact_columns = clean_list(t.redact_columns, "redact_columns")?.unwrap_or_default();
    let missing_rows = match t.missing_rows.as_deref().map(str::trim) {
        None | Some("copy") => MissingRows::Copy,
        Some("delete") => MissingRows::Delete,
        Some("manual") => MissingRows::Manual,
        Some(other) => {
            return Err(format!(
                "{at}: missing_rows: {other} is not understood; use copy, delete or manual"
            ));
        }
    };
    let unique_collisions = match t.unique_collisions.as_deref().map(str::trim) {
        None | Some("manual") => UniqueCollisions::Manual,
        Some("resolve") => UniqueCollisions::Resolve,
        Some(other) => {
            return Err(format!(
                "{at}: unique_collisions: {other} is not understood; use resolve or manual"
            ));
        }
    };
    Ok(TableRule {
        table,
        resolution,
        key_columns,
        exclude_columns,
        tombstone,
        redact_columns,
        missing_rows,
        unique_collisions,
        unknown_keys: t.unknown.into_keys().collect(),
    })
}

/// The resolver's own syntax check of a rule (custom expressions).
fn validate_syntax(resolution: &Resolution) -> std::result::Result<(), String> {
    crate::resolve::validate_rule_syntax(resolution)
}

/// Every region a rule names is defined.
pub(super) fn check_rule_regions(
    table: &str,
    group: &str,
    resolution: &Resolution,
    regions: &[&str],
) -> std::result::Result<(), String> {
    if let Resolution::RegionPriority { regions: list } = resolution {
        let mut seen = HashSet::new();
        for r in list {
            if !regions.contains(&r.as_str()) {
                return Err(format!(
                    "table {table} in node group \"{group}\": region_priority names region \"{r}\", which is not defined under regions: (defined: {}); fix the name or define the region",
                    regions.join(", ")
                ));
            }
            if !seen.insert(r) {
                return Err(format!(
                    "table {table} in node group \"{group}\": region_priority lists region \"{r}\" twice; name each region once"
                ));
            }
        }
    }
    Ok(())
}
