//! End-to-end tests of the real `eden-reconcile` binary.

mod cache;
mod check;
mod cli;
mod common;
mod conflicts;
mod contract;
mod errors;
mod fix;
mod import;
mod init;
mod lock;
mod metrics;
mod nightly;
mod pglogical;
mod safety;
mod shell;
mod status;
mod trust;
