//! Shell habits: completion scripts and manual pages generated from the same command-line
//! definitions as the parser, checked by the real shells and groff; every command's
//! `--help` carries an example.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::run;

/// Every command, as typed after `eden-reconcile`.
const COMMANDS: &[&[&str]] = &[
    &["check"],
    &["conflicts"],
    &["conflicts", "import"],
    &["fix"],
    &["init"],
    &["undo"],
    &["validate-config"],
    &["completions"],
    &["man"],
    &["merge-reports"],
];

/// Runs `program args` with `input` on stdin; (exit code, stdout, stderr).
fn pipe(program: &str, args: &[&str], input: &str) -> (Option<i32>, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} is needed by this test (scripts/services.sh installs it): {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_help_has_an_example() {
    for cmd in COMMANDS {
        let mut args: Vec<&str> = cmd.to_vec();
        args.push("--help");
        let r = run(&args);
        assert_eq!(r.code, Some(0), "{cmd:?}: {}", r.stderr);
        assert!(
            r.stdout.contains("Example"),
            "{cmd:?} --help has no example:\n{}",
            r.stdout
        );
        assert!(
            r.stdout.contains("eden-reconcile "),
            "{cmd:?} --help example does not show the command:\n{}",
            r.stdout
        );
    }
}

#[test]
fn bash_completion_parses_and_completes_subcommands() {
    let r = run(["completions", "bash"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let (code, _, err) = pipe("bash", &["-n"], &r.stdout);
    assert_eq!(code, Some(0), "bash -n: {err}");
    // Load it and ask bash for the completions of `eden-reconcile con`, and of the
    // `conflicts` subcommand's own subcommands.
    let script = format!(
        "{}\n\
         complete -p eden-reconcile >/dev/null || exit 3\n\
         f=$(complete -p eden-reconcile | sed -E 's/.*-F ([^ ]+).*/\\1/')\n\
         COMP_WORDS=(eden-reconcile con); COMP_CWORD=1; COMP_LINE='eden-reconcile con'; COMP_POINT=${{#COMP_LINE}}\n\
         \"$f\" eden-reconcile con eden-reconcile; echo \"${{COMPREPLY[@]}}\"\n\
         COMP_WORDS=(eden-reconcile conflicts i); COMP_CWORD=2; COMP_LINE='eden-reconcile conflicts i'; COMP_POINT=${{#COMP_LINE}}\n\
         \"$f\" eden-reconcile i conflicts; echo \"${{COMPREPLY[@]}}\"\n\
         COMP_WORDS=(eden-reconcile conflicts import --s); COMP_CWORD=3; COMP_LINE='eden-reconcile conflicts import --s'; COMP_POINT=${{#COMP_LINE}}\n\
         \"$f\" eden-reconcile --s import; echo \"${{COMPREPLY[@]}}\"\n",
        r.stdout
    );
    let (code, out, err) = pipe("bash", &[], &script);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].split(' ').any(|w| w == "conflicts"), "{out}");
    assert!(lines[1].split(' ').any(|w| w == "import"), "{out}");
    assert!(lines[2].split(' ').any(|w| w == "--since"), "{out}");
}

#[test]
fn zsh_and_fish_completions_parse() {
    for cmd in COMMANDS.iter().filter(|c| c.len() == 1) {
        for shell in ["bash", "zsh", "fish"] {
            let r = run(["completions", shell]);
            assert!(
                r.stdout.contains(cmd[0]),
                "{shell} completion lacks {}",
                cmd[0]
            );
        }
    }
    let z = run(["completions", "zsh"]);
    assert_eq!(z.code, Some(0));
    assert!(z.stdout.starts_with("#compdef eden-reconcile"));
    let (code, _, err) = pipe("zsh", &["-n"], &z.stdout);
    assert_eq!(code, Some(0), "zsh -n: {err}");
    let f = run(["completions", "fish"]);
    assert_eq!(f.code, Some(0));
    let (code, _, err) = pipe("fish", &["--no-execute"], &f.stdout);
    assert_eq!(code, Some(0), "fish --no-execute: {err}");
    run(["completions", "powershell"]).assert_one_line_error();
}

#[test]
fn man_pages_render_with_groff_and_name_every_command() {
    let r = run(["man"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert!(r.stdout.contains(".TH eden-reconcile 1"), "{}", r.stdout);
    // groff parses it without warnings, and the rendered page names every command.
    let (code, text, err) = pipe("groff", &["-man", "-Tutf8", "-ww", "-P", "-c"], &r.stdout);
    assert_eq!(code, Some(0), "groff: {err}");
    assert!(err.trim().is_empty(), "groff warnings: {err}");
    for cmd in COMMANDS.iter().filter(|c| c.len() == 1) {
        assert!(
            text.contains(&format!("eden-reconcile-{}(1)", cmd[0])),
            "main page does not name {}:\n{text}",
            cmd[0]
        );
    }
    // --out-dir: one page per command (what a package installs under man1/).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let w = run(["man", "--out-dir", out.to_str().unwrap()]);
    assert_eq!(w.code, Some(0), "{}", w.stderr);
    for cmd in COMMANDS {
        let page = out.join(format!("eden-reconcile-{}.1", cmd.join("-")));
        let roff =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        let (code, _, err) = pipe("groff", &["-man", "-Tutf8", "-ww", "-z"], &roff);
        assert!(
            code == Some(0) && err.trim().is_empty(),
            "{}: {err}",
            page.display()
        );
        assert!(
            roff.contains("Example"),
            "{} has no example",
            page.display()
        );
    }
    assert!(out.join("eden-reconcile.1").exists());
}
