//! Whatever shape a mistyped connection string takes (in a `--region` flag, a config file
//! or a conninfo), its password never reaches a message.

use crate::config::Config;
use crate::pg::conninfo::{ConnParams, MapEnv};
use proptest::prelude::*;

const PREFIXES: &[&str] = &[
    "postgres://",
    "postgresql://",
    "postgres:/",
    "postgres//",
    "postgres:",
    "postgresql:",
    "postgresql//",
    "Postgres:/",
    "postgres:///",
    "mysql://",
    "",
    "//",
    "://",
];
const HOSTS: &[&str] = &[
    "h", "h:abc", "h:99999", "[::1", "[::1]x", "h1,h2", "", "h:", "h:5432",
];
const TAILS: &[&str] = &[
    "",
    "/db",
    "/d%zzb",
    "/db?sslmode=maybe",
    "/db?bogus=1",
    "/db?x",
    "/db?ssl=yes",
    "/db?hostaddr=nothost",
    "/db?port=x&",
    "?connect_timeout=soon",
];

/// A URL-like string, maybe mistyped, carrying `pw` where a password goes.
fn url_shape() -> impl Strategy<Value = (String, String)> {
    (
        "Pw[a-zA-Z0-9/@:=' %?&,\\\\#]{3,12}",
        prop::sample::select(PREFIXES),
        prop::sample::select(HOSTS),
        prop::sample::select(TAILS),
        prop::option::of("[a-z]{1,5}"),
        any::<bool>(),
    )
        .prop_map(|(pw, prefix, host, tail, user, in_query)| {
            let user = user.unwrap_or_default();
            let s = if in_query {
                let sep = if tail.contains('?') { "&" } else { "?" };
                let tail = if tail.is_empty() { "/db" } else { tail };
                format!("{prefix}{user}@{host}{tail}{sep}password={pw}")
            } else {
                format!("{prefix}{user}:{pw}@{host}{tail}")
            };
            (s, pw)
        })
}

/// A key=value conninfo, maybe with unquoted spaces, bad values or bad keys.
fn keyvalue_shape() -> impl Strategy<Value = (String, String)> {
    let pieces = prop::sample::subsequence(
        vec![
            "host=h",
            "port=x",
            "port=",
            "hostaddr=",
            "hostaddr=nothost",
            "sslmode=maybe",
            "bogus=1",
            "bogus",
            "user=u",
            "connect_timeout=soon",
            "dbname='unterminated",
        ],
        0..4,
    );
    (
        "Pw[a-zA-Z0-9/@:=' %?&,\\\\#]{3,12}",
        pieces,
        prop::sample::select(vec!["password=", "password = ", "password='", "password="]),
        0usize..5,
    )
        .prop_map(|(pw, pieces, key, at)| {
            let mut parts: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
            let at = at.min(parts.len());
            parts.insert(at, format!("{key}{pw}"));
            (parts.join(" "), pw)
        })
}

fn assert_hidden(text: &str, pw: &str) -> Result<(), TestCaseError> {
    // The password, and any 5-character piece of it, never shows.
    let chars: Vec<char> = pw.chars().collect();
    for w in chars.windows(5) {
        let piece: String = w.iter().collect();
        if piece.trim().len() == 5 {
            prop_assert!(
                !text.contains(&piece),
                "{piece:?} of the password shown in: {text}"
            );
        }
    }
    Ok(())
}

fn check_everywhere(conninfo: &str, pw: &str) -> Result<(), TestCaseError> {
    if let Err(e) = ConnParams::parse(conninfo) {
        assert_hidden(&e, pw)?;
    } else if let Ok(p) = ConnParams::parse(conninfo) {
        if let Err(e) = p.resolve_with(Some("db"), &MapEnv::new().os_user("me")) {
            assert_hidden(&e, pw)?;
        }
    }
    let mut config = Config::default();
    if let Err(e) = config.apply_region_flag(&format!("r1={conninfo}")) {
        assert_hidden(&e.to_string(), pw)?;
    }
    let yaml = format!(
        "regions:\n  - name: r1\n    conninfo: {}\n",
        serde_json::to_string(conninfo).unwrap()
    );
    match Config::from_yaml_str(&yaml, "cfg.yaml") {
        Err(e) => assert_hidden(&e.to_string(), pw)?,
        Ok(c) => {
            if let Err(e) = c.validate() {
                assert_hidden(&e.to_string(), pw)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn url_password_never_in_errors((conninfo, pw) in url_shape()) {
        check_everywhere(&conninfo, &pw)?;
    }

    #[test]
    fn keyvalue_password_never_in_errors((conninfo, pw) in keyvalue_shape()) {
        check_everywhere(&conninfo, &pw)?;
    }
}

#[test]
fn typos_of_the_scheme_are_named() {
    for bad in [
        "postgres:/user:pw1secret@host/db",
        "postgres//user:pw1secret@host/db",
        "postgresql:user:pw1secret@host/db",
    ] {
        assert_eq!(
            ConnParams::parse(bad).unwrap_err(),
            "the connection URL must start with postgres:// or postgresql://"
        );
    }
    let e = ConnParams::parse("user:pw1secret@host/db").unwrap_err();
    assert!(e.starts_with("the connection string is neither"), "{e}");
}
