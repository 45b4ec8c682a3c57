//! Sources of keyed rows and their comparison: the source trait, the PostgreSQL source
//! (pushdown and stream modes), Merkle trees over chunk digests and the `--where` filter.

pub mod filter;
pub mod merkle;
mod pg;

pub use pg::*;
