//! Undoing a fix run from the archive in replication_conflicts.
