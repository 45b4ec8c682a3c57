//! Conflict resolution: which version of a row wins across regions (pure, no I/O).
