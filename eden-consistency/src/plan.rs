//! Planning a fix: per region, the inserts, updates and deletes that make regions agree.
