//! The operators' `postgresql-multi-region.yaml`, read as-is (see `docs/config.md`), plus the regions
//! given with `--region NAME=CONNINFO`.
//!
//! Every table rule is validated when the file is loaded: an unknown resolution, a rule that
//! lacks the setting it needs, or a region that is not defined is refused with a message
//! naming the file, the table and the fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::pg::conninfo::ConnParams;
use crate::pg::ident::TableName;
pub(crate) use crate::resolve::{Resolution, Tombstone};

/// The whole configuration: file (if any) plus command-line regions.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The file it was read from, `None` when running from `--region` flags alone.
    pub file: Option<PathBuf>,
    /// `global:` settings.
    pub global: Global,
    /// Regions in config order, then regions added by `--region` in flag order. This order
    /// is the final tie-break between versions of a row.
    pub regions: Vec<RegionConfig>,
    /// `replication.provider` (`pglogical`, `spock`, `native`, ...), when given.
    pub provider: Option<String>,
    /// `replication.node_groups`.
    pub node_groups: Vec<NodeGroup>,
}

/// The `global:` section.
#[derive(Debug, Clone, Default)]
pub struct Global {
    /// `replication_user`.
    pub replication_user: Option<String>,
    /// `max_replication_lag_seconds`: rows changed more recently may still be in flight.
    pub max_replication_lag_seconds: Option<u64>,
    /// `conflict_resolution`: the rule for tables not listed in a node group.
    pub conflict_resolution: Option<Resolution>,
}

/// One region: its name, role and how to connect.
#[derive(Debug, Clone)]
pub struct RegionConfig {
    /// `name`, e.g. `us-east-1`.
    pub name: String,
    /// `role` (`active`, `standby`, ...), informational.
    pub role: Option<String>,
    /// Connection parameters (from `instance:`, overridden by `--region`, completed from
    /// the `PG*` environment and `~/.pgpass` at connect time).
    pub conn: ConnParams,
}

/// A `replication.node_groups` entry: one database and its table rules.
#[derive(Debug, Clone, Default)]
pub struct NodeGroup {
    /// `name`.
    pub name: String,
    /// `database`.
    pub database: String,
    /// `conflict_resolution_tables`.
    pub tables: Vec<TableRule>,
    /// `conflicts_schema`: where `replication_conflicts` lives (default `public`).
    pub conflicts_schema: Option<String>,
}

/// A `conflict_resolution_tables` entry.
#[derive(Debug, Clone)]
pub struct TableRule {
    /// `table`, as written (`vault_secrets` or `schema.table`).
    pub table: String,
    /// The resolution rule.
    pub resolution: Resolution,
    /// `key_columns`: the key to use for tables with no usable primary or unique key.
    pub key_columns: Option<Vec<String>>,
    /// `exclude_columns`: columns never compared nor written.
    pub exclude_columns: Vec<String>,
    /// Where deletes are remembered, if anywhere.
    pub tombstone: Option<Tombstone>,
    /// `redact_columns`: columns whose values are masked in every output and log (the
    /// archive keeps them).
    pub redact_columns: Vec<String>,
    /// What to do with a row that exists in some regions only and no tombstone explains
    /// (`missing_rows:`; default `copy`).
    pub missing_rows: MissingRows,
    /// What to do when the same logical row exists under two keys (`unique_collisions:`;
    /// default `manual`).
    pub unique_collisions: UniqueCollisions,
    /// Keys of the entry that the tool does not know (likely typos), for `validate-config`.
    pub unknown_keys: Vec<String>,
}

/// `missing_rows:` of a table rule: a row present in some regions and absent (with no
/// tombstone) in others is either a lost insert or a delete that did not replicate; the
/// tool cannot tell which, so the table says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingRows {
    /// Copy the row to the regions that lack it (the default: nothing is lost, but a delete
    /// may be undone; the plan marks such inserts as possible undeletes).
    #[default]
    Copy,
    /// The absence wins: delete the row where it exists (archived first).
    Delete,
    /// Change nothing; record the key for a human.
    Manual,
}

/// `unique_collisions:` of a table rule: a row that cannot be copied to a region because
/// another row there (another key) holds the same values of a unique constraint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UniqueCollisions {
    /// Report the collision and leave both rows (the default): a human decides.
    #[default]
    Manual,
    /// The two rows are two versions of one logical row: the table's rule picks the
    /// winner, the losing row is archived and removed everywhere, the winner copied where
    /// it is missing.
    Resolve,
}

