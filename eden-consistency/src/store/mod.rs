//! What the tool stores in the regions' databases: the `replication_conflicts` table.

pub mod conflicts;
