//! Rows as values: column values that compare as values whatever session printed them, their
//! canonical encoding and the row digests built on it.

pub mod digest;
pub mod value;
