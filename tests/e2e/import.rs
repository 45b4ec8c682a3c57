//! `eden-reconcile conflicts import` against a real two-way pglogical pair that resolves
//! real conflicts and logs them in csvlog format (the logging collector on); then
//! `conflicts` lists the imported records with their source.

use std::time::{Duration, Instant};

use eden_test_util::pglogical::{DB, Pair};
use serde_json::Value;

use crate::common::{Run, run};

fn eden(pair: &Pair, args: &[&str]) -> Run {
    let mut v: Vec<String> = Vec::new();
    for n in pair.nodes() {
        v.push("--region".into());
        v.push(format!("{}={}", n.region, n.cluster.url(DB)));
    }
    v.extend(args.iter().map(|s| s.to_string()));
    v.extend(["--db".to_string(), DB.to_string()]);
    run(v)
}

#[test]
fn conflicts_import_lists_pglogical_resolutions() {
    let pair = Pair::start_clusters_with(&[
        ("logging_collector", "on"),
        ("log_destination", "'csvlog'"),
        ("pglogical.conflict_log_level", "'log'"),
    ]);
    eden(&pair, &["init"]).assert_code(0);
    pair.replicate();
    for n in pair.nodes() {
        n.sql("SELECT pglogical.replication_set_remove_table('eden_set', 'public.replication_conflicts')");
    }
    let (a, b) = (&pair.a, &pair.b);
    pair.pause(b);
    a.sql("UPDATE vault_secrets SET secret = 'from east' WHERE id = 3; INSERT INTO tenants VALUES (77, 'east')");
    b.sql("UPDATE vault_secrets SET secret = 'from west' WHERE id = 3; INSERT INTO tenants VALUES (77, 'west')");
    b.sent_everything();
    pair.resume(b);
    a.sent_everything();

    // Four conflicts (two per region); the collector writes them asynchronously.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut total = 0;
    while total < 4 {
        let r = eden(&pair, &["conflicts", "import", "--format", "json"]);
        r.assert_code(0);
        let j = r.json();
        total += j["regions"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r["sources"].as_array().unwrap())
            .map(|s| s["imported"].as_u64().unwrap() as usize)
            .sum::<usize>();
        assert!(Instant::now() < deadline, "only {total} imported: {j:#}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(total, 4);

    // Importing again adds nothing.
    let again = eden(&pair, &["conflicts", "import"]);
    again.assert_code(0);
    eprintln!("{}", again.stdout);
    assert!(
        again.stdout.contains("0 conflict record(s) imported"),
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("pglogical-log"), "{}", again.stdout);

    // `conflicts` lists them beside the tool's own, with their source.
    let list = eden(&pair, &["conflicts"]);
    list.assert_code(0);
    eprintln!("{}", list.stdout);
    assert!(list.stdout.contains("SOURCE"), "{}", list.stdout);
    assert_eq!(
        list.stdout.matches("pglogical-log").count(),
        4,
        "{}",
        list.stdout
    );
    assert!(list.stdout.contains("pglogical:apply_remote"));
    let json = eden(&pair, &["conflicts", "--format", "json", "--in", b.region]);
    json.assert_code(0);
    let rows: Vec<Value> = json.json()["conflicts"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["source"], "pglogical-log", "{r}");
        assert_eq!(r["decided_by"], "pglogical:apply_remote");
        assert_eq!(r["region"], b.region);
        assert!(r["source_position"].as_str().unwrap().contains(".csv:"));
        assert!(r["resolved_at"].is_string());
    }
    let mut types: Vec<&str> = rows
        .iter()
        .map(|r| r["conflict_type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["insert_insert", "update_update"]);

    // pglogical logging its conflicts below log_min_messages: a warning, still exit 0.
    b.sql("ALTER SYSTEM SET pglogical.conflict_log_level = 'debug1'");
    b.sql("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    let warned = eden(&pair, &["conflicts", "import", "--in", b.region]);
    warned.assert_code(0);
    assert!(
        warned
            .stderr
            .contains("warning: region us-west-2: pglogical.conflict_log_level is 'debug1'"),
        "{}",
        warned.stderr
    );

    b.sql("ALTER SYSTEM RESET pglogical.conflict_log_level");
    b.sql("SELECT pg_reload_conf()");

    // A region whose log cannot be read through SQL: exit 2, one sentence naming it.
    a.sql("ALTER SYSTEM SET log_destination = 'syslog'");
    a.sql("SELECT pg_reload_conf()");
    std::thread::sleep(Duration::from_millis(500));
    let bad = eden(&pair, &["conflicts", "import"]);
    bad.assert_code(2).assert_one_line_error();
    assert!(
        bad.stderr.contains("region us-east-1") && bad.stderr.contains("log_destination"),
        "{}",
        bad.stderr
    );
}