impl MissingRows {
    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            MissingRows::Copy => "copy",
            MissingRows::Delete => "delete",
            MissingRows::Manual => "manual",
        }
    }
}

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
        let raw: raw::Root = if text.contains("<<") {
            value
                .apply_merge()
                .map_err(|e| cerr(yaml_message(&e, true)))?;
            serde_yaml_ng::from_value(value).map_err(|e| cerr(yaml_message(&e, false)))?
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| cerr(yaml_message(&e, false)))?
        };
        raw::build(raw).map_err(cerr)
    }

    /// Adds or overrides a region from a `--region NAME=CONNINFO` flag. CONNINFO is a
    /// `postgres://` URL or a libpq `key=value` string; for a region already defined, the
    /// fields it gives replace the configured ones, otherwise the region is appended after
    /// the others. Errors never echo the connection string.
    pub fn apply_region_flag(&mut self, spec: &str) -> Result<()> {
        const EXAMPLE: &str = "e.g. --region us-east-1=postgres://db.example:5432/eden_vault";
        let Some(eq) = spec.find('=') else {
            return Err(Error::Usage(format!(
                "--region expects NAME=CONNINFO ({EXAMPLE})"
            )));
        };
        let (name, conninfo) = (spec[..eq].trim(), spec[eq + 1..].trim());
        if name.is_empty() {
            return Err(Error::Usage(format!(
                "--region expects NAME=CONNINFO but the region name is empty ({EXAMPLE})"
            )));
        }
        if !valid_region_name(name) {
            // Likely a connection string with no name in front: never echo it.
            return Err(Error::Usage(format!(
                "--region expects NAME=CONNINFO where NAME is a region name (letters, digits, '-', '_', '.'); {EXAMPLE}"
            )));
        }
        if conninfo.is_empty() {
            return Err(Error::Usage(format!(
                "--region {name}= gives no connection string ({EXAMPLE})"
            )));
        }
        let conn = ConnParams::parse(conninfo)
            .map_err(|e| Error::Usage(format!("--region {name}: {e}")))?;
        match self.regions.iter_mut().find(|r| r.name == name) {
            Some(region) => region.conn.override_with(&conn),
            None => self.regions.push(RegionConfig {
                name: name.to_string(),
                role: None,
                conn,
            }),
        }
        Ok(())
    }

    /// Applies every `--region` flag in order (see [`Config::apply_region_flag`]). A region
    /// named by two flags is a usage error: one of them would silently be lost.
    pub fn apply_region_flags<S: AsRef<str>>(&mut self, specs: &[S]) -> Result<()> {
        let mut seen: Vec<&str> = Vec::new();
        for spec in specs {
            let spec = spec.as_ref();
            if let Some(eq) = spec.find('=') {
                let name = spec[..eq].trim();
                if !name.is_empty() && valid_region_name(name) {
                    if seen.contains(&name) {
                        return Err(Error::Usage(format!(
                            "region {name} is given twice with --region; give each region once"
                        )));
                    }
                    seen.push(name);
                }
            }
            self.apply_region_flag(spec)?;
        }
        Ok(())
    }

    /// Refuses a comparison with fewer than two regions: one region agrees with itself, and
    /// reporting it consistent would be a wrong answer.
    pub fn require_two_regions(&self) -> Result<()> {
        if self.regions.len() >= 2 {
            return Ok(());
        }
        let defined = if self.regions.is_empty() {
            "none".to_string()
        } else {
            self.regions
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        Err(Error::Usage(format!(
            "need at least two regions; defined: {defined} (add regions to the config or give --region NAME=CONNINFO)"
        )))
    }

    /// Checks what can only be checked once every region is known (after the `--region`
    /// flags): every region named in a rule is defined, and there is at least one region.
    pub fn validate(&self) -> Result<()> {
        if self.regions.is_empty() {
            return Err(Error::Usage(
                "no regions to connect to: give --config FILE (or set EDEN_RECONCILE_CONFIG) or --region NAME=CONNINFO".into(),
            ));
        }
        let names: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
        for group in &self.node_groups {
            for rule in &group.tables {
                if let Err(message) =
                    raw::check_rule_regions(&rule.table, &group.name, &rule.resolution, &names)
                {
                    return Err(match &self.file {
                        Some(f) => Error::Config {
                            file: f.display().to_string(),
                            message,
                        },
                        None => Error::Usage(message),
                    });
                }
            }
        }
        Ok(())
    }

    /// Refuses to run on a database whose table rules would silently be lost: with a config
    /// file that defines node groups, `db` (the `--db` given, or else the database every
    /// region connected to) must be the `database` of one of them. The error names the groups.
    pub fn require_node_group(&self, db: Option<&str>) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.node_groups.is_empty() || db.is_some_and(|d| self.node_group(d).is_some()) {
            return Ok(());
        }
        let groups = self
            .node_groups
            .iter()
            .map(|g| format!("{} (database {})", g.name, g.database))
            .collect::<Vec<_>>()
            .join(", ");
        let what = match db {
            Some(d) => format!("--db {d} matches no node group"),
            None => "no --db given and the regions' databases match no node group".to_string(),
        };
        Err(Error::Usage(format!(
            "{what} of {}: the node groups are {groups}; give --db with one of those databases, or --no-rules to run without any table rule",
            file.display()
        )))
    }

    /// Forgets every table rule (`--no-rules`): each table then follows
    /// `global.conflict_resolution`.
    pub fn drop_table_rules(&mut self) {
        for g in &mut self.node_groups {
            g.tables.clear();
        }
    }

    /// The node group whose `database` is `db`, if any.
    pub fn node_group(&self, db: &str) -> Option<&NodeGroup> {
        self.node_groups.iter().find(|g| g.database == db)
    }

    /// The settings that apply to `table` in database `db`: its configured rule, else the
    /// global default rule with no key columns, exclusions or tombstone. This is the one
    /// lookup that check and fix share.
    pub fn rule_or_default(&self, db: &str, table: &TableName) -> TableRule {
        self.table_rule(db, table)
            .cloned()
            .unwrap_or_else(|| TableRule {
                table: table.to_string(),
                resolution: self.default_resolution(),
                key_columns: None,
                exclude_columns: Vec::new(),
                tombstone: None,
                redact_columns: Vec::new(),
                missing_rows: MissingRows::default(),
                unique_collisions: UniqueCollisions::default(),
                unknown_keys: Vec::new(),
            })
    }

    /// The rule configured for `table` in database `db`, if any. A rule written without a
    /// schema matches the table in any schema; with one, only there.
    pub fn table_rule(&self, db: &str, table: &TableName) -> Option<&TableRule> {
        let group = self.node_group(db)?;
        let mut unqualified = None;
        for rule in &group.tables {
            if let Ok((schema, name)) = TableName::parse_user(&rule.table) {
                if name != table.name {
                    continue;
                }
                match schema {
                    Some(s) if s == table.schema => return Some(rule),
                    None => unqualified = unqualified.or(Some(rule)),
                    _ => {}
                }
            }
        }
        unqualified
    }

    /// The rule for tables that have none of their own.
    pub fn default_resolution(&self) -> Resolution {
        self.global.conflict_resolution.clone().unwrap_or_default()
    }

    /// The in-flight window: `max_replication_lag_seconds` with a config file, else zero.
    pub fn lag_window(&self) -> Duration {
        match (&self.file, self.global.max_replication_lag_seconds) {
            (Some(_), Some(s)) => Duration::from_secs(s),
            _ => Duration::ZERO,
        }
    }

    /// The index of a region in the tie-break order, if defined.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }
}

