//! What the tool stores in the regions' databases: the `replication_conflicts` table, and
//! the conflicts imported into it from the replication engine.

pub mod closing;
pub mod conflicts;
pub mod import;
