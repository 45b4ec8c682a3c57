//! # eden-consistency
//!
//! Keeps an active-active, multi-region PostgreSQL deployment consistent: **detect**
//! divergence between regions (Merkle-hash chunked comparison, exact to the row and column),
//! **resolve** conflicts by per-table rules, **record** them in `replication_conflicts`, and
//! **reconcile** (`fix`) with nothing lost.
//!
//! The `eden-reconcile` binary is a thin layer over this crate; services embed the same
//! calls.

pub mod error;

pub mod check;
pub mod config;
pub mod pg;
pub mod repair;
pub mod resolve;
pub mod row;
pub mod source;
pub mod store;

pub mod redis;

pub use error::{Error, Result};
pub use pg::ident::TableName;

// The modules' former paths, kept so that code written against them still builds.
#[doc(hidden)]
pub use check::report;
#[doc(hidden)]
pub use pg::{connect, conninfo, ident, schema};
#[doc(hidden)]
pub use repair::{apply, plan, undo, validate};
#[doc(hidden)]
pub use row::{digest, value};
#[doc(hidden)]
pub use source::{filter, merkle};
#[doc(hidden)]
pub use store::conflicts;
