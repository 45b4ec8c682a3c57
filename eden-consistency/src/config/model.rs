//! What the configuration says, once read: regions, node groups and their table rules.

use std::path::PathBuf;

use crate::pg::conninfo::ConnParams;
use crate::resolve::{Resolution, Tombstone};

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
