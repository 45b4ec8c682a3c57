//! Applying a fix plan: guarded, archived, batched writes.
