//! The `check` report: serde types that serialize to the JSON report (see `docs/reports.md`).
//!
//! Everything the contract lists is here with its exact name; additions are `stats` (per
//! region: rows read, bytes received, chunks, time), `in_flight_count`, `mode`,
//! `elapsed_ms`, `schema_differences` and, per difference, `in_flight`.

use serde::Serialize;

pub use super::listing::Differences;

/// A map from region name to a value that keeps the regions' order (config order) when
/// serialized as a JSON object.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegionMap<T>(pub Vec<(String, T)>);

impl<T> RegionMap<T> {
    /// The value for `region`, if present.
    pub fn get(&self, region: &str) -> Option<&T> {
        self.0.iter().find(|(r, _)| r == region).map(|(_, v)| v)
    }
}

impl<T: Serialize> Serialize for RegionMap<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// A table's outcome (`docs/reports.md` `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TableStatus {
    /// Every region holds the same rows.
    Consistent,
    /// Rows differ (not counting in-flight ones).
    Divergent,
    /// Column names or types (or the key) differ between regions; rows not compared.
    SchemaMismatch,
    /// No usable key; not verified.
    Skipped,
    /// The table could not be checked.
    Error,
}

impl TableStatus {
    /// The contract's name (`consistent`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            TableStatus::Consistent => "consistent",
            TableStatus::Divergent => "divergent",
            TableStatus::SchemaMismatch => "schema_mismatch",
            TableStatus::Skipped => "skipped",
            TableStatus::Error => "error",
        }
    }
}

/// One differing key.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Difference {
    /// Key column → value (integers as numbers, everything else as PostgreSQL prints it with
    /// `TimeZone=UTC`).
    pub key: serde_json::Map<String, serde_json::Value>,
    /// Regions lacking the row.
    pub missing_in: Vec<String>,
    /// Columns whose values differ among the regions where the row is present (sorted by
    /// name).
    pub changed_columns: Vec<String>,
    /// The newest version is younger than the lag window and still differed after the
    /// recheck: possibly still replicating.
    pub in_flight: bool,
}

pub use crate::source::RegionStats;

/// One table's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableReport {
    /// Schema-qualified name (`public.vault_secrets`).
    pub table: String,
    /// The key columns used.
    pub key_columns: Vec<String>,
    /// Outcome.
    pub status: TableStatus,
    /// Why, for every status but `consistent`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Rows per region (regions where the table could be read).
    pub row_counts: RegionMap<u64>,
    /// Number of differing keys (never capped), in-flight ones included.
    pub difference_count: u64,
    /// The differences, at most `--max-differences`, in key order (on disk when there are
    /// many: see [`Differences`]).
    pub differences: Differences,
    /// Differences flagged `in_flight`.
    pub in_flight_count: u64,
    /// For `schema_mismatch`: what differs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schema_differences: Vec<crate::pg::schema::SchemaDifference>,
    /// `pushdown` or `stream` (empty when rows were not compared).
    pub mode: String,
    /// Work per region.
    pub stats: RegionMap<RegionStats>,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
    /// `check --incremental`: what was re-hashed and why (see `docs/incremental.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<crate::check::incremental::IncrementalReport>,
    /// `check --shard`: the key range this shard covered (see `docs/sharding.md`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_range: Option<crate::check::shard::ShardRange>,
}

impl TableReport {
    /// A report with no rows compared, for `skipped`, `schema_mismatch` and `error`.
    pub fn without_rows(
        table: String,
        key_columns: Vec<String>,
        status: TableStatus,
        message: String,
    ) -> TableReport {
        TableReport {
            table,
            key_columns,
            status,
            message: Some(message),
            row_counts: RegionMap::default(),
            difference_count: 0,
            differences: Differences::default(),
            in_flight_count: 0,
            schema_differences: Vec::new(),
            mode: String::new(),
            stats: RegionMap::default(),
            elapsed_ms: 0,
            incremental: None,
            shard_range: None,
        }
    }
}

/// The whole `check` report (see `docs/reports.md`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The database checked: `--db`, else what the regions connected to (its name when all
    /// connected to the same one, else `region=database` for each region).
    pub database: String,
    /// Always `postgresql` (a Redis cache's report says `redis`).
    pub kind: &'static str,
    /// The database each region connected to.
    pub databases: RegionMap<String>,
    /// Regions, in tie-break order.
    pub regions: Vec<String>,
    /// True only when every table is `consistent`.
    pub consistent: bool,
    /// One entry per covered table, sorted by name.
    pub tables: Vec<TableReport>,
    /// Differences flagged in flight, over all tables.
    pub in_flight_count: u64,
    /// The mode asked for (`auto`, `pushdown`, `stream`).
    pub mode: String,
    /// The run's id (also in `replication_conflicts.run_id` with `--record`).
    pub run_id: String,
    /// Work per region, summed over the tables.
    pub stats: RegionMap<RegionStats>,
    /// Wall time, milliseconds.
    pub elapsed_ms: u64,
    /// `check --shard I/N`: this shard and the plan every shard follows (see
    /// `docs/sharding.md`); `merge-reports` combines the shards' reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::check::shard::ShardReport>,
}

impl CheckReport {
    /// The process exit code for this report: 0 when consistent, else 1.
    pub fn exit_code(&self) -> i32 {
        if self.first_error().is_some() {
            2
        } else if self.consistent {
            0
        } else {
            1
        }
    }

    /// The first table that could not be checked (status `error`), if any.
    pub fn first_error(&self) -> Option<&TableReport> {
        self.tables.iter().find(|t| t.status == TableStatus::Error)
    }

    /// The JSON document (see `docs/reports.md`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
