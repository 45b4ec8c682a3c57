//! Parsing and resolving connection parameters.

use std::path::Path;

use super::*;

#[test]
fn url_full() {
    let p = ConnParams::parse("postgresql://us%40er:p%3Ass@db.example.com:6432/my%20db?sslmode=verify-ca&application_name=x&connect_timeout=7&sslrootcert=/r.pem").unwrap();
    assert_eq!(p.user.as_deref(), Some("us@er"));
    assert_eq!(p.password.as_deref(), Some("p:ss"));
    assert_eq!(p.host.as_deref(), Some("db.example.com"));
    assert_eq!(p.port, Some(6432));
    assert_eq!(p.dbname.as_deref(), Some("my db"));
    assert_eq!(p.sslmode, Some(SslMode::VerifyCa));
    assert_eq!(p.application_name.as_deref(), Some("x"));
    assert_eq!(p.connect_timeout, Some(7));
    assert_eq!(p.sslrootcert.as_deref(), Some("/r.pem"));
}

#[test]
fn url_minimal_and_v6() {
    let p = ConnParams::parse("postgres://").unwrap();
    assert_eq!(p, ConnParams::default());
    let p = ConnParams::parse("postgres://[::1]:5433/db").unwrap();
    assert_eq!(p.host.as_deref(), Some("::1"));
    assert_eq!(p.port, Some(5433));
    let p = ConnParams::parse("postgres://[fe80::1]").unwrap();
    assert_eq!(p.host.as_deref(), Some("fe80::1"));
    assert_eq!(p.port, None);
    let p = ConnParams::parse("postgres://h/?host=%2Fvar%2Frun%2Fpostgresql").unwrap();
    assert_eq!(p.host.as_deref(), Some("/var/run/postgresql"));
    let p = ConnParams::parse("postgres://u@h?ssl=true").unwrap();
    assert_eq!(p.sslmode, Some(SslMode::Require));
    assert_eq!(p.user.as_deref(), Some("u"));
    assert_eq!(p.dbname, None);
    // A raw '@' in the password: the last '@' ends the user info.
    let p = ConnParams::parse("postgres://u:p@ss@h/d").unwrap();
    assert_eq!(p.password.as_deref(), Some("p@ss"));
    assert_eq!(p.host.as_deref(), Some("h"));
}

#[test]
fn url_errors_never_show_password() {
    for bad in [
        "postgres://u:sekrit@h:abc/d",
        "postgres://u:sekrit@h:70000/d",
        "postgres://u:sek%zzrit@h/d",
        "postgres://u:sekrit@h/d?bogus=1",
        "postgres://u:sekrit@h/d?sslmode=maybe",
        "postgres://u:sekrit@[::1/d",
        "postgres://u:sekrit@h1,h2/d",
        "postgres://u@h/d?password=sek%zzrit",
        "mysql://u:sekrit@h/d",
    ] {
        let e = ConnParams::parse(bad).unwrap_err();
        assert!(!e.contains("sekrit") && !e.contains("sek"), "{bad}: {e}");
    }
    assert_eq!(
        ConnParams::parse("postgres://h:abc/d").unwrap_err(),
        "invalid port number (expected 1-65535)"
    );
    assert_eq!(
        ConnParams::parse("postgres://h/d?bogus=1").unwrap_err(),
        "invalid connection option \"bogus\""
    );
}

