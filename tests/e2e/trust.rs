//! Secrets stay secret, scripts stay scripts, logs stay clean: what an operator sees when
//! the input is mistyped or hostile, and what the server logs while we work.

use crate::common::run;

/// A mistyped URL (`postgres:/`, `postgres//`, no scheme), in `--region` or in a config's
/// `conninfo:`, exits 2 with one sentence that shows no part of the password.
#[test]
fn malformed_urls_never_echo_the_password() {
    let pw = "Pw1-Sekr3t-zz";
    let shapes = [
        format!("postgres:/user:{pw}@host/db"),
        format!("postgres//user:{pw}@host/db"),
        format!("user:{pw}@host/db"),
        format!("postgresql:user:{pw}@host/db"),
        format!("host=h password={pw} port=notaport"),
        format!("hostaddr= password={pw}"),
        format!("postgres://user:{pw}/x@host/db"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for shape in &shapes {
        let r = run(["check", "--db", "x", "--region", &format!("r1={shape}")]);
        r.assert_one_line_error();
        assert!(r.stderr.contains("--region r1"), "{shape}: {}", r.stderr);
        assert!(
            !r.stderr.contains("Sekr3t") && !r.stdout.contains("Sekr3t"),
            "{shape}: {}",
            r.stderr
        );
        let cfg = dir.path().join("cfg.yaml");
        std::fs::write(
            &cfg,
            format!(
                "regions:\n  - name: r1\n    conninfo: {}\nreplication:\n  provider: pglogical\n  node_groups: []\n",
                serde_json::to_string(shape).unwrap()
            ),
        )
        .unwrap();
        let r = run(["check", "--db", "x", "--config", cfg.to_str().unwrap()]);
        r.assert_one_line_error();
        assert!(r.stderr.contains("r1"), "{shape}: {}", r.stderr);
        assert!(!r.stderr.contains("Sekr3t"), "{shape}: {}", r.stderr);
    }
}
