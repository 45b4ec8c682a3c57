//! `conflicts import`: conflicts that the replication engine resolved itself, copied into
//! `replication_conflicts`.
//!
//! * pglogical: a REAL two-way pglogical pair whose subscriptions resolve real conflicts
//!   (update_update, insert_insert, update_delete, delete_delete), logging them with
//!   `pglogical.conflict_log_level = log` through the logging collector, once per log
//!   format (csvlog, jsonlog, stderr). The import reads the log through SQL only.
//! * Spock: the extension is not packaged for this machine, so the test creates
//!   `spock.resolutions` with Spock's own column layout (spock 4/5/6 `sql/spock--*.sql`)
//!   in a test database and fills it the way Spock's apply worker does.

use eden_consistency::conflicts;
use eden_consistency::{UndoOptions, undo_run_on};
use eden_consistency::{
    conflicts::ImportOptions, conflicts::RegionImport, conflicts::import_region,
};
use eden_test_util::TestDbs;
use eden_test_util::pglogical::{DB, Pair};
use serde_json::{Value, json};

fn opts(run: &str, others: &[&str]) -> ImportOptions {
    ImportOptions {
        table: conflicts::table_name(None),
        since: None,
        run_id: run.to_string(),
        other_regions: others.iter().map(|s| s.to_string()).collect(),
    }
}

fn imported(r: &RegionImport, source: &str) -> (usize, usize) {
    r.sources
        .iter()
        .find(|s| s.source == source)
        .map(|s| (s.found, s.imported))
        .unwrap_or_else(|| panic!("no {source} in {r:?}"))
}

/// Records imported into region `n`: "conflict_type|key|decided_by|winner", sorted.
fn records(n: &eden_test_util::pglogical::Node) -> Vec<String> {
    let out = n.sql(
        "SELECT concat_ws('|', conflict_type, key::text, decided_by, winner_region) FROM replication_conflicts \
         WHERE source = 'pglogical-log' ORDER BY 1",
    );
    out.lines().map(str::to_string).collect()
}