#[test]
fn keyvalue() {
    let p = ConnParams::parse(
        r"host=h port = 5433 user=u password='it''s' dbname='my db' sslmode=require",
    )
    .unwrap_err();
    // libpq quotes escape with backslash, not doubling: 'it' then 's' is an unknown token.
    assert!(p.contains("missing \"=\""), "{p}");
    let p = ConnParams::parse(r"host=h port = 5433 user=u password='it\'s a \\ test' dbname='my db' sslmode=require keepalives=1").unwrap();
    assert_eq!(p.host.as_deref(), Some("h"));
    assert_eq!(p.port, Some(5433));
    assert_eq!(p.password.as_deref(), Some(r"it's a \ test"));
    assert_eq!(p.dbname.as_deref(), Some("my db"));
    assert_eq!(p.sslmode, Some(SslMode::Require));
    let p = ConnParams::parse(r"password=a\ b host=x").unwrap();
    assert_eq!(p.password.as_deref(), Some("a b"));
    assert_eq!(ConnParams::parse("").unwrap(), ConnParams::default());
    assert!(
        ConnParams::parse("host='unterminated")
            .unwrap_err()
            .contains("unterminated")
    );
    assert_eq!(
        ConnParams::parse("foo=1").unwrap_err(),
        "invalid connection option \"foo\""
    );
    let e = ConnParams::parse("password='secret").unwrap_err();
    assert!(!e.contains("secret"), "{e}");
    assert!(
        ConnParams::parse("hostaddr=nothost")
            .unwrap_err()
            .contains("numeric IP")
    );
    assert!(
        ConnParams::parse("sslkey=/k")
            .unwrap_err()
            .contains("not supported")
    );
}

#[test]
fn override_fields() {
    let mut a = ConnParams::parse("host=a port=1 user=u dbname=d").unwrap();
    a.override_with(&ConnParams::parse("host=b password=p").unwrap());
    assert_eq!(a.host.as_deref(), Some("b"));
    assert_eq!(a.port, Some(1));
    assert_eq!(a.user.as_deref(), Some("u"));
    assert_eq!(a.password.as_deref(), Some("p"));
}

#[test]
fn precedence_explicit_env_default() {
    let env = MapEnv::new()
        .var("PGHOST", "envhost")
        .var("PGPORT", "6000")
        .var("PGUSER", "envuser")
        .var("PGDATABASE", "envdb")
        .var("PGSSLMODE", "require")
        .var("PGSSLROOTCERT", "/env/root.pem")
        .var("PGCONNECT_TIMEOUT", "3")
        .var("PGAPPNAME", "envapp")
        .os_user("osuser");
    // Nothing explicit: everything from the environment.
    let r = ConnParams::default().resolve_with(None, &env).unwrap();
    assert_eq!(
        (r.host.as_str(), r.port, r.user.as_str(), r.dbname.as_str()),
        ("envhost", 6000, "envuser", "envdb")
    );
    assert_eq!(r.sslmode, SslMode::Require);
    assert_eq!(r.sslrootcert.as_deref(), Some("/env/root.pem"));
    assert_eq!(r.connect_timeout, Some(3));
    assert_eq!(r.application_name.as_deref(), Some("envapp"));
    // The caller's database beats PGDATABASE.
    assert_eq!(
        ConnParams::default()
            .resolve_with(Some("flagdb"), &env)
            .unwrap()
            .dbname,
        "flagdb"
    );
    // Explicit beats all.
    let p = ConnParams::parse(
        "host=h port=1 user=u dbname=d sslmode=disable connect_timeout=9 application_name=a",
    )
    .unwrap();
    let r = p.resolve_with(Some("flagdb"), &env).unwrap();
    assert_eq!(
        (r.host.as_str(), r.port, r.user.as_str(), r.dbname.as_str()),
        ("h", 1, "u", "d")
    );
    assert_eq!(r.sslmode, SslMode::Disable);
    assert_eq!(r.connect_timeout, Some(9));
    assert_eq!(r.application_name.as_deref(), Some("a"));
    // Defaults.
    let r = ConnParams::default()
        .resolve_with(None, &MapEnv::new().os_user("osuser"))
        .unwrap();
    assert_eq!(
        (r.host.as_str(), r.port, r.user.as_str(), r.dbname.as_str()),
        ("localhost", 5432, "osuser", "osuser")
    );
    assert_eq!(r.sslmode, SslMode::Prefer);
    assert_eq!(r.password, None);
    assert_eq!(r.connect_timeout, None);
    assert_eq!(r.addr(), "localhost:5432");
}

#[test]
fn env_errors() {
    let e = ConnParams::default()
        .resolve_with(None, &MapEnv::new().os_user("u").var("PGPORT", "x"))
        .unwrap_err();
    assert_eq!(e, "PGPORT: invalid port number (expected 1-65535)");
    let e = ConnParams::default()
        .resolve_with(None, &MapEnv::new().os_user("u").var("PGSSLMODE", "on"))
        .unwrap_err();
    assert!(e.starts_with("PGSSLMODE: invalid sslmode"), "{e}");
    let e = ConnParams::default()
        .resolve_with(None, &MapEnv::new())
        .unwrap_err();
    assert!(e.contains("PGUSER"), "{e}");
}

