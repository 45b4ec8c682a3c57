//! The command line itself: help, version, usage errors.

use crate::common::run;

#[test]
fn help_lists_the_four_commands_with_examples() {
    let r = run(["--help"]);
    assert_eq!(r.code, Some(0));
    for cmd in ["check", "conflicts", "fix", "init"] {
        assert!(
            r.stdout.contains(&format!("  {cmd} ")),
            "--help lacks {cmd}:\n{}",
            r.stdout
        );
    }
    assert!(r.stdout.contains("Examples:"));
    for cmd in ["check", "conflicts", "fix", "init"] {
        let r = run([cmd, "--help"]);
        assert_eq!(r.code, Some(0));
        assert!(
            r.stdout.contains("Example"),
            "{cmd} --help has no example:\n{}",
            r.stdout
        );
    }
}

#[test]
fn version_works() {
    let r = run(["--version"]);
    assert_eq!(r.code, Some(0));
    assert!(r.stdout.starts_with("eden-reconcile "), "{}", r.stdout);
}

#[test]
fn usage_errors_are_one_line_and_exit_2() {
    run(["check", "--no-such-flag"]).assert_one_line_error();
    run(["frobnicate"]).assert_one_line_error();
    run(["--format", "yaml", "check"]).assert_one_line_error();
}

#[test]
fn global_options_go_before_or_after_the_subcommand() {
    let a = run([
        "--format",
        "json",
        "check",
        "--db",
        "x",
        "--config",
        "/nonexistent/eden.yaml",
    ]);
    let b = run([
        "check",
        "--db",
        "x",
        "--format",
        "json",
        "--config",
        "/nonexistent/eden.yaml",
    ]);
    a.assert_one_line_error();
    b.assert_one_line_error();
    assert!(a.stderr.contains("/nonexistent/eden.yaml"), "{}", a.stderr);
}
