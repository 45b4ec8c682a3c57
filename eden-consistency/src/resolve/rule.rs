//! The resolution rules a table can have, as read from the config.

use std::collections::BTreeMap;

/// A resolution rule (see `docs/config.md`).
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// Newest version wins, by `tracking_column` or (when `None`) the commit timestamp.
    LastWriteWins {
        /// The tracking column.
        tracking_column: Option<String>,
    },
    /// Oldest version wins, by `tracking_column` or (when `None`) the commit timestamp.
    FirstWriteWins {
        /// The tracking column.
        tracking_column: Option<String>,
    },
    /// The first region of the list that has a version wins.
    RegionPriority {
        /// Regions, most trusted first.
        regions: Vec<String>,
    },
    /// The version with the highest value in `column` wins.
    HighestValue {
        /// The compared column.
        column: String,
    },
    /// A SQL boolean over versions `a` and `b`: true when `a` beats `b`.
    Custom {
        /// The expression's text.
        expression: String,
    },
    /// A resolver registered in Rust by an embedding service (`custom_rust: name`).
    CustomRust {
        /// The registered name.
        name: String,
    },
    /// Per-column merge: each column takes its value from the version whose tracking column
    /// for that column is newest (`columns: {col: tracking_col}`); columns not listed follow
    /// `tracking_column` (or the commit timestamp).
    ColumnMerge {
        /// Column → its tracking column.
        columns: BTreeMap<String, String>,
        /// Tracking column for the other columns.
        tracking_column: Option<String>,
    },
    /// Never change data; record the conflict for a human.
    Manual,
}

impl Resolution {
    /// The rule's name as written in the config (`last_write_wins`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Resolution::LastWriteWins { .. } => "last_write_wins",
            Resolution::FirstWriteWins { .. } => "first_write_wins",
            Resolution::RegionPriority { .. } => "region_priority",
            Resolution::HighestValue { .. } => "highest_value",
            Resolution::Custom { .. } => "custom",
            Resolution::CustomRust { .. } => "custom_rust",
            Resolution::ColumnMerge { .. } => "column_merge",
            Resolution::Manual => "manual",
        }
    }
}

impl Default for Resolution {
    /// `last_write_wins` on the commit timestamp.
    fn default() -> Self {
        Resolution::LastWriteWins {
            tracking_column: None,
        }
    }
}

/// Where a table's deletes are remembered, so that a delete can win over an older version.
#[derive(Debug, Clone, PartialEq)]
pub enum Tombstone {
    /// A soft-delete column (e.g. `deleted_at`): non-NULL means deleted at that time.
    Column {
        /// The column.
        column: String,
    },
    /// A table holding the key columns of deleted rows plus the deletion time.
    Table {
        /// The tombstone table (`schema.table` or `table`).
        table: String,
        /// Its column holding the deletion time.
        deleted_at_column: String,
    },
}
