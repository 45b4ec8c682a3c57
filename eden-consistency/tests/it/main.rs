//! The library's integration tests, in one test binary (one module per area) so that the
//! library and its test dependencies are linked once.
//!
//! Run one area with `cargo test -p eden-consistency --test it <module>::`.

mod check_basic;
mod check_bench;
mod check_cases;
mod check_chunks;
mod check_clusters;
mod check_common;
mod check_incremental;
mod check_inflight;
mod check_prop;
mod check_shard;
mod config;
mod conflicts;
mod connect;
mod deploy;
mod errors;
mod filter;
mod fix_apply;
mod fix_concurrency;
mod fix_rules;
mod fix_sql_out;
mod import;
mod lock;
mod parsers;
mod pglogical;
mod redis_cache;
mod resolve_pg_eval;
mod resolve_props;
mod resolve_rules;
mod schema;
mod undo;
mod values;