#[test]
fn password_precedence() {
    let dir = tempfile::tempdir().unwrap();
    write_600(&dir.path().join(".pgpass"), "*:*:*:*:frompass\n");
    let env = MapEnv::new().os_user("u").home(dir.path());
    let r = ConnParams::default().resolve_with(None, &env).unwrap();
    assert_eq!(r.password.as_deref(), Some("frompass"));
    assert_eq!(r.password_source, Some(PasswordSource::PassFile));
    let env2 = env.clone().var("PGPASSWORD", "fromenv");
    let r = ConnParams::default().resolve_with(None, &env2).unwrap();
    assert_eq!(r.password.as_deref(), Some("fromenv"));
    let r = ConnParams::parse("password=explicit")
        .unwrap()
        .resolve_with(None, &env2)
        .unwrap();
    assert_eq!(r.password.as_deref(), Some("explicit"));
    assert_eq!(r.password_source, Some(PasswordSource::Explicit));
    // PGPASSFILE beats ~/.pgpass.
    let other = dir.path().join("other");
    write_600(&other, "localhost:5432:u:u:fromother\n");
    let r = ConnParams::default()
        .resolve_with(
            None,
            &env.clone().var("PGPASSFILE", other.to_str().unwrap()),
        )
        .unwrap();
    assert_eq!(r.password.as_deref(), Some("fromother"));
    // The debug output hides it.
    assert!(!format!("{r:?}").contains("fromother"));
}

fn write_600(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn pgpass_matching() {
    let text = "# comment\n\
                    db1.example:5432:eden:alice:pw1\n\
                    *:5433:*:alice:pw2\n\
                    weird\\:host:*:*:*:p\\:w\\\\3\n\
                    *:*:*:bob:pass:with:colons\n\
                    \n\
                    *:*:*:*:fallback\n";
    assert_eq!(
        pgpass_lookup(text, "db1.example", "5432", "eden", "alice").as_deref(),
        Some("pw1")
    );
    assert_eq!(
        pgpass_lookup(text, "db2.example", "5433", "x", "alice").as_deref(),
        Some("pw2")
    );
    assert_eq!(
        pgpass_lookup(text, "weird:host", "1", "d", "u").as_deref(),
        Some("p:w\\3")
    );
    // An unescaped ':' ends the password (libpq).
    assert_eq!(
        pgpass_lookup(text, "h", "1", "d", "bob").as_deref(),
        Some("pass")
    );
    assert_eq!(
        pgpass_lookup(text, "db1.example", "5432", "eden", "carol").as_deref(),
        Some("fallback")
    );
    // Prefixes don't match.
    assert_eq!(
        pgpass_lookup(
            "db1:5432:eden:alice:x\n",
            "db1.example",
            "5432",
            "eden",
            "alice"
        ),
        None
    );
    assert_eq!(
        pgpass_lookup(
            "db1.example:5432:eden:alice:x\n",
            "db1",
            "5432",
            "eden",
            "alice"
        ),
        None
    );
    // Windows line ends.
    assert_eq!(
        pgpass_lookup("*:*:*:*:crlf\r\n", "h", "1", "d", "u").as_deref(),
        Some("crlf")
    );
    // A '*' only acts as a wildcard for the whole field.
    assert_eq!(pgpass_lookup("db*:*:*:*:x\n", "db1", "1", "d", "u"), None);
}

#[test]
fn pgpass_permissions_and_socket_host() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("pgpass");
    std::fs::write(&f, "localhost:5432:d:u:pw\n").unwrap();
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(password_from_file(&f, "localhost", "5432", "d", "u"), None);
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(password_from_file(&f, "localhost", "5432", "d", "u"), None);
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(
        password_from_file(&f, "localhost", "5432", "d", "u").as_deref(),
        Some("pw")
    );
    // A directory is not a password file.
    assert_eq!(
        password_from_file(dir.path(), "localhost", "5432", "d", "u"),
        None
    );
    // The default socket directory is looked up as localhost.
    let env = MapEnv::new()
        .os_user("u")
        .var("PGPASSFILE", f.to_str().unwrap());
    let r = ConnParams::parse("host=/var/run/postgresql dbname=d")
        .unwrap()
        .resolve_with(None, &env)
        .unwrap();
    assert_eq!(r.password.as_deref(), Some("pw"));
}

