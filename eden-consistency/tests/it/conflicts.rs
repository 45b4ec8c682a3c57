//! The replication_conflicts table against a real PostgreSQL.

use chrono::{Duration, Utc};
use eden_consistency::conflicts::{self, ConflictRecord, ListFilter};
use eden_test_util::TestDbs;
use serde_json::json;

fn rec(table: &str, id: i64, local: &str, resolved: bool) -> ConflictRecord {
    ConflictRecord {
        table_name: table.into(),
        key: json!({ "id": id }),
        conflict_type: "update_differs".into(),
        local_region: local.into(),
        remote_region: Some("other".into()),
        local_row: Some(json!({ "id": id, "v": "old" })),
        remote_row: Some(json!({ "id": id, "v": "new" })),
        resolution: Some("last_write_wins".into()),
        winner_region: Some("other".into()),
        decided_by: Some("last_updated_at".into()),
        resolved,
        run_id: "run-1".into(),
        action: resolved.then(|| "update".into()),
        changed_columns: Some(vec!["v".into()]),
        details: None,
    }
}

async fn columns(dbs: &TestDbs, i: usize, schema: &str) -> Vec<(String, String, bool)> {
    let c = dbs.client(i).await;
    c.query(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a \
         WHERE a.attrelid = (quote_ident($1) || '.replication_conflicts')::regclass AND a.attnum > 0 \
           AND NOT a.attisdropped ORDER BY a.attnum",
        &[&schema],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test]
async fn init_creates_contract_columns_and_is_idempotent() {
    let dbs = TestDbs::new("conflicts_init", 1).await;
    let c = dbs.client(0).await;
    let t = conflicts::table_name(None);
    assert!(!conflicts::exists(&c, "r1", &t).await.unwrap());
    assert!(conflicts::init(&c, "r1", &t).await.unwrap(), "created");
    assert!(
        !conflicts::init(&c, "r1", &t).await.unwrap(),
        "second run creates nothing"
    );
    assert!(conflicts::exists(&c, "r1", &t).await.unwrap());

    let cols = columns(&dbs, 0, "public").await;
    let get = |n: &str| {
        cols.iter()
            .find(|c| c.0 == n)
            .unwrap_or_else(|| panic!("column {n} missing: {cols:?}"))
            .clone()
    };
    for (name, ty, not_null) in [
        ("id", "bigint", true),
        ("created_at", "timestamp with time zone", true),
        ("table_name", "text", true),
        ("key", "jsonb", true),
        ("conflict_type", "text", true),
        ("local_region", "text", true),
        ("remote_region", "text", false),
        ("local_row", "jsonb", false),
        ("remote_row", "jsonb", false),
        ("resolution", "text", false),
        ("winner_region", "text", false),
        ("decided_by", "text", false),
        ("resolved_at", "timestamp with time zone", false),
        ("run_id", "text", false),
    ] {
        assert_eq!(
            get(name),
            (name.to_string(), ty.to_string(), not_null),
            "{name}"
        );
    }
    // bigserial primary key; created_at defaults to now().
    let pk: Vec<Option<String>> = dbs
        .query_texts(
            0,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint \
             WHERE conrelid = 'public.replication_conflicts'::regclass AND contype = 'p'",
        )
        .await;
    assert_eq!(pk, vec![Some("PRIMARY KEY (id)".into())]);
    dbs.exec(0, "INSERT INTO replication_conflicts (table_name, key, conflict_type, local_region) VALUES ('public.t', '{}', 'x', 'r1')").await;
    let d = dbs
        .query_texts(
            0,
            "SELECT (created_at > now() - interval '1 minute')::text FROM replication_conflicts",
        )
        .await;
    assert_eq!(d, vec![Some("true".into())]);
    let idx = dbs
        .query_texts(0, "SELECT indexdef FROM pg_indexes WHERE tablename = 'replication_conflicts' ORDER BY indexname")
        .await;
    // pkey, table/created, created, unresolved, run_id, and the unique (source,
    // source_position) index that makes `conflicts import` idempotent.
    assert_eq!(idx.len(), 6, "{idx:?}");
    assert!(
        idx.iter()
            .flatten()
            .any(|d| d.contains("UNIQUE INDEX") && d.contains("(source, source_position)")),
        "{idx:?}"
    );
    assert!(
        idx.iter()
            .flatten()
            .any(|d| d.contains("WHERE (resolved_at IS NULL)")),
        "{idx:?}"
    );
}

#[tokio::test]
async fn init_in_a_configured_schema() {
    let dbs = TestDbs::new("conflicts_init_schema", 1).await;
    let c = dbs.client(0).await;
    let t = conflicts::table_name(Some("Eden Audit"));
    assert!(conflicts::init(&c, "r1", &t).await.unwrap());
    assert!(!conflicts::init(&c, "r1", &t).await.unwrap());
    assert!(!columns(&dbs, 0, "Eden Audit").await.is_empty());
    assert!(
        !conflicts::exists(&c, "r1", &conflicts::table_name(None))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn init_concurrently() {
    let dbs = TestDbs::new("conflicts_init_concurrent", 1).await;
    let t = conflicts::table_name(None);
    for _round in 0..3 {
        dbs.exec(0, "DROP TABLE IF EXISTS replication_conflicts")
            .await;
        let (a, b) = (dbs.client(0).await, dbs.client(0).await);
        let (ra, rb) = tokio::join!(conflicts::init(&a, "r1", &t), conflicts::init(&b, "r1", &t));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(ra ^ rb, "exactly one created it: {ra} {rb}");
    }
}

#[tokio::test]
async fn init_upgrades_an_older_table() {
    let dbs = TestDbs::new("conflicts_init_upgrade", 1).await;
    dbs.exec(
        0,
        "CREATE TABLE replication_conflicts (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), \
         table_name text NOT NULL, key jsonb NOT NULL, conflict_type text NOT NULL, local_region text NOT NULL, \
         note text);
         INSERT INTO replication_conflicts (table_name, key, conflict_type, local_region, note) \
         VALUES ('public.t', '{\"id\": 1}', 'missing_row', 'r1', 'by hand')",
    )
    .await;
    let c = dbs.client(0).await;
    let t = conflicts::table_name(None);
    assert!(!conflicts::init(&c, "r1", &t).await.unwrap());
    let names: Vec<String> = columns(&dbs, 0, "public")
        .await
        .into_iter()
        .map(|c| c.0)
        .collect();
    for n in [
        "remote_region",
        "local_row",
        "resolved_at",
        "run_id",
        "action",
        "details",
        "note",
    ] {
        assert!(names.iter().any(|x| x == n), "{n}: {names:?}");
    }
    // Old rows are kept and listable; the operator's extra column comes along.
    let rows = conflicts::list(&[("r1", &c)], &t, &ListFilter::default())
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].other.get("note"), Some(&json!("by hand")));
    assert_eq!(
        conflicts::to_json(&rows)["conflicts"][0]["note"],
        json!("by hand")
    );
}

#[tokio::test]
async fn init_refuses_a_view_of_that_name() {
    let dbs = TestDbs::new("conflicts_init_view", 1).await;
    dbs.exec(0, "CREATE VIEW replication_conflicts AS SELECT 1 AS id")
        .await;
    let c = dbs.client(0).await;
    let err = conflicts::init(&c, "r1", &conflicts::table_name(None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("public.replication_conflicts") && err.contains("r1"),
        "{err}"
    );
    // The connection is usable afterwards (the transaction was rolled back).
    c.query_one("SELECT 1", &[]).await.unwrap();
}

#[tokio::test]
async fn insert_and_list_with_filters() {
    let dbs = TestDbs::new_named("conflicts_list", &["us-east-1", "us-west-2", "eu-west-1"]).await;
    let t = conflicts::table_name(None);
    let clients = [
        dbs.client(0).await,
        dbs.client(1).await,
        dbs.client(2).await,
    ];
    for (i, c) in clients.iter().enumerate().take(2) {
        conflicts::init(c, dbs.region(i), &t).await.unwrap();
    }
    // eu-west-1 has no table: it lists nothing.

    // us-east-1: two old records (backdated), then three now in one transaction.
    conflicts::insert_records(
        &clients[0],
        &t,
        &[
            rec("public.vault_secrets", 1, "us-east-1", true),
            rec("public.tenants", 2, "us-east-1", false),
        ],
    )
    .await
    .unwrap();
    dbs.exec(
        0,
        "UPDATE replication_conflicts SET created_at = now() - interval '2 days'",
    )
    .await;
    {
        let mut c = dbs.client(0).await;
        let tx = c.transaction().await.unwrap();
        conflicts::insert_records(
            &tx,
            &t,
            &[
                rec("public.vault_secrets", 3, "us-east-1", true),
                rec("public.vault_secrets", 4, "us-east-1", false),
                rec("Other.vault_secrets", 5, "us-east-1", false),
            ],
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    // A rolled-back transaction leaves nothing.
    {
        let mut c = dbs.client(0).await;
        let tx = c.transaction().await.unwrap();
        conflicts::insert_records(
            &tx,
            &t,
            &[rec("public.vault_secrets", 99, "us-east-1", true)],
        )
        .await
        .unwrap();
        tx.rollback().await.unwrap();
    }
    // us-west-2: one record, a bit older than the three above.
    conflicts::insert_records(
        &clients[1],
        &t,
        &[rec("public.vault_secrets", 6, "us-west-2", false)],
    )
    .await
    .unwrap();
    dbs.exec(
        1,
        "UPDATE replication_conflicts SET created_at = now() - interval '1 hour'",
    )
    .await;

    let regions: Vec<(&str, &tokio_postgres::Client)> =
        (0..3).map(|i| (dbs.region(i), &clients[i])).collect();
    let all = conflicts::list(&regions, &t, &ListFilter::default())
        .await
        .unwrap();
    let keys: Vec<(String, i64)> = all
        .iter()
        .map(|r| (r.region.clone(), r.key["id"].as_i64().unwrap()))
        .collect();
    // Same created_at within a transaction: newest id first.
    assert_eq!(
        keys,
        vec![
            ("us-east-1".into(), 5),
            ("us-east-1".into(), 4),
            ("us-east-1".into(), 3),
            ("us-west-2".into(), 6),
            ("us-east-1".into(), 2),
            ("us-east-1".into(), 1),
        ]
    );
    let first = &all[0];
    assert_eq!(first.table_name, "Other.vault_secrets");
    assert_eq!(first.local_row, Some(json!({"id": 5, "v": "old"})));
    assert_eq!(first.changed_columns, Some(vec!["v".to_string()]));
    assert!(first.resolved_at.is_none());
    assert!(
        all[2].resolved_at.is_some(),
        "resolved records get resolved_at"
    );
    assert_eq!(all[2].action.as_deref(), Some("update"));

    // --table: unqualified matches any schema; qualified is exact; folding applies.
    let f = |table: Option<&str>| ListFilter {
        table: table.map(String::from),
        ..Default::default()
    };
    let n = |v: &[conflicts::ListedConflict]| {
        v.iter()
            .map(|r| r.key["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        n(&conflicts::list(&regions, &t, &f(Some("vault_secrets")))
            .await
            .unwrap()),
        vec![5, 4, 3, 6, 1]
    );
    assert_eq!(
        n(
            &conflicts::list(&regions, &t, &f(Some("public.vault_secrets")))
                .await
                .unwrap()
        ),
        vec![4, 3, 6, 1]
    );
    assert_eq!(
        n(
            &conflicts::list(&regions, &t, &f(Some("\"Other\".vault_secrets")))
                .await
                .unwrap()
        ),
        vec![5]
    );
    assert_eq!(
        n(
            &conflicts::list(&regions, &t, &f(Some("Other.vault_secrets")))
                .await
                .unwrap()
        ),
        Vec::<i64>::new()
    );
    assert_eq!(
        n(&conflicts::list(&regions, &t, &f(Some("TENANTS")))
            .await
            .unwrap()),
        vec![2]
    );
    assert!(
        conflicts::list(&regions, &t, &f(Some("a; b")))
            .await
            .is_err()
    );

    // --since
    let since = ListFilter {
        since: Some(Utc::now() - Duration::hours(3)),
        ..Default::default()
    };
    assert_eq!(
        n(&conflicts::list(&regions, &t, &since).await.unwrap()),
        vec![5, 4, 3, 6]
    );
    let since = ListFilter {
        since: Some(conflicts::parse_since("30m", Utc::now()).unwrap()),
        ..Default::default()
    };
    assert_eq!(
        n(&conflicts::list(&regions, &t, &since).await.unwrap()),
        vec![5, 4, 3]
    );

    // --unresolved
    let unres = ListFilter {
        unresolved: true,
        ..Default::default()
    };
    assert_eq!(
        n(&conflicts::list(&regions, &t, &unres).await.unwrap()),
        vec![5, 4, 6, 2]
    );

    // --limit: over the merged list.
    let lim = ListFilter {
        limit: Some(4),
        ..Default::default()
    };
    assert_eq!(
        n(&conflicts::list(&regions, &t, &lim).await.unwrap()),
        vec![5, 4, 3, 6]
    );
    let lim = ListFilter {
        limit: Some(0),
        ..Default::default()
    };
    assert!(
        conflicts::list(&regions, &t, &lim)
            .await
            .unwrap()
            .is_empty()
    );

    // Combined, and --in (caller passes one region).
    let comb = ListFilter {
        unresolved: true,
        table: Some("vault_secrets".into()),
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(
        n(&conflicts::list(&regions, &t, &comb).await.unwrap()),
        vec![5, 4]
    );
    assert_eq!(
        n(&conflicts::list(&regions[1..2], &t, &ListFilter::default())
            .await
            .unwrap()),
        vec![6]
    );
    assert!(
        conflicts::list(&regions[2..3], &t, &ListFilter::default())
            .await
            .unwrap()
            .is_empty()
    );

    // JSON shape: every §4 column plus region.
    let j = conflicts::to_json(&all);
    let obj = j["conflicts"][0].as_object().unwrap();
    for k in [
        "region",
        "id",
        "created_at",
        "table_name",
        "key",
        "conflict_type",
        "local_region",
        "remote_region",
        "local_row",
        "remote_row",
        "resolution",
        "winner_region",
        "decided_by",
        "resolved_at",
        "run_id",
    ] {
        assert!(obj.contains_key(k), "{k} missing in {obj:?}");
    }
    assert_eq!(obj["region"], json!("us-east-1"));
    assert_eq!(obj["key"], json!({"id": 5}));
    assert!(obj["resolved_at"].is_null());
    assert!(obj["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(j["conflicts"][2]["resolved_at"].is_string());
}

#[tokio::test]
async fn insert_many_in_one_call() {
    let dbs = TestDbs::new("conflicts_insert_many", 1).await;
    let c = dbs.client(0).await;
    let t = conflicts::table_name(None);
    conflicts::init(&c, "r1", &t).await.unwrap();
    let recs: Vec<ConflictRecord> = (0..12_000)
        .map(|i| {
            let mut r = rec("public.big", i, "r1", i % 2 == 0);
            // Awkward content travels intact.
            r.key = json!({ "id": i, "name": "quote ' \" \\ ünï" });
            r.local_row = if i % 3 == 0 { None } else { r.local_row };
            r.changed_columns = None;
            r
        })
        .collect();
    conflicts::insert_records(&c, &t, &recs).await.unwrap();
    let rows = dbs
        .query_texts(
            0,
            "SELECT concat_ws(',', count(*), count(local_row), count(resolved_at), count(changed_columns), \
                    min(key->>'name')) FROM replication_conflicts",
        )
        .await;
    assert_eq!(
        rows,
        vec![Some("12000,8000,6000,0,quote ' \" \\ ünï".into())]
    );
    // ids follow the input order.
    let ordered = dbs
        .query_texts(
            0,
            "SELECT bool_and((key->>'id')::bigint = id - 1)::text FROM replication_conflicts",
        )
        .await;
    assert_eq!(ordered, vec![Some("true".into())]);
    conflicts::insert_records(&c, &t, &[]).await.unwrap();
}

#[tokio::test]
async fn init_inside_the_callers_transaction() {
    let dbs = TestDbs::new("conflicts_init_in_tx", 1).await;
    let c = dbs.client(0).await;
    let t = conflicts::table_name(None);
    c.batch_execute("BEGIN").await.unwrap();
    assert!(conflicts::init(&c, "r1", &t).await.unwrap());
    c.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        !conflicts::exists(&c, "r1", &t).await.unwrap(),
        "rolled back with the caller"
    );
    c.batch_execute("BEGIN").await.unwrap();
    assert!(conflicts::init(&c, "r1", &t).await.unwrap());
    // The caller's transaction is still open and usable.
    c.batch_execute("CREATE TABLE after_init (x int)")
        .await
        .unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    assert!(conflicts::exists(&c, "r1", &t).await.unwrap());
    // A failure inside the caller's transaction rolls back to the savepoint only.
    dbs.exec(
        0,
        "DROP TABLE replication_conflicts; CREATE VIEW replication_conflicts AS SELECT 1 AS id",
    )
    .await;
    c.batch_execute("BEGIN; INSERT INTO after_init VALUES (1)")
        .await
        .unwrap();
    assert!(conflicts::init(&c, "r1", &t).await.is_err());
    c.batch_execute("INSERT INTO after_init VALUES (2); COMMIT")
        .await
        .unwrap();
    assert_eq!(
        dbs.query_texts(0, "SELECT count(*)::text FROM after_init")
            .await,
        vec![Some("2".into())]
    );
}

mod since_props {
    use chrono::{TimeZone, Utc};
    use eden_consistency::conflicts::parse_since;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of `<n><unit>` parts means the sum of its parts.
        #[test]
        fn durations_add_up(parts in proptest::collection::vec((0i64..10_000, 0usize..5), 1..5)) {
            let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
            let units = [("s", 1i64), ("m", 60), ("h", 3600), ("d", 86_400), ("w", 604_800)];
            let text: String = parts.iter().map(|(n, u)| format!("{n}{}", units[*u].0)).collect();
            let secs: i64 = parts.iter().map(|(n, u)| n * units[*u].1).sum();
            prop_assert_eq!(parse_since(&text, now).unwrap(), now - chrono::Duration::seconds(secs));
        }

        /// Whatever the text, an answer or a one-sentence error naming --since; never a panic.
        #[test]
        fn never_panics(text in "\\PC{0,30}") {
            let now = Utc::now();
            if let Err(e) = parse_since(&text, now) {
                prop_assert!(e.starts_with("--since"));
                prop_assert!(!e.contains('\n'));
            }
        }

        /// RFC 3339 times come back as the same instant.
        #[test]
        fn rfc3339_round_trips(secs in 0i64..4_000_000_000, offset_min in -720i32..720) {
            let t = Utc.timestamp_opt(secs, 0).unwrap();
            let off = chrono::FixedOffset::east_opt(offset_min * 60).unwrap();
            let text = t.with_timezone(&off).to_rfc3339();
            prop_assert_eq!(parse_since(&text, Utc::now()).unwrap(), t);
        }
    }
}

#[tokio::test]
async fn init_sql_script_matches_init() {
    let dbs = TestDbs::new("conflicts_init_sql", 2).await;
    let t = conflicts::table_name(Some("audit"));
    let c0 = dbs.client(0).await;
    conflicts::init(&c0, "r1", &t).await.unwrap();
    let script = conflicts::init_sql(&t);
    dbs.exec(1, &script).await;
    dbs.exec(1, &script).await; // idempotent
    assert_eq!(
        columns(&dbs, 0, "audit").await,
        columns(&dbs, 1, "audit").await
    );
    let idx = "SELECT string_agg(indexdef, '; ' ORDER BY indexname) FROM pg_indexes WHERE schemaname = 'audit'";
    assert_eq!(dbs.query_texts(0, idx).await, dbs.query_texts(1, idx).await);
    // And init accepts what the script made.
    let c1 = dbs.client(1).await;
    assert!(!conflicts::init(&c1, "r2", &t).await.unwrap());
}
