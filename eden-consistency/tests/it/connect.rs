//! Connecting to real servers: session settings, failures and their messages, TLS.

use std::time::{Duration, Instant};

use eden_consistency::Config;
use eden_consistency::Error;
use eden_consistency::{ConnectOptions, connect_all};
use eden_test_util::{ClusterOptions, TestCluster, TestDbs};

fn config(flags: &[String]) -> Config {
    let mut cfg = Config::default();
    for f in flags {
        cfg.apply_region_flag(f).unwrap();
    }
    cfg
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn show(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn connect_session_settings_in_force() {
    let dbs = TestDbs::new("connect_session_settings_in_force", 2).await;
    let cfg = config(&[
        format!("r1={}", dbs.url(0)),
        // The URL's database wins over --db; application_name from the conninfo wins.
        format!("r2={}?application_name=custom-app", dbs.url(1)),
    ]);
    let opts = ConnectOptions {
        statement_timeout: Some(Duration::from_secs(42)),
        ..Default::default()
    };
    let regions = connect_all(&cfg, Some("ignored_db"), &opts).await.unwrap();
    assert_eq!(regions.len(), 2);
    assert_eq!((regions[0].name.as_str(), regions[0].index), ("r1", 0));
    assert_eq!((regions[1].name.as_str(), regions[1].index), ("r2", 1));
    assert_eq!(regions[0].addr, "127.0.0.1:5432");
    assert_eq!(regions[0].dbname, dbs.name(0));
    assert_eq!(regions[1].dbname, dbs.name(1));
    let c = &regions[0].client;
    assert_eq!(show(c, "TimeZone").await, "UTC");
    assert!(show(c, "DateStyle").await.starts_with("ISO"));
    assert_eq!(show(c, "IntervalStyle").await, "postgres");
    assert_eq!(show(c, "extra_float_digits").await, "3");
    assert_eq!(show(c, "bytea_output").await, "hex");
    assert_eq!(show(c, "statement_timeout").await, "42s");
    assert_eq!(show(c, "lock_timeout").await, "10s");
    assert_eq!(show(c, "application_name").await, "eden-reconcile");
    assert_eq!(
        show(&regions[1].client, "application_name").await,
        "custom-app"
    );
    let db: String = c
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, dbs.name(0));
    // A second session to the same place, same settings.
    let other = regions[1].open_another().await.unwrap();
    let db: String = other
        .query_one("SELECT current_database()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(db, dbs.name(1));
    assert_eq!(show(&other, "TimeZone").await, "UTC");
    assert_eq!(show(&other, "statement_timeout").await, "42s");
}

#[tokio::test]
async fn connect_db_flag_used_when_url_has_none() {
    let dbs = TestDbs::new("connect_db_flag_used_when_url_has_none", 1).await;
    let cfg = config(&["r1=host=127.0.0.1 port=5432 user=postgres".to_string()]);
    let regions = connect_all(&cfg, Some(dbs.name(0)), &ConnectOptions::default())
        .await
        .unwrap();
    assert_eq!(regions[0].dbname, dbs.name(0));
}

#[tokio::test]
async fn connect_refused_port() {
    let port = free_port();
    let cfg = config(&[format!(
        "east=postgres://postgres:hunter2@127.0.0.1:{port}/x"
    )]);
    let start = Instant::now();
    let err = connect_all(&cfg, None, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(err.is_connection());
    assert_eq!(
        err.to_string(),
        format!("region east (127.0.0.1:{port}): connection refused")
    );
}

#[tokio::test]
async fn connect_times_out() {
    // A listener that never answers: the TCP handshake completes (backlog), login never does.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = config(&[format!(
        "slow=host=127.0.0.1 port={port} user=postgres dbname=x"
    )]);
    let opts = ConnectOptions {
        timeout: Duration::from_millis(700),
        ..Default::default()
    };
    let start = Instant::now();
    let err = connect_all(&cfg, None, &opts).await.unwrap_err();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("region slow (127.0.0.1:{port}): timed out after 700ms")
    );
    // connect_timeout in the conninfo wins over the option (and 1 counts as 2, like libpq).
    let cfg = config(&[format!(
        "slow=host=127.0.0.1 port={port} user=postgres dbname=x connect_timeout=1"
    )]);
    let start = Instant::now();
    let err = connect_all(&cfg, None, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(4));
    assert!(err.to_string().ends_with("timed out after 2s"), "{err}");
    drop(listener);
}