/// The rule names understood in `resolution:`.
pub(crate) const RESOLUTION_NAMES: &[&str] = &[
    "last_write_wins",
    "first_write_wins",
    "region_priority",
    "highest_value",
    "custom",
    "custom_rust",
    "column_merge",
    "manual",
];

fn valid_region_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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

/// The file's shape, as serde reads it, and its conversion to [`Config`].
mod raw {
    use std::collections::{BTreeMap, HashSet};

    use serde::Deserialize;

    use super::*;
    use crate::pg::conninfo::SslMode;

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
            fn visit_str<E: serde::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<Self::Value, E> {
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
                Resolution::LastWriteWins { .. } if tracking.is_some() => {
                    Resolution::LastWriteWins {
                        tracking_column: tracking.clone(),
                    }
                }
                Resolution::FirstWriteWins { .. } if tracking.is_some() => {
                    Resolution::FirstWriteWins {
                        tracking_column: tracking.clone(),
                    }
                }
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
        let clean_list = |v: Option<Vec<String>>,
                          key: &str|
         -> std::result::Result<Option<Vec<String>>, String> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUIDE: &str = include_str!("../../../fixtures/postgresql-multi-region.yaml");

    fn err(text: &str) -> String {
        Config::from_yaml_str(text, "cfg.yaml")
            .unwrap_err()
            .to_string()
    }

    const REGIONS: &str = "regions:\n  - name: us-east-1\n    instance: {host: a, port: 5432}\n  - name: us-west-2\n    instance: {host: b}\n";

    fn with_tables(tables: &str) -> String {
        format!(
            "{REGIONS}replication:\n  node_groups:\n    - name: g\n      database: d\n      conflict_resolution_tables:\n{tables}"
        )
    }

    #[test]
    fn guide_example_loads() {
        let cfg = Config::from_yaml_str(GUIDE, "postgresql-multi-region.yaml").unwrap();
        assert_eq!(
            cfg.global.replication_user.as_deref(),
            Some("replication_user")
        );
        assert_eq!(cfg.global.max_replication_lag_seconds, Some(300));
        assert_eq!(
            cfg.default_resolution(),
            Resolution::LastWriteWins {
                tracking_column: None
            }
        );
        let names: Vec<_> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["us-east-1", "us-west-2"]);
        assert_eq!(
            cfg.regions[0].conn.host.as_deref(),
            Some("postgres.us-east-1.eden.internal")
        );
        assert_eq!(cfg.regions[0].conn.port, Some(5432));
        assert_eq!(cfg.regions[0].role.as_deref(), Some("active"));
        assert_eq!(cfg.provider.as_deref(), Some("pglogical"));
        let g = cfg.node_group("eden_vault").unwrap();
        assert_eq!(g.name, "eden_vault_group");
        let rule = cfg
            .table_rule("eden_vault", &TableName::new("public", "vault_secrets"))
            .unwrap();
        assert_eq!(
            rule.resolution,
            Resolution::LastWriteWins {
                tracking_column: Some("last_updated_at".into())
            }
        );
        // No file yet: no in-flight window.
        assert_eq!(cfg.lag_window(), Duration::ZERO);
    }

