//! Shared helpers for end-to-end tests: run the real binary and capture what a user sees.

#![allow(dead_code)]

use std::process::{Command, Stdio};

/// What one run of the binary produced (exit code, stdout, stderr), with `json()`,
/// `assert_code()` and `assert_one_line_error()`.
pub type Run = eden_test_util::BinOutput;

/// A command for the real `eden-reconcile` binary, with a clean environment for the tool's
/// own variables (so a developer's EDEN_RECONCILE_CONFIG does not leak in).
pub fn eden() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_eden-reconcile"));
    cmd.env_remove("EDEN_RECONCILE_CONFIG")
        .env_remove("EDEN_LOG")
        .env_remove("RUST_LOG");
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs the binary with `args` and captures its output.
pub fn run<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_cmd(eden().args(args))
}

/// Runs a prepared command and captures its output.
pub fn run_cmd(cmd: &mut Command) -> Run {
    let out = cmd.output().expect("run eden-reconcile");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
