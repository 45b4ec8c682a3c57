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
pub mod ident;
pub mod value;

pub mod config;
pub mod connect;
pub mod conninfo;

pub mod conflicts;
pub mod schema;

pub mod check;
pub mod digest;
pub mod filter;
pub mod merkle;
pub mod report;
pub mod source;

pub mod resolve;

pub mod apply;
pub mod plan;
pub mod undo;
pub mod validate;

pub mod redis;

pub use error::{Error, Result};
pub use ident::TableName;
