//! Test harness: per-test region databases and throwaway PostgreSQL clusters.
