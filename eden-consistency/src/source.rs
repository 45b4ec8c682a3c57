//! Keyed sources: anything the diff engine can compare (PostgreSQL tables today).