    #[test]
    fn every_rule_kind() {
        let cfg = Config::from_yaml_str(
            &with_tables(
                r#"        - {table: a, resolution: first_write_wins}
        - {table: b, resolution: region_priority, regions: [us-west-2, us-east-1]}
        - {table: c, resolution: highest_value, column: limit_bytes}
        - {table: d, resolution: custom, expression: "a.version > b.version"}
        - {table: e, custom_rust: my_resolver}
        - {table: f, resolution: custom_rust, name: other}
        - table: g
          resolution: column_merge
          columns: {email: email_updated_at, name: name_updated_at}
          tracking_column: updated_at
        - {table: h, resolution: manual, key_columns: [x, y], exclude_columns: [z]}
        - {table: i, tombstone: {column: deleted_at}}
        - {table: s.j, tracking_column: ts, tombstone: {table: graves, deleted_at_column: gone_at}}
        - {table: k, resolution: last_write_wins, unknown_key: whatever}
"#,
            ),
            "x.yaml",
        )
        .unwrap();
        let r: Vec<&Resolution> = cfg.node_groups[0]
            .tables
            .iter()
            .map(|t| &t.resolution)
            .collect();
        assert_eq!(
            r[0],
            &Resolution::FirstWriteWins {
                tracking_column: None
            }
        );
        assert_eq!(
            r[1],
            &Resolution::RegionPriority {
                regions: vec!["us-west-2".into(), "us-east-1".into()]
            }
        );
        assert_eq!(
            r[2],
            &Resolution::HighestValue {
                column: "limit_bytes".into()
            }
        );
        assert_eq!(
            r[3],
            &Resolution::Custom {
                expression: "a.version > b.version".into()
            }
        );
        assert_eq!(
            r[4],
            &Resolution::CustomRust {
                name: "my_resolver".into()
            }
        );
        assert_eq!(
            r[5],
            &Resolution::CustomRust {
                name: "other".into()
            }
        );
        match r[6] {
            Resolution::ColumnMerge {
                columns,
                tracking_column,
            } => {
                assert_eq!(
                    columns.get("email").map(String::as_str),
                    Some("email_updated_at")
                );
                assert_eq!(tracking_column.as_deref(), Some("updated_at"));
            }
            other => panic!("{other:?}"),
        }
        let t = &cfg.node_groups[0].tables;
        assert_eq!(t[7].resolution, Resolution::Manual);
        assert_eq!(
            t[7].key_columns.as_deref(),
            Some(&["x".to_string(), "y".to_string()][..])
        );
        assert_eq!(t[7].exclude_columns, ["z"]);
        // No resolution: the global default (last_write_wins on commit timestamps).
        assert_eq!(
            t[8].resolution,
            Resolution::LastWriteWins {
                tracking_column: None
            }
        );
        assert_eq!(
            t[8].tombstone,
            Some(Tombstone::Column {
                column: "deleted_at".into()
            })
        );
        assert_eq!(
            t[9].resolution,
            Resolution::LastWriteWins {
                tracking_column: Some("ts".into())
            }
        );
        assert_eq!(
            t[9].tombstone,
            Some(Tombstone::Table {
                table: "graves".into(),
                deleted_at_column: "gone_at".into()
            })
        );
        assert!(cfg.table_rule("d", &TableName::new("s", "j")).is_some());
        assert!(
            cfg.table_rule("d", &TableName::new("public", "j"))
                .is_none()
        );
    }

