//! Merkle trees over key-range chunk digests, and their comparison.