/// Starts the pair logging in `format`, makes pglogical resolve three kinds of conflict,
/// imports them in both regions, imports again, and checks what was recorded.
async fn pglogical_import(format: &str) {
    let dest = format!("'{format}'");
    let pair = Pair::start_clusters_with(&[
        ("logging_collector", "on"),
        ("log_destination", &dest),
        ("log_directory", "'log'"),
        ("log_filename", "'postgresql-%Y%m%d_%H%M%S.log'"),
        ("pglogical.conflict_log_level", "'log'"),
    ]);
    for n in pair.nodes() {
        let client = n.cluster.client(DB).await;
        conflicts::init(&client, n.region, &conflicts::table_name(None))
            .await
            .expect("create replication_conflicts");
    }
    pair.replicate();
    // Each region keeps its own records: take the tool's table out of the fixture's set.
    for n in pair.nodes() {
        n.sql("SELECT pglogical.replication_set_remove_table('eden_set', 'public.replication_conflicts')");
    }
    let (a, b) = (&pair.a, &pair.b);
    // b stops hearing from a; both regions change the same rows.
    pair.pause(b);
    let long = format!("east-{}", "x".repeat(60));
    a.sql(&format!(
        "UPDATE vault_secrets SET secret = '{long}' WHERE id = 1; \
         INSERT INTO vault_secrets (id, secret) VALUES (1000, 'east'); \
         UPDATE vault_secrets SET secret = 'east-2' WHERE id = 2; \
         DELETE FROM vault_secrets WHERE id = 5"
    ));
    b.sql(
        "UPDATE vault_secrets SET secret = 'west' WHERE id = 1; \
         INSERT INTO vault_secrets (id, secret) VALUES (1000, 'west'); \
         DELETE FROM vault_secrets WHERE id = 2; \
         DELETE FROM vault_secrets WHERE id = 5",
    );
    b.sent_everything(); // a has applied b's changes: update_update and insert_insert in a
    pair.resume(b);
    a.sent_everything(); // b has applied a's: update_update, insert_insert, update_delete, delete_delete in b

    // The collector writes asynchronously: import until every conflict is there.
    let ca = a.cluster.client(DB).await;
    let cb = b.cluster.client(DB).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let (mut ra, mut rb);
    loop {
        ra = import_region(&ca, a.region, &opts("imp-1", &[b.region]))
            .await
            .expect("import in a");
        rb = import_region(&cb, b.region, &opts("imp-1", &[a.region]))
            .await
            .expect("import in b");
        if records(a).len() >= 3 && records(b).len() >= 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "conflicts not all imported: a {ra:?} {:?}, b {rb:?} {:?}\n--- b log ---\n{}",
            records(a),
            records(b),
            b.sql("SELECT string_agg(name, ', ') FROM pg_ls_logdir()")
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(
        ra.problems.is_empty() && rb.problems.is_empty(),
        "{ra:?} {rb:?}"
    );
    assert_eq!(
        records(a),
        vec![
            format!("delete_delete|{{\"id\": 5}}|pglogical:skip|{}", a.region),
            format!(
                "insert_insert|{{\"id\": 1000}}|pglogical:apply_remote|{}",
                b.region
            ),
            format!(
                "update_update|{{\"id\": 1}}|pglogical:apply_remote|{}",
                b.region
            ),
        ],
        "format {format}"
    );
    assert_eq!(
        records(b),
        vec![
            format!("delete_delete|{{\"id\": 5}}|pglogical:skip|{}", b.region),
            format!(
                "insert_insert|{{\"id\": 1000}}|pglogical:apply_remote|{}",
                a.region
            ),
            format!("update_delete|{{\"id\": 2}}|pglogical:skip|{}", b.region),
            format!(
                "update_update|{{\"id\": 1}}|pglogical:apply_remote|{}",
                a.region
            ),
        ],
        "format {format}"
    );
    // Every record: resolved, partial, source and position set, the engine's resolution.
    let rows = b.sql(
        "SELECT json_agg(json_build_object('resolved', resolved_at IS NOT NULL, 'source', source, \
                'position', source_position, 'resolution', resolution, 'details', details, \
                'local_region', local_region, 'remote_region', remote_region, \
                'local_row', local_row, 'remote_row', remote_row, 'type', conflict_type) ORDER BY id) \
         FROM replication_conflicts",
    );
    let rows: Value = serde_json::from_str(&rows).unwrap();
    for r in rows.as_array().unwrap() {
        assert_eq!(r["resolved"], json!(true), "{r}");
        assert_eq!(r["source"], json!("pglogical-log"));
        assert_eq!(r["local_region"], json!(b.region));
        assert_eq!(r["remote_region"], json!(a.region));
        assert_eq!(r["details"]["partial"], json!(true));
        let pos = r["position"].as_str().unwrap();
        let file = r["details"]["log_file"].as_str().unwrap();
        assert!(pos.starts_with(&format!("{file}:")), "{pos}");
        let ext = match format {
            "csvlog" => ".csv",
            "jsonlog" => ".json",
            _ => ".log",
        };
        assert!(file.ends_with(ext), "{file} for {format}");
    }
    // The long value was cut by pglogical: marked as truncated, never taken as the value.
    let uu = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == json!("update_update"))
        .unwrap();
    assert_eq!(
        uu["details"]["truncated"],
        json!(["remote_row.secret"]),
        "{uu}"
    );
    assert_eq!(uu["local_row"]["secret"], json!("west"));
    assert!(
        uu["remote_row"]["secret"]
            .as_str()
            .unwrap()
            .ends_with("..."),
        "{uu}"
    );
    let ud = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == json!("update_delete"))
        .unwrap();
    assert_eq!(ud["local_row"], Value::Null);
    assert_eq!(ud["remote_row"]["secret"], json!("east-2"));

    // Importing again adds nothing.
    let again = import_region(&cb, b.region, &opts("imp-2", &[a.region]))
        .await
        .unwrap();
    let (found, added) = imported(&again, "pglogical-log");
    assert_eq!((found, added), (4, 0), "{again:?}");
    let again = import_region(&ca, a.region, &opts("imp-2", &[b.region]))
        .await
        .unwrap();
    assert_eq!(imported(&again, "pglogical-log"), (3, 0));
    assert_eq!(records(b).len(), 4);

    // Another database of the same cluster, with pglogical and a table of the same name
    // but no subscription: the shared log's conflicts are not its own, none is imported.
    b.sql_in("postgres", "CREATE DATABASE other_db");
    b.sql_in(
        "other_db",
        "CREATE EXTENSION pglogical; CREATE TABLE public.vault_secrets (id int PRIMARY KEY, secret text, last_updated_at timestamptz); \
         CREATE TABLE public.tenants (id int PRIMARY KEY, name text)",
    );
    let other = b.cluster.client("other_db").await;
    let r = import_region(&other, b.region, &opts("imp-3", &[a.region]))
        .await
        .unwrap();
    assert_eq!(imported(&r, "pglogical-log"), (0, 0), "{r:?}");

    // Imported records are never used to repair: undo of the import run finds nothing.
    let res = undo_run_on(
        &[&ca, &cb],
        &[a.region.to_string(), b.region.to_string()],
        &UndoOptions {
            run_id: "imp-1".into(),
            dry_run: true,
            apply: Default::default(),
        },
    )
    .await;
    let msg = format!("{res:?}");
    assert!(
        res.is_err() && msg.contains("no change of run imp-1"),
        "undo used imported records: {msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pglogical_conflicts_import_from_csvlog() {
    pglogical_import("csvlog").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pglogical_conflicts_import_from_jsonlog() {
    pglogical_import("jsonlog").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pglogical_conflicts_import_from_stderr_log() {
    pglogical_import("stderr").await;
}

/// Spock's table, as created by the extension (spock `sql/spock--6.0.0.sql`).
const SPOCK_RESOLUTIONS: &str = "
CREATE SCHEMA spock;
CREATE TABLE spock.resolutions (
    id int generated always as identity,
    node_name name NOT NULL,
    log_time timestamptz NOT NULL,
    relname text,
    idxname text,
    conflict_type text,
    conflict_resolution text,
    local_origin int,
    local_tuple text,
    local_xid xid,
    local_timestamp timestamptz,
    remote_origin int,
    remote_tuple text,
    remote_xid xid,
    remote_timestamp timestamptz,
    remote_lsn pg_lsn,
    PRIMARY KEY (id, node_name)
);";

#[tokio::test(flavor = "multi_thread")]
async fn spock_resolutions_import_once() {
    let dbs = TestDbs::new_named("import_spock", &["us-east-1"]).await;
    dbs.exec(0, SPOCK_RESOLUTIONS).await;
    dbs.exec(
        0,
        "CREATE TABLE public.accounts (id int PRIMARY KEY, owner text);
         INSERT INTO spock.resolutions (node_name, log_time, relname, idxname, conflict_type, conflict_resolution,
                local_origin, local_tuple, local_xid, local_timestamp, remote_origin, remote_tuple, remote_xid,
                remote_timestamp, remote_lsn)
         VALUES ('n1', now() - interval '2 hours', 'public.accounts', 'accounts_pkey', 'update_origin_differs', 'apply_remote',
                 0, '{\"id\": 5, \"owner\": \"east\"}', '750', now() - interval '3 hours', 1,
                 '{\"id\": 5, \"owner\": \"west\"}', '990', now() - interval '2 hours', '0/16B3F48'),
                ('n1', now() - interval '10 days', 'public.accounts', 'accounts_pkey', 'insert_exists', 'keep_local',
                 0, '{\"id\": 6, \"owner\": \"e\"}', '751', now(), 1, '{\"id\": 6, \"owner\": \"w\"}', '991', now(), '0/16B3F50');",
    )
    .await;
    let client = dbs.client(0).await;
    let mut o = opts("spock-1", &["us-west-2"]);
    o.since = Some(chrono::Utc::now() - chrono::Duration::days(1));
    let r = import_region(&client, "us-east-1", &o).await.unwrap();
    assert_eq!(imported(&r, "spock"), (1, 1), "{r:?}");
    o.since = None;
    let r = import_region(&client, "us-east-1", &o).await.unwrap();
    assert_eq!(imported(&r, "spock"), (2, 1), "{r:?}");
    let r = import_region(&client, "us-east-1", &o).await.unwrap();
    assert_eq!(imported(&r, "spock"), (2, 0), "{r:?}");
    let rows = dbs
        .query_texts(
            0,
            "SELECT concat_ws('|', table_name, key::text, conflict_type, decided_by, winner_region, source, \
                    source_position, local_row->>'owner', remote_row->>'owner', resolved_at IS NOT NULL, \
                    details->>'remote_lsn') \
             FROM replication_conflicts ORDER BY created_at",
        )
        .await;
    let rows: Vec<String> = rows.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0].starts_with(
            "public.accounts|{\"id\": 6}|insert_exists|spock:keep_local|us-east-1|spock|n1:"
        ),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].starts_with("public.accounts|{\"id\": 5}|update_origin_differs|spock:apply_remote|us-west-2|spock|n1:"),
        "{}",
        rows[1]
    );
    assert!(rows[1].ends_with("|east|west|t|0/16B3F48"), "{}", rows[1]);
}
