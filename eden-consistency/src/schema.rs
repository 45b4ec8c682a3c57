//! Schema introspection from pg_catalog: tables to cover, keys, exact column types, and cross-region comparison.
