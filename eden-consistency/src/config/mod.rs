//! The operators' `postgresql-multi-region.yaml`, read as-is (see `docs/config.md`), plus the regions
//! given with `--region NAME=CONNINFO`.
//!
//! Every table rule is validated when the file is loaded: an unknown resolution, a rule that
//! lacks the setting it needs, or a region that is not defined is refused with a message
//! naming the file, the table and the fix.

mod connect;
mod model;
mod parse;
#[cfg(test)]
mod secret_props;
#[cfg(test)]
mod tests;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::pg::conninfo::ConnParams;
use crate::pg::ident::TableName;
pub(crate) use crate::resolve::{Resolution, Tombstone};
pub use connect::{connect_all, connect_region};
pub use model::{
    Config, Global, MissingRows, NodeGroup, RegionConfig, TableRule, UniqueCollisions,
};

impl Config {
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
                    parse::check_rule_regions(&rule.table, &group.name, &rule.resolution, &names)
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
