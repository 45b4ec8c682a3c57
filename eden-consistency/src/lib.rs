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
mod repair;
mod resolve;
mod row;
mod source;
mod store;

pub use check::progress::{Progress, ProgressSink};
pub use check::report::{
    CheckReport, Difference, RegionMap, RegionStats, TableReport, TableStatus,
};
pub use check::{CheckOptions, Checker, DiffKey, TableCheck};
pub use config::{Config, Global, NodeGroup, RegionConfig, TableRule};
pub use error::{Error, QueryFailure, Result};
pub use pg::connect::{ConnectOptions, Region, connect_all, connect_region};

// Redis caches: the same check and fix over a cache's keyspace.
pub mod redis;

// Operations: replication status, the run lock, Prometheus metrics.
#[doc(hidden)]
pub mod lock;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod status;
// Masking secret columns (`redact_columns`) in outputs.
pub mod redact;
pub use pg::ident::TableName;
pub use repair::apply::{ApplyOptions, FixReport, FixRun, apply_plan, run_fix};
pub use repair::plan::{FixOptions, FixPlan, KeyMap, TableDifferences, plan_fix, plan_fix_checked};
pub use repair::undo::{UndoOptions, UndoReport, undo_run};
pub use resolve::{
    Action, CustomResolver, Decision, Registry, Resolution, Resolver, Row, Tombstone, Version,
    Winner,
};
pub use row::value::Value;
pub use source::Mode;

// The modules' paths for the binary, the tests and the benches: not part of the curated
// interface above, and may change.
#[doc(hidden)]
pub use check::report;
#[doc(hidden)]
pub use pg::{connect, conninfo, ident, schema};
#[doc(hidden)]
pub use repair::{apply, plan, undo, validate};
#[doc(hidden)]
pub use resolve::{
    Expression, check_expression_order, datetime_to_micros, micros_to_datetime, synthetic_samples,
    validate_against_columns, validate_rule_syntax,
};
#[doc(hidden)]
pub use source::{filter, merkle};
#[doc(hidden)]
pub use store::{closing, conflicts, import};

/// Internals that this repository's own tests, benches and binary reach into: not part of
/// the documented interface, and may change at any time.
#[doc(hidden)]
pub mod __private {
    pub use crate::pg::{copy, decode, expr, types};
    pub use crate::row::{decimal, digest, json, value};
}
