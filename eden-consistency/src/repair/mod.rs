//! Repairing differences: the fix plan (resolution by each table's rule), applying it with
//! every overwritten row archived, undoing a run, and validating a config's rules against the
//! live schema.

pub(crate) mod apply;
pub(crate) mod collision;
pub mod plan;
pub(crate) mod undo;
pub mod validate;