#[test]
fn redaction() {
    assert_eq!(
        redact("postgres://u:pw@h:1/db?sslmode=require&password=x"),
        "postgres://u:********@h:1/db?sslmode=require&password=********"
    );
    assert_eq!(redact("postgres://h/db"), "postgres://h/db");
    assert_eq!(redact("host=h password=secret"), "host=h password=********");
    assert_eq!(
        redact(r"password = 'a\'b c' host=h"),
        "password=******** host=h"
    );
    assert!(!format!("{:?}", ConnParams::parse("password=zz").unwrap()).contains("zz"));
}

fn quote_kv(v: &str) -> String {
    let mut q = String::from("'");
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('\'');
    q
}

fn pct(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

proptest::proptest! {
    #[test]
    fn keyvalue_round_trip(user in "[^\\x00]{1,12}", pw in "[^\\x00]{1,12}", db in "[^\\x00]{1,12}", port in 1u16..) {
        let ci = format!("host=h port={port} user={} password={} dbname={}", quote_kv(&user), quote_kv(&pw), quote_kv(&db));
        let p = ConnParams::parse_keyvalue(&ci).unwrap();
        proptest::prop_assert_eq!(p.user.as_deref(), Some(user.as_str()));
        proptest::prop_assert_eq!(p.password.as_deref(), Some(pw.as_str()));
        proptest::prop_assert_eq!(p.dbname.as_deref(), Some(db.as_str()));
        proptest::prop_assert_eq!(p.port, Some(port));
    }

    #[test]
    fn url_round_trip(user in "[^\\x00]{1,12}", pw in "[^\\x00]{1,12}", db in "[^\\x00]{1,12}", host in "[a-z0-9.-]{1,20}", port in 1u16..) {
        let url = format!("postgresql://{}:{}@{host}:{port}/{}?application_name={}", pct(&user), pct(&pw), pct(&db), pct(&db));
        let p = ConnParams::parse(&url).unwrap();
        proptest::prop_assert_eq!(p.user.as_deref(), Some(user.as_str()));
        proptest::prop_assert_eq!(p.password.as_deref(), Some(pw.as_str()));
        proptest::prop_assert_eq!(p.dbname.as_deref(), Some(db.as_str()));
        proptest::prop_assert_eq!(p.application_name.as_deref(), Some(db.as_str()));
        proptest::prop_assert_eq!(p.host.as_deref(), Some(host.as_str()));
        proptest::prop_assert_eq!(p.port, Some(port));
    }

    #[test]
    fn redaction_hides_password(pw in "ZQ[a-zA-Z0-9 '\\\\]{2,12}", rest in "[a-y0-9]{1,8}") {
        let kv = format!("host={rest} password={} user={rest}", quote_kv(&pw));
        proptest::prop_assert!(!redact(&kv).contains(&pw));
        let url = format!("postgres://{rest}:{}@{rest}/{rest}?password={}", pct(&pw), pct(&pw));
        let r = redact(&url);
        proptest::prop_assert!(!r.contains(&pw) && !r.contains(&pct(&pw)), "{}", r);
    }

    #[test]
    fn parse_never_panics_nor_leaks(text in ".{0,60}") {
        let with_pw = format!("{text} password=ZQsecretZQ {text}");
        if let Err(e) = ConnParams::parse(&with_pw) {
            proptest::prop_assert!(!e.contains("ZQsecretZQ"), "{}", e);
        }
        let url = format!("postgres://u:ZQsecretZQ@{text}");
        if let Err(e) = ConnParams::parse(&url) {
            proptest::prop_assert!(!e.contains("ZQsecretZQ"), "{}", e);
        }
    }
}
