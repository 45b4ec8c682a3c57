//! Everything that speaks PostgreSQL: connection strings, connecting (with TLS and fixed
//! session settings), identifier quoting and the catalog reader.

pub mod connect;
pub mod conninfo;
pub mod ident;
pub mod schema;
