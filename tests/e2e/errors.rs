//! Errors as a user sees them: exit 2, one line `eden-reconcile: ...` on stderr, no panic,
//! and never a password, whatever went wrong (bad password, unreachable host, missing
//! database, bad config).

use std::path::PathBuf;

use eden_test_util::{BinOutput, ClusterOptions, TestCluster, run_bin};

const EXE: &str = env!("CARGO_BIN_EXE_eden-reconcile");

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
        .join(name)
        .display()
        .to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Exit 2, exactly one non-empty stderr line, which is `want` (after the prefix); nothing
/// in either stream mentions any of `secrets`.
#[track_caller]
fn assert_error(out: &BinOutput, want: &str, secrets: &[&str]) {
    out.assert_one_line_error();
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines[0], format!("eden-reconcile: {want}"));
    for s in secrets {
        assert!(
            !out.stdout.contains(s) && !out.stderr.contains(s),
            "secret {s:?} leaked:\n{}\n{}",
            out.stdout,
            out.stderr
        );
    }
}

#[test]
fn errors_wrong_password() {
    let cluster = TestCluster::start(
        ClusterOptions::new()
            .password("Right-Pw-71zq")
            .hba_line("host all all 127.0.0.1/32 scram-sha-256"),
    );
    let port = cluster.port;
    let url_pw = "Url-Pw-93kx";
    let env_pw = "Env-Pw-55mv";
    // The URL's password is used (and wrong); PGPASSWORD is set too and must not leak either.
    let out = run_bin(
        EXE,
        [
            "check",
            "--db",
            "postgres",
            "--region",
            &format!("r1=postgres://postgres:{url_pw}@127.0.0.1:{port}/postgres"),
        ],
        &[("PGPASSWORD", env_pw)],
    );
    assert_error(
        &out,
        &format!(
            "region r1 ({}): password authentication failed for user \"postgres\" (password taken from the config or connection string)",
            format_args!("127.0.0.1:{port}")
        ),
        &[url_pw, env_pw, "Right-Pw-71zq"],
    );
    // Only PGPASSWORD (wrong).
    let out = run_bin(
        EXE,
        [
            "check",
            "--db",
            "postgres",
            "--region",
            &format!("r1=host=127.0.0.1 port={port} user=postgres"),
        ],
        &[("PGPASSWORD", env_pw)],
    );
    assert_error(
        &out,
        &format!(
            "region r1 (127.0.0.1:{port}): password authentication failed for user \"postgres\" (password taken from PGPASSWORD)"
        ),
        &[env_pw],
    );
    // A wrong password from ~/.pgpass.
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("# test\n127.0.0.1:{port}:*:postgres:Pgpass-Pw-31\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let home_s = home.path().display().to_string();
    let region = format!("r1=postgres://postgres@127.0.0.1:{port}");
    let args = ["check", "--db", "postgres", "--region", region.as_str()];
    let out = run_bin(EXE, args, &[("HOME", home_s.as_str())]);
    assert_error(
        &out,
        &format!(
            "region r1 (127.0.0.1:{port}): password authentication failed for user \"postgres\" (password taken from the password file)"
        ),
        &["Pgpass-Pw-31"],
    );
    // A password file others can read is ignored, with libpq's warning.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_bin(EXE, args, &[("HOME", home_s.as_str())]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("has group or world access"),
        "{}",
        out.stderr
    );
    let last = out
        .stderr
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert_eq!(
        last,
        format!(
            "eden-reconcile: region r1 (127.0.0.1:{port}): the server asks for a password and none was given; set it in the connection string, PGPASSWORD or ~/.pgpass"
        )
    );
    assert!(!out.stderr.contains("Pgpass-Pw-31") && !out.stderr.contains("panicked"));
}

#[test]
fn errors_unreachable_host() {
    let port = free_port();
    let out = run_bin(
        EXE,
        [
            "check",
            "--db",
            "eden_vault",
            "--region",
            &format!("us-east-1=postgres://postgres:Pw-Unreach-1@127.0.0.1:{port}/eden_vault"),
        ],
        &[("PGPASSWORD", "Pw-Unreach-2")],
    );
    assert_error(
        &out,
        &format!("region us-east-1 (127.0.0.1:{port}): connection refused"),
        &["Pw-Unreach-1", "Pw-Unreach-2"],
    );
}

#[test]
fn errors_missing_database() {
    let out = run_bin(
        EXE,
        [
            "check",
            "--db",
            "eden_e2e_no_such_database",
            "--region",
            "r1=postgres://postgres@127.0.0.1:5432",
        ],
        &[],
    );
    assert_error(
        &out,
        "region r1 (127.0.0.1:5432): database \"eden_e2e_no_such_database\" does not exist",
        &[],
    );
}

#[test]
fn errors_malformed_yaml() {
    let f = fixture("config/malformed.yaml");
    let out = run_bin(EXE, ["--config", &f, "check", "--db", "eden_vault"], &[]);
    assert_error(
        &out,
        &format!(
            "{f}: line 7, column 4: the file is not valid YAML: did not find expected '-' indicator"
        ),
        &[],
    );
}

#[test]
fn errors_unknown_resolution() {
    let f = fixture("config/unknown-resolution.yaml");
    let out = run_bin(
        EXE,
        ["check", "--db", "eden_vault"],
        &[("EDEN_RECONCILE_CONFIG", f.as_str())],
    );
    assert_error(
        &out,
        &format!(
            "{f}: table vault_secrets in node group \"eden_vault_group\": unknown resolution \"newest_wins\"; use one of last_write_wins, first_write_wins, region_priority, highest_value, custom, custom_rust, column_merge, manual"
        ),
        &[],
    );
}

#[test]
fn errors_undefined_region_in_rule() {
    let f = fixture("config/undefined-region.yaml");
    let out = run_bin(EXE, ["--config", &f, "check", "--db", "eden_vault"], &[]);
    assert_error(
        &out,
        &format!(
            "{f}: table tenants in node group \"eden_vault_group\": region_priority names region \"eu-central-1\", which is not defined under regions: (defined: us-east-1, us-west-2); fix the name or define the region"
        ),
        &[],
    );
}

#[test]
fn errors_bad_region_flag_never_echoes_password() {
    let out = run_bin(
        EXE,
        [
            "check",
            "--db",
            "x",
            "--region",
            "postgres://u:Flag-Pw-88@h/db?sslmode=require",
        ],
        &[],
    );
    assert_error(
        &out,
        "--region expects NAME=CONNINFO where NAME is a region name (letters, digits, '-', '_', '.'); e.g. --region us-east-1=postgres://db.example:5432/eden_vault",
        &["Flag-Pw-88"],
    );
    let out = run_bin(
        EXE,
        [
            "check",
            "--db",
            "x",
            "--region",
            "r1=postgres://u:Flag-Pw-88@h:notaport/db",
        ],
        &[],
    );
    assert_error(
        &out,
        "--region r1: invalid port number (expected 1-65535)",
        &["Flag-Pw-88"],
    );
}