    #[test]
    fn global_rules() {
        let cfg = Config::from_yaml_str(
            &format!("global: {{conflict_resolution: manual}}\n{REGIONS}"),
            "c",
        )
        .unwrap();
        assert_eq!(cfg.default_resolution(), Resolution::Manual);
        let cfg = Config::from_yaml_str(
            &format!("global: {{conflict_resolution: first_write_wins}}\n{REGIONS}replication:\n  node_groups:\n    - {{database: d, conflict_resolution_tables: [{{table: t, tracking_column: c}}]}}\n"),
            "c",
        )
        .unwrap();
        assert_eq!(cfg.node_groups[0].name, "d");
        assert_eq!(
            cfg.node_groups[0].tables[0].resolution,
            Resolution::FirstWriteWins {
                tracking_column: Some("c".into())
            }
        );
        assert_eq!(
            err(&format!(
                "global: {{conflict_resolution: highest_value}}\n{REGIONS}"
            )),
            "cfg.yaml: global.conflict_resolution: highest_value needs a per-table setting, so it cannot be the default for all tables; use last_write_wins, first_write_wins or manual there and set highest_value on the tables that need it under conflict_resolution_tables"
        );
        assert_eq!(
            err(&format!(
                "global: {{conflict_resolution: newest}}\n{REGIONS}"
            )),
            "cfg.yaml: global.conflict_resolution: unknown resolution \"newest\"; use last_write_wins, first_write_wins or manual"
        );
    }

