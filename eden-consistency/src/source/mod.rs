//! Sources of keyed rows: the source trait ([`keyed`]: what the one comparison engine of
//! [`crate::check`] asks of a PostgreSQL table, a Redis keyspace or a stored tree), the
//! PostgreSQL source (pushdown and stream modes), the merge of sorted `(key, digest)` lists
//! ([`merkle`]) and the `--where` filter. The Redis source lives with the rest of the Redis
//! code (`crate::redis::source`).

pub mod filter;
pub(crate) mod keyed;
pub mod merkle;
mod pg;

pub use pg::*;

use serde::Serialize;

/// Per-region work done on one table (or summed over the run).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RegionStats {
    /// Rows the server read and hashed for us (pushdown) or sent us (stream).
    pub rows_read: u64,
    /// Bytes of result data received from the region (protocol payload, approximate).
    pub bytes_received: u64,
    /// Chunks (key ranges) the table was cut into.
    pub chunks: u64,
    /// Chunks that differed and were read row by row.
    pub chunks_differing: u64,
    /// Wall time spent on this region's queries, milliseconds.
    pub time_ms: u64,
}

impl RegionStats {
    /// Adds another table's figures.
    pub fn add(&mut self, o: &RegionStats) {
        self.rows_read += o.rows_read;
        self.bytes_received += o.bytes_received;
        self.chunks += o.chunks;
        self.chunks_differing += o.chunks_differing;
        self.time_ms += o.time_ms;
    }
}
