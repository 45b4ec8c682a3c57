//! End-to-end tests of the real `eden-reconcile` binary.

mod cache;
mod check;
mod cli;
mod common;
mod conflicts;
mod contract;
mod errors;
mod fix;
mod init;
mod pglogical;