#[tokio::test]
async fn connect_missing_database() {
    let cfg = config(&["r1=postgres://postgres@127.0.0.1:5432".to_string()]);
    let err = connect_all(&cfg, Some("eden_no_such_db_x"), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "region r1 (127.0.0.1:5432): database \"eden_no_such_db_x\" does not exist"
    );
}

#[tokio::test]
async fn connect_error_of_first_region_in_config_order() {
    // r1 times out (slow), r2 is refused at once: r1's error is reported all the same.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = listener.local_addr().unwrap().port();
    let refused = free_port();
    let dbs = TestDbs::new("connect_error_of_first_region_in_config_order", 1).await;
    let cfg = config(&[
        format!("r0={}", dbs.url(0)),
        format!("r1=host=127.0.0.1 port={slow} user=postgres dbname=x"),
        format!("r2=host=127.0.0.1 port={refused} user=postgres dbname=x"),
    ]);
    let opts = ConnectOptions {
        timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let err = connect_all(&cfg, None, &opts).await.unwrap_err();
    assert_eq!(err.region(), Some("r1"), "{err}");
    drop(listener);
}

#[tokio::test]
async fn connect_no_regions() {
    let err = connect_all(&Config::default(), Some("x"), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Usage(_)));
    assert_eq!(
        err.to_string(),
        "no regions to connect to: give --config FILE (or set EDEN_RECONCILE_CONFIG) or --region NAME=CONNINFO"
    );
}

#[tokio::test]
async fn connect_unresolvable_host() {
    let cfg = config(&["r1=host=no-such-host.invalid user=postgres dbname=x".to_string()]);
    let err = connect_all(&cfg, None, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "region r1 (no-such-host.invalid:5432): cannot resolve host name \"no-such-host.invalid\""
    );
}

#[tokio::test]
async fn connect_password_auth() {
    let cluster = TestCluster::start(
        ClusterOptions::new()
            .password("Corr3ct-Horse")
            .hba_line("host all all 127.0.0.1/32 scram-sha-256"),
    );
    let port = cluster.port;
    let opts = ConnectOptions::default();
    // Right password: in.
    let cfg = config(&[format!(
        "pw=postgres://postgres:Corr3ct-Horse@127.0.0.1:{port}/postgres"
    )]);
    connect_all(&cfg, None, &opts).await.unwrap();
    // Wrong password: the server's message, never the password.
    let cfg = config(&[format!(
        "pw=postgres://postgres:WrongPass@127.0.0.1:{port}/postgres"
    )]);
    let e = connect_all(&cfg, None, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "region pw (127.0.0.1:{port}): password authentication failed for user \"postgres\" (password taken from the config or connection string)"
        )
    );
    assert!(!e.contains("WrongPass"));
    // No password at all (the test runs with whatever PG* the environment has; give an
    // explicit empty user-less conninfo only when PGPASSWORD is not set).
    if std::env::var_os("PGPASSWORD").is_none() && std::env::var_os("PGPASSFILE").is_none() {
        let home_pgpass =
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass"));
        if !home_pgpass.is_some_and(|p| p.exists()) {
            let cfg = config(&[format!(
                "pw=host=127.0.0.1 port={port} user=postgres dbname=postgres"
            )]);
            let e = connect_all(&cfg, None, &opts)
                .await
                .unwrap_err()
                .to_string();
            assert!(e.ends_with("the server asks for a password and none was given; set it in the connection string, PGPASSWORD or ~/.pgpass"), "{e}");
        }
    }
    // Over the Unix socket (trusted there), addressed by directory.
    let sock = cluster.dir.path().join("sock");
    let cfg = config(&[format!(
        "unix=host={} port={port} user=postgres dbname=postgres",
        sock.display()
    )]);
    let r = connect_all(&cfg, None, &opts).await.unwrap();
    assert_eq!(r[0].addr, format!("{}:{port}", sock.display()));
    assert_eq!(show(&r[0].client, "TimeZone").await, "UTC");
    // sslmode=require against a server without TLS.
    let cfg = config(&[format!(
        "pw=postgres://postgres:Corr3ct-Horse@127.0.0.1:{port}/postgres?sslmode=require"
    )]);
    let e = connect_all(&cfg, None, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "region pw (127.0.0.1:{port}): the server does not accept TLS, which sslmode=require requires; turn ssl on in the server or use sslmode=prefer"
        )
    );
}

/// A second, unrelated CA: its certificate verifies nothing the cluster presents.
fn other_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            "other.key",
            "-out",
            "other.crt",
            "-subj",
            "/CN=other-ca",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join("other.crt")
}

