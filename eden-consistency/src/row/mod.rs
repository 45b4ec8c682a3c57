//! Rows as values: column values that compare as values whatever session printed them, their
//! canonical encoding and the row digests built on it. Nothing here speaks PostgreSQL's
//! protocol (that is [`crate::pg`]).

pub mod decimal;
pub mod digest;
pub mod json;
pub mod value;
