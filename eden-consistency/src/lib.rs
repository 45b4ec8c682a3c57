//! # eden-consistency
//!
//! Keeps an active-active, multi-region PostgreSQL deployment consistent: **detect**
//! divergence between regions (Merkle-hash chunked comparison, exact to the row and column),
//! **resolve** conflicts by per-table rules, **record** them in `replication_conflicts`, and
//! **reconcile** (`fix`) with nothing lost.
//!
//! ```no_run
//! use eden_consistency::{CheckOptions, Checker, Config};
//!
//! async fn nightly() -> eden_consistency::Result<bool> {
//!     let config = Config::load(std::path::Path::new("/etc/eden/postgresql-multi-region.yaml"))?;
//!     let checker = Checker::connect(config, "eden_vault").await?;
//!     let report = checker.run(&CheckOptions::default()).await?;
//!     Ok(report.consistent)
//! }
//! ```
//!
//! The `eden-reconcile` binary is a thin layer over this crate; services embed the same
//! calls. A row's way from check to fix: [`Checker::run_detailed`] compares the regions
//! and returns, per table, a [`TableCheck`] (the table's name, rule, definition and every
//! differing key); [`plan_fix_checked`] reads each differing key's versions in every region
//! and resolves them by the table's rule ([`Resolver`]) into a [`FixPlan`]; [`apply_plan`]
//! writes the winners, archiving every overwritten row in `replication_conflicts` in the
//! same transaction; [`undo_run`] puts a run's archived rows back. [`run_fix`] does all of
//! it. The interface of the tool (config, commands, exit codes, JSON reports, the
//! `replication_conflicts` table) is described in the repository's `docs/`.
#![warn(unreachable_pub)]

mod check;
mod config;
mod error;
mod pg;
mod progress;
mod repair;
mod resolve;
mod row;
mod source;
mod store;

pub use check::incremental::{IncrementalOptions, IncrementalReport};
pub use check::report::{
    CheckReport, Difference, Differences, RegionMap, RegionStats, TableReport, TableStatus,
};
pub use check::shard::{Shard, ShardOptions, merge_reports, report_exit_code};
pub use check::{CheckOptions, Checker, DiffKey, TableCheck};
pub use config::{
    Config, Global, MissingRows, NodeGroup, RegionConfig, TableRule, UniqueCollisions, connect_all,
    connect_region,
};
pub use error::{Error, QueryFailure, Result};
pub use pg::connect::{ConnectOptions, Region, describe_databases};
/// Connection parameters with libpq's habits (what [`RegionConfig::conn`] holds).
pub use pg::conninfo;
pub use pg::conninfo::{ConnParams, SslMode};
pub use pg::ident::TableName;
pub use pg::schema::{Column, KeySource, TableSchema};
pub use progress::{Progress, ProgressSink};
pub use repair::apply::{
    ActionReport, ActionStatus, ApplyOptions, FixReport, FixRun, apply_plan, apply_plan_on,
    run_fix, write_sql_scripts,
};
pub use repair::plan::{
    FixOptions, FixPlan, KeyMap, TableDifferences, new_run_id, plan_fix, plan_fix_checked,
};
pub use repair::undo::{
    UndoOptions, UndoReport, UndoStatus, resolve_run_id, undo_run, undo_run_on,
};
/// `validate-config`: a config checked against the live schema of every region.
pub use repair::validate;
pub use resolve::{
    Action, CustomResolver, Decision, Registry, Resolution, Resolver, Row, Tombstone, Version,
    Winner, datetime_to_micros, micros_to_datetime,
};
pub use row::value::Value;
pub use source::Mode;

// Redis caches: the same check and fix over a cache's keyspace.
pub mod redis;

// Operations: replication status, the run lock, Prometheus metrics.
pub mod lock;
pub mod metrics;
pub mod status;
// Masking secret columns (`redact_columns`) in outputs.
pub mod redact;

/// The `replication_conflicts` table (see `docs/replication_conflicts.md`): the records
/// check and fix write, listing them, closing them by hand, and importing the conflicts the
/// replication engine resolved itself.
pub mod conflicts {
    pub use crate::store::closing::{HandResolution, ResolvedKey, close_resolved, resolve_by_hand};
    pub use crate::store::conflicts::*;
    pub use crate::store::import::{ImportOptions, RegionImport, SourceOutcome, import_region};
}

/// Internals that this repository's own tests, benches and binary reach into: not part of
/// the documented interface, and may change at any time.
#[doc(hidden)]
pub mod __private {
    pub use crate::pg::{copy, decode, expr, ident, schema, types};
    pub use crate::repair::plan;
    pub use crate::resolve::{
        Expression, check_expression_order, synthetic_samples, validate_against_columns,
        validate_rule_syntax,
    };
    pub use crate::row::{decimal, digest, json, value};
    pub use crate::source::{filter, merkle};
    pub use crate::store::import;
}