async fn ssl_in_use(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn connect_tls_modes() {
    // TLS sessions log in with SCRAM (channel binding over rustls), plain ones are trusted.
    let cluster = TestCluster::start(
        ClusterOptions::new()
            .ssl()
            .password("Tls-Pw-4u")
            .hba_line("hostssl all all 127.0.0.1/32 scram-sha-256"),
    );
    let port = cluster.port;
    let ca = cluster.ca_cert_path().unwrap();
    let ca = ca.display();
    let opts = ConnectOptions::default();
    let connect = |conninfo: String| {
        let cfg = config(&[format!("tls={conninfo}")]);
        let opts = opts.clone();
        async move {
            connect_all(&cfg, None, &opts)
                .await
                .map(|mut v| v.remove(0))
        }
    };
    let base =
        format!("host=127.0.0.1 port={port} user=postgres password=Tls-Pw-4u dbname=postgres");

    let r = connect(format!("{base} sslmode=disable")).await.unwrap();
    assert!(!ssl_in_use(&r.client).await);
    let r = connect(format!("{base} sslmode=prefer")).await.unwrap();
    assert!(ssl_in_use(&r.client).await);
    // Over TLS the password is required (hostssl ... scram-sha-256).
    let e = connect(format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres password=nope sslmode=require"
    ))
    .await
    .unwrap_err()
    .to_string();
    assert!(e.ends_with("password authentication failed for user \"postgres\" (password taken from the config or connection string)"), "{e}");
    // require: encrypted, certificate not verified (self-made CA unknown here).
    let r = connect(format!("{base} sslmode=require")).await.unwrap();
    assert!(ssl_in_use(&r.client).await);
    // verify-ca: the chain is checked, the host name is not.
    let r = connect(format!("{base} sslmode=verify-ca sslrootcert={ca}"))
        .await
        .unwrap();
    assert!(ssl_in_use(&r.client).await);
    let r = connect(format!("host=wrong.example hostaddr=127.0.0.1 port={port} user=postgres password=Tls-Pw-4u dbname=postgres sslmode=verify-ca sslrootcert={ca}"))
        .await
        .unwrap();
    assert!(ssl_in_use(&r.client).await);
    // verify-full: chain and host name (the certificate names 127.0.0.1 and localhost).
    let r = connect(format!("{base} sslmode=verify-full sslrootcert={ca}"))
        .await
        .unwrap();
    assert!(ssl_in_use(&r.client).await);
    let r = connect(format!("host=localhost hostaddr=127.0.0.1 port={port} user=postgres password=Tls-Pw-4u dbname=postgres sslmode=verify-full sslrootcert={ca}"))
        .await
        .unwrap();
    assert!(ssl_in_use(&r.client).await);
    let e = connect(format!("host=wrong.example hostaddr=127.0.0.1 port={port} user=postgres password=Tls-Pw-4u dbname=postgres sslmode=verify-full sslrootcert={ca}"))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        format!(
            "region tls (wrong.example:{port}): TLS: the server's certificate is not valid for host name \"wrong.example\" (sslmode=verify-full); connect with a name the certificate lists, or use sslmode=verify-ca"
        )
    );
    // A root that did not sign the server's certificate.
    let tmp = tempfile::tempdir().unwrap();
    let other = other_ca(tmp.path());
    for mode in ["verify-ca", "verify-full", "require"] {
        let e = connect(format!(
            "{base} sslmode={mode} sslrootcert={}",
            other.display()
        ))
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            format!(
                "region tls (127.0.0.1:{port}): TLS: the server's certificate is not signed by a trusted root (sslrootcert \"{}\")",
                other.display()
            ),
            "{mode}"
        );
    }
    // verify-full without any root certificate.
    let e = connect(format!("{base} sslmode=verify-full sslrootcert=")).await;
    if let Err(e) = e {
        // (Passes when no ~/.postgresql/root.crt exists on this machine.)
        assert!(
            e.to_string().contains("needs a root certificate") || e.to_string().contains("TLS"),
            "{e}"
        );
    }
    // Web roots do not know the test CA.
    let e = connect(format!("{base} sslmode=verify-full sslrootcert=system"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not signed by a trusted root"), "{e}");
}

/// Runs [`connect_process_env_child`] in a child process with `envs` (and no inherited
/// `PG*` variables, `HOME` an empty directory unless given): the real process environment
/// is read there, without touching this process's.
fn child(region_spec: &str, envs: &[(&str, &str)]) -> String {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "connect::connect_process_env_child",
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("HOME", home.path())
        .env("EDEN_CONNECT_CHILD_REGION", region_spec);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split_once("CHILD: ").map(|(_, rest)| rest))
        .unwrap_or_else(|| {
            panic!(
                "child said nothing:\n{stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string()
}

/// The child side of [`child`]; does nothing in a normal test run.
#[tokio::test]
async fn connect_process_env_child() {
    let Ok(spec) = std::env::var("EDEN_CONNECT_CHILD_REGION") else {
        return;
    };
    let cfg = config(&[spec]);
    match connect_all(&cfg, None, &ConnectOptions::default()).await {
        Ok(r) => {
            let c = &r[0].client;
            println!(
                "CHILD: ok db={} user={} app={}",
                r[0].dbname,
                r[0].user(),
                show(c, "application_name").await
            );
        }
        Err(e) => println!("CHILD: {e}"),
    }
}

#[tokio::test]
async fn connect_env_variables() {
    let dbs = TestDbs::new("connect_env_variables", 1).await;
    let db = dbs.name(0);
    // PGHOST, PGPORT, PGUSER, PGDATABASE, PGAPPNAME fill what the conninfo leaves out.
    let got = child(
        "r1=sslmode=disable",
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", "5432"),
            ("PGUSER", "postgres"),
            ("PGDATABASE", db),
            ("PGAPPNAME", "from-env"),
        ],
    );
    assert_eq!(got, format!("ok db={db} user=postgres app=from-env"));
    // Explicit beats the environment.
    let got = child(
        &format!("r1=host=127.0.0.1 port=5432 user=postgres dbname={db} application_name=explicit"),
        &[
            ("PGHOST", "nowhere.invalid"),
            ("PGPORT", "1"),
            ("PGDATABASE", "nope"),
            ("PGAPPNAME", "from-env"),
        ],
    );
    assert_eq!(got, format!("ok db={db} user=postgres app=explicit"));
    // PGCONNECT_TIMEOUT applies; a bad PGPORT is named.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let slow = listener.local_addr().unwrap().port();
    let got = child(
        &format!("r1=host=127.0.0.1 port={slow} user=postgres dbname=x"),
        &[("PGCONNECT_TIMEOUT", "2")],
    );
    assert_eq!(
        got,
        format!("region r1 (127.0.0.1:{slow}): timed out after 2s")
    );
    let got = child(
        "r1=host=127.0.0.1 user=postgres dbname=x",
        &[("PGPORT", "fivefour")],
    );
    assert_eq!(
        got,
        "region r1 (127.0.0.1:5432): PGPORT: invalid port number (expected 1-65535)"
    );
}

#[tokio::test]
async fn connect_env_passwords() {
    let cluster = TestCluster::start(
        ClusterOptions::new()
            .password("Env-Right-9")
            .hba_line("host all all 127.0.0.1/32 scram-sha-256"),
    );
    let port = cluster.port;
    let spec = format!("r1=postgres://postgres@127.0.0.1:{port}/postgres");
    // PGPASSWORD.
    assert!(child(&spec, &[("PGPASSWORD", "Env-Right-9")]).starts_with("ok db=postgres"));
    // ~/.pgpass (0600), with a non-matching line first and an escaped ':' in another.
    let home = tempfile::tempdir().unwrap();
    let pgpass = home.path().join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("other\\:host:*:*:*:nope\n127.0.0.1:{}:*:someone:nope\n127.0.0.1:{port}:postgres:postgres:Env-Right-9\n", port),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let h = home.path().display().to_string();
    assert!(child(&spec, &[("HOME", &h)]).starts_with("ok db=postgres"));
    // PGPASSWORD beats the file.
    let got = child(&spec, &[("HOME", &h), ("PGPASSWORD", "Env-Wrong-1")]);
    assert!(got.ends_with("(password taken from PGPASSWORD)"), "{got}");
    // PGPASSFILE beats ~/.pgpass.
    let other = home.path().join("other.pass");
    std::fs::write(&other, "*:*:*:*:File-Wrong-2\n").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    let got = child(
        &spec,
        &[("HOME", &h), ("PGPASSFILE", &other.display().to_string())],
    );
    assert!(
        got.ends_with("(password taken from the password file)"),
        "{got}"
    );
    // A file others may read is ignored.
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o604)).unwrap();
    let got = child(&spec, &[("HOME", &h)]);
    assert!(got.ends_with("the server asks for a password and none was given; set it in the connection string, PGPASSWORD or ~/.pgpass"), "{got}");
}
