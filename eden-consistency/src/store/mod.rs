//! What the tool stores in the regions' databases: the `replication_conflicts` table, and
//! the conflicts imported into it from the replication engine.

pub(crate) mod closing;
pub(crate) mod conflicts;
pub mod import;