    #[test]
    fn bad_rules() {
        assert_eq!(
            err(&with_tables(
                "        - {table: vault_secrets, resolution: newest_wins}\n"
            )),
            "cfg.yaml: table vault_secrets in node group \"g\": unknown resolution \"newest_wins\"; use one of last_write_wins, first_write_wins, region_priority, highest_value, custom, custom_rust, column_merge, manual"
        );
        assert_eq!(
            err(&with_tables(
                "        - {table: quotas, resolution: highest_value}\n"
            )),
            "cfg.yaml: table quotas in node group \"g\": resolution highest_value needs the column to compare; add \"column: <column name>\" to the table's entry"
        );
        assert_eq!(
            err(&with_tables(
                "        - {table: tenants, resolution: region_priority}\n"
            )),
            "cfg.yaml: table tenants in node group \"g\": resolution region_priority needs the ordered list of regions, most trusted first; add \"regions: [us-east-1, us-west-2]\" to the table's entry"
        );
        assert!(
            err(&with_tables("        - {table: f, resolution: custom}\n"))
                .contains("needs an expression; add \"expression: ")
        );
        assert!(
            err(&with_tables(
                "        - {table: f, resolution: column_merge}\n"
            ))
            .contains("needs the columns to merge")
        );
        assert!(
            err(&with_tables(
                "        - {table: f, resolution: custom_rust}\n"
            ))
            .contains("needs the registered resolver's name")
        );
        assert_eq!(
            err(&with_tables(
                "        - {table: tenants, resolution: region_priority, regions: [us-west-2, eu-west-9]}\n"
            )),
            "cfg.yaml: table tenants in node group \"g\": region_priority names region \"eu-west-9\", which is not defined under regions: (defined: us-east-1, us-west-2); fix the name or define the region"
        );
        assert!(err(&with_tables("        - {table: t, resolution: region_priority, regions: [us-west-2, us-west-2]}\n")).contains("twice"));
        assert!(
            err(&with_tables(
                "        - {table: t, resolution: manual, custom_rust: x}\n"
            ))
            .contains("keep only one")
        );
        assert!(err(&with_tables("        - {resolution: manual}\n")).contains("has no table"));
        assert!(
            err(&with_tables("        - {table: t}\n        - {table: T}\n"))
                .contains("listed twice")
        );
        assert!(err(&with_tables("        - {table: a.b.c}\n")).contains("is not a table name"));
        assert!(
            err(&with_tables(
                "        - {table: t, tombstone: {table: x}}\n"
            ))
            .contains("needs deleted_at_column")
        );
        assert!(
            err(&with_tables("        - {table: t, tombstone: {}}\n"))
                .contains("tombstone: is empty")
        );
        assert!(
            err(&with_tables("        - {table: t, key_columns: []}\n"))
                .contains("key_columns is empty")
        );
        let e = err(&with_tables(
            "        - {table: flags, resolution: custom, expression: \"a.v > pg_sleep(1)\"}\n",
        ));
        assert!(
            e.starts_with("cfg.yaml: table flags in node group \"g\": ") && e.contains("pg_sleep"),
            "{e}"
        );
        // Missing tracking_column is fine for lww/fww.
        Config::from_yaml_str(
            &with_tables("        - {table: t, resolution: last_write_wins}\n"),
            "c",
        )
        .unwrap();
    }

    #[test]
    fn bad_regions() {
        assert_eq!(
            err(
                "regions:\n  - name: a\n    instance: {host: h}\n  - name: a\n    instance: {host: i}\n"
            ),
            "cfg.yaml: region \"a\" is defined twice under regions:; give each region a unique name"
        );
        assert_eq!(
            err("regions:\n  - name: a\n    role: active\n"),
            "cfg.yaml: region \"a\" has no host; add \"instance: {host: <host>, port: 5432}\" (or a conninfo:) to it"
        );
        assert!(err("regions:\n  - instance: {host: h}\n").contains("regions entry 1 has no name"));
        assert!(
            err("regions:\n  - {name: a, instance: {host: h, sslmode: on}}\n")
                .contains("invalid instance.sslmode \"on\"")
        );
        let e = err("regions:\n  - {name: a, conninfo: 'host=h port=x password=hunter2'}\n");
        assert!(
            e.contains("region \"a\": conninfo: invalid port number") && !e.contains("hunter2"),
            "{e}"
        );
        // conninfo and the extra instance keys.
        let cfg = Config::from_yaml_str(
            "regions:\n  - name: a\n    instance: {host: h, port: '6543', user: u, password: p, dbname: d, sslmode: verify-full, sslrootcert: /r.pem, connect_timeout: 4}\n  - {name: b, conninfo: 'postgres://x@y:1/z'}\n",
            "c",
        )
        .unwrap();
        let a = &cfg.regions[0].conn;
        assert_eq!(
            (
                a.port,
                a.user.as_deref(),
                a.password.as_deref(),
                a.dbname.as_deref()
            ),
            (Some(6543), Some("u"), Some("p"), Some("d"))
        );
        assert_eq!(a.sslmode, Some(crate::pg::conninfo::SslMode::VerifyFull));
        assert_eq!(a.connect_timeout, Some(4));
        assert_eq!(cfg.regions[1].conn.host.as_deref(), Some("y"));
    }

