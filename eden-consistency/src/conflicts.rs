//! The replication_conflicts table: creation (init), recording, listing.
