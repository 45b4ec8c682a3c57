//! Shared helpers for end-to-end tests: run the real binary and capture what a user sees.

#![allow(dead_code)]

use std::process::{Command, Stdio};

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Stdout parsed as JSON; panics with the output when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the contract's error shape: exit 2, exactly one line on stderr starting
    /// `eden-reconcile: `, and no panic text.
    pub fn assert_one_line_error(&self) {
        assert_eq!(
            self.code,
            Some(2),
            "expected exit 2, got {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one line on stderr, got:\n{}",
            self.stderr
        );
        assert!(
            lines[0].starts_with("eden-reconcile: "),
            "stderr: {}",
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"),
            "{}",
            self.stderr
        );
    }
}

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