    #[test]
    fn yaml_and_type_errors() {
        let e = err("regions:\n  - name: a\n    instance:\n      host: h\n      port: abc\n");
        assert_eq!(
            e,
            "cfg.yaml: line 5, column 13: regions[0].instance.port: invalid port \"abc\": expected a port number (1-65535)"
        );
        let e = err("regions:\n  - name: a\n    instance: {host: h, port: 70000}\n");
        assert!(e.contains("line 3") && e.contains("out of range"), "{e}");
        let e = err("global:\n  max_replication_lag_seconds: soon\n");
        assert!(e.starts_with("cfg.yaml: line 2, column 32: global.max_replication_lag_seconds: invalid type: string \"soon\""), "{e}");
        let e = err("regions:\n  - name: a\n   bad: [\n");
        assert!(
            e.starts_with("cfg.yaml: line ") && e.contains("not valid YAML"),
            "{e}"
        );
        let e = err("global: {a: 1}\nregions: {a: b}\n");
        assert!(
            e.contains("line 2") && e.contains("regions: invalid type: map, expected a sequence"),
            "{e}"
        );
        assert!(err("# only a comment\n").contains("the config file is empty"));
        assert!(err("- a\n- b\n").contains("invalid type: sequence"));
    }

    #[test]
    fn anchors_and_merge_keys() {
        let text = "x-instance: &inst\n  port: 6432\n  sslmode: require\n  parameters: {wal_level: logical}\nregions:\n  - name: a\n    instance:\n      <<: *inst\n      host: h1\n  - name: b\n    instance: {<<: *inst, host: h2}\n";
        let cfg = Config::from_yaml_str(text, "c").unwrap();
        assert_eq!(cfg.regions[0].conn.port, Some(6432));
        assert_eq!(cfg.regions[1].conn.host.as_deref(), Some("h2"));
        assert_eq!(
            cfg.regions[1].conn.sslmode,
            Some(crate::pg::conninfo::SslMode::Require)
        );
    }

    #[test]
    fn region_flags() {
        let mut cfg = Config::from_yaml_str(GUIDE, "g.yaml").unwrap();
        cfg.apply_region_flag("us-west-2=postgres://u:pw@127.0.0.1:5433/db2")
            .unwrap();
        cfg.apply_region_flag("eu-1=host=10.0.0.9 port=5434 dbname='x y'")
            .unwrap();
        let names: Vec<_> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["us-east-1", "us-west-2", "eu-1"]);
        let w = &cfg.regions[1].conn;
        assert_eq!(
            (w.host.as_deref(), w.port, w.dbname.as_deref()),
            (Some("127.0.0.1"), Some(5433), Some("db2"))
        );
        assert_eq!(cfg.regions[2].conn.dbname.as_deref(), Some("x y"));
        // Only the given fields replace.
        cfg.apply_region_flag("us-east-1=port=7777").unwrap();
        assert_eq!(
            cfg.regions[0].conn.host.as_deref(),
            Some("postgres.us-east-1.eden.internal")
        );
        assert_eq!(cfg.regions[0].conn.port, Some(7777));
        cfg.validate().unwrap();

        let mut empty = Config::default();
        assert!(
            empty
                .validate()
                .unwrap_err()
                .to_string()
                .contains("give --config FILE")
        );
        for (flag, want) in [
            ("postgres://u:hunter2@h/d", "--region expects NAME=CONNINFO"),
            (
                "postgres://u:hunter2@h/d?sslmode=require",
                "NAME is a region name",
            ),
            ("=postgres://h", "region name is empty"),
            ("r1=", "--region r1= gives no connection string"),
            (
                "r1=postgres://u:hunter2@h:99999/d",
                "--region r1: invalid port number",
            ),
            (
                "r1=host=h password=hunter2 bogus",
                "--region r1: missing \"=\"",
            ),
        ] {
            let e = empty.apply_region_flag(flag).unwrap_err();
            assert!(matches!(e, Error::Usage(_)));
            let e = e.to_string();
            assert!(e.contains(want), "{flag}: {e}");
            assert!(!e.contains("hunter2"), "{flag}: {e}");
        }
    }

    #[test]
    fn rule_regions_checked_after_flags() {
        // A file without regions: rules are checked once the flags are in.
        let text = "replication:\n  node_groups:\n    - database: d\n      conflict_resolution_tables:\n        - {table: t, resolution: region_priority, regions: [r2, r1]}\n";
        let mut cfg = Config::from_yaml_str(text, "c.yaml").unwrap();
        cfg.apply_region_flag("r1=postgres://h1/d").unwrap();
        let e = cfg.validate().unwrap_err().to_string();
        assert!(e.contains("region \"r2\", which is not defined"), "{e}");
        cfg.apply_region_flag("r2=postgres://h2/d").unwrap();
        cfg.validate().unwrap();
    }
}
