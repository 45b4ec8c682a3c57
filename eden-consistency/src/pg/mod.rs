//! Everything that speaks PostgreSQL: connection strings, connecting (with TLS and fixed
//! session settings), identifier quoting, the catalog reader, column types and the SQL that
//! reads them, binary decoding and binary `COPY`.

pub mod connect;
pub mod conninfo;
pub mod copy;
pub mod decode;
pub mod expr;
pub mod ident;
pub mod schema;
pub mod types;
