//! Exact, typed, length-prefixed row encoding hashed with blake3.
