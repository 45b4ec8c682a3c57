//! End-to-end tests of the real `eden-reconcile` binary.

mod common;
mod cli;
mod init;
mod conflicts;
mod errors;
mod fix;
mod pglogical;
mod contract;
mod check;
