//! check: type families, identifiers, keys, schema mismatch, options; both modes agree.
use crate::check_common::*;
use eden_consistency::Error;
use eden_consistency::TableStatus;
use eden_consistency::{CheckOptions, Checker};
use eden_test_util::TestDbs;
use serde_json::json;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[tokio::test]
async fn type_families_one_column_at_a_time() {
    let dbs = TestDbs::new("chk_types", 2).await;
    dbs.exec_all(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
         CREATE DOMAIN posint AS int CHECK (VALUE > 0);
         CREATE TYPE pair AS (x int, y text);
         CREATE TABLE t(id int primary key, i2 int2, i8 int8, n numeric, f4 real, f8 float8, tx text, vc varchar(20),
            ch char(4), b bytea, u uuid, d date, tm time, ts timestamp, tz timestamptz, iv interval, j json, jb jsonb,
            arr int[], tarr text[], m mood, dom posint, comp pair, pt point, ip inet, bo boolean);
         INSERT INTO t SELECT g, g, g::int8 * 1000000000, g / 7.0, g / 3.0, g / 9.0, 'text ' || g, 'v' || g, 'c', decode('00ff' || lpad(to_hex(g), 4, '0'), 'hex'),
            md5(g::text)::uuid, '2024-01-01'::date + g, '12:00'::time + g * interval '1 s', '2024-01-01'::timestamp + g * interval '1 h',
            '2024-01-01 00:00+00'::timestamptz + g * interval '1 min', g * interval '1 day', json_build_object('a', g, 'b', 'x'),
            jsonb_build_object('a', g, 'arr', jsonb_build_array(1, 2, g)), ARRAY[g, g + 1], ARRAY['a', NULL, 'c'], 'ok', g, ROW(g, 'p')::pair,
            point(g, g), '10.0.0.1'::inet, g % 2 = 0
         FROM generate_series(1, 400) g;",
    )
    .await;
    // Same values, different representation: not a difference.
    dbs.exec(
        1,
        "UPDATE t SET n = 5.000 WHERE id = 1; UPDATE t SET n = 5 WHERE id = 1;",
    )
    .await;
    dbs.exec(0, "UPDATE t SET n = 5.0 WHERE id = 1;").await;
    dbs.exec(
        0,
        "UPDATE t SET j = '{\"a\": 2, \"b\": \"x\"}' WHERE id = 2;",
    )
    .await;
    dbs.exec(
        1,
        "UPDATE t SET j = '{\"b\":\"x\",  \"a\":2}' WHERE id = 2;",
    )
    .await;
    // One column changed per key.
    let changes = [
        (10, "i2", "i2 = -1"),
        (11, "i8", "i8 = i8 + 1"),
        (12, "n", "n = n + 0.000000001"),
        (13, "f4", "f4 = 'NaN'"),
        (14, "f8", "f8 = f8 * (1 + 2.220446049250313e-16)"),
        (15, "tx", "tx = NULL"),
        (16, "vc", "vc = ''"),
        (17, "ch", "ch = 'd'"),
        (18, "b", "b = NULL"),
        (19, "u", "u = '00000000-0000-0000-0000-000000000000'"),
        (20, "d", "d = d + 1"),
        (21, "tm", "tm = tm + interval '1 microsecond'"),
        (22, "ts", "ts = ts + interval '1 microsecond'"),
        (23, "tz", "tz = tz + interval '1 microsecond'"),
        (24, "iv", "iv = iv + interval '1 microsecond'"),
        (25, "j", "j = '{\"a\": 25, \"b\": \"y\"}'"),
        (26, "jb", "jb = 'null'"),
        (27, "arr", "arr = ARRAY[27, 29]"),
        (28, "tarr", "tarr = ARRAY['a', '', 'c']"),
        (29, "m", "m = 'happy'"),
        (30, "dom", "dom = 999"),
        (31, "comp", "comp = ROW(31, 'q')::pair"),
        (32, "pt", "pt = point(0, 0)"),
        (33, "ip", "ip = '10.0.0.2'"),
        (34, "bo", "bo = NOT bo"),
        (35, "jb", "jb = NULL"),
    ];
    for (id, _, set) in &changes {
        dbs.exec(1, &format!("UPDATE t SET {set} WHERE id = {id}"))
            .await;
    }
    let c = checker(&dbs).await;
    let r = run_both(&c, &Default::default()).await;
    let t = table(&r, "public.t");
    let want: Vec<_> = changes
        .iter()
        .map(|(id, col, _)| (json!({"id": id}), Vec::<String>::new(), s(&[col])))
        .collect();
    assert_eq!(diffs(t), want, "{:#}", r.to_json());
}

#[tokio::test]
async fn quoted_identifiers_composite_and_text_keys() {
    let dbs = TestDbs::new("chk_idents", 2).await;
    dbs.exec_all(
        "CREATE SCHEMA \"My Schema\";
         CREATE TABLE \"My Schema\".\"Weird \"\"T\"\"\"(\"Id\" int, \"Name; DROP\" text, \"Col A\" text, PRIMARY KEY (\"Id\", \"Name; DROP\"));
         INSERT INTO \"My Schema\".\"Weird \"\"T\"\"\" SELECT g % 10, 'n' || g, 'a' || g FROM generate_series(1, 500) g;
         CREATE TABLE tk(k text COLLATE \"C\" primary key, v int);
         INSERT INTO tk SELECT md5(g::text) || 'Ä', g FROM generate_series(1, 3000) g;
         INSERT INTO tk VALUES ('a b', 1), ('A', 2), ('é', 3), ('', 4);
         CREATE TABLE tu(k uuid primary key, v int);
         INSERT INTO tu SELECT md5(g::text)::uuid, g FROM generate_series(1, 3000) g;
         CREATE TABLE tts(k timestamptz primary key, v int);
         INSERT INTO tts SELECT '2024-01-01 00:00+00'::timestamptz + g * interval '1 s', g FROM generate_series(1, 3000) g;
         CREATE TABLE tn(k numeric primary key, v int);
         INSERT INTO tn SELECT g / 8.0, g FROM generate_series(1, 3000) g;",
    )
    .await;
    dbs.exec(1, "UPDATE \"My Schema\".\"Weird \"\"T\"\"\" SET \"Col A\" = 'x' WHERE \"Id\" = 3 AND \"Name; DROP\" = 'n13';
                 DELETE FROM tk WHERE k = 'A'; UPDATE tk SET v = 0 WHERE k = '';
                 UPDATE tu SET v = 0 WHERE k = md5('77')::uuid;
                 DELETE FROM tts WHERE v = 5;
                 UPDATE tn SET v = 0 WHERE v = 12;").await;
    let c = checker(&dbs).await;
    let r = run_both(&c, &Default::default()).await;
    let w = table(&r, "My Schema.Weird \"T\"");
    assert_eq!(w.key_columns, s(&["Id", "Name; DROP"]));
    assert_eq!(
        diffs(w),
        vec![(json!({"Id": 3, "Name; DROP": "n13"}), vec![], s(&["Col A"]))]
    );
    assert_eq!(
        diffs(table(&r, "public.tk")),
        vec![
            (json!({"k": ""}), vec![], s(&["v"])),
            (json!({"k": "A"}), s(&["r2"]), vec![])
        ]
    );
    let u = format!("{:x}", md5_uuid("77"));
    assert_eq!(
        diffs(table(&r, "public.tu")),
        vec![(json!({"k": u}), vec![], s(&["v"]))]
    );
    assert_eq!(
        diffs(table(&r, "public.tts")),
        vec![(json!({"k": "2024-01-01 00:00:05+00"}), s(&["r2"]), vec![])]
    );
    assert_eq!(
        diffs(table(&r, "public.tn")),
        vec![(json!({"k": "1.5000000000000000"}), vec![], s(&["v"]))]
    );
}

fn md5_uuid(text: &str) -> uuid::Uuid {
    // The uuid PostgreSQL makes of md5(text)::uuid: the digest's 16 bytes.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s '{text}' | md5sum"))
        .output()
        .unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    uuid::Uuid::parse_str(&hex[..32]).unwrap()
}

#[tokio::test]
async fn empty_tables_and_schema_mismatch() {
    let dbs = TestDbs::new("chk_schema", 2).await;
    dbs.exec(
        0,
        "CREATE TABLE e(id int primary key); CREATE TABLE only_here(id int primary key);
                 CREATE TABLE reordered(id int primary key, a text, b int, gone int);
                 ALTER TABLE reordered DROP COLUMN gone;
                 INSERT INTO reordered VALUES (1, 'x', 2), (2, 'y', 3);
                 CREATE TABLE typed(id int primary key, a int);",
    )
    .await;
    dbs.exec(
        1,
        "CREATE TABLE e(id int primary key);
                 CREATE TABLE reordered(b int, id int primary key, a text);
                 INSERT INTO reordered(id, a, b) VALUES (1, 'x', 2), (2, 'y', 4);
                 CREATE TABLE typed(id int primary key, a bigint);",
    )
    .await;
    let c = checker(&dbs).await;
    let r = run_both(&c, &Default::default()).await;
    assert_eq!(table(&r, "public.e").status, TableStatus::Consistent);
    assert_eq!(table(&r, "public.e").row_counts.get("r1"), Some(&0));
    let ro = table(&r, "public.reordered");
    assert_eq!(ro.status, TableStatus::Divergent, "{:#}", r.to_json());
    assert_eq!(diffs(ro), vec![(json!({"id": 2}), vec![], s(&["b"]))]);
    let ty = table(&r, "public.typed");
    assert_eq!(ty.status, TableStatus::SchemaMismatch);
    assert!(
        ty.message.as_deref().unwrap().contains('a'),
        "{:?}",
        ty.message
    );
    assert!(!ty.schema_differences.is_empty());
    let oh = table(&r, "public.only_here");
    assert_eq!(oh.status, TableStatus::SchemaMismatch);
    assert!(oh.message.is_some());
    assert!(!r.consistent);
}

#[tokio::test]
async fn no_pk_skipped_then_keyed_by_config_and_excludes() {
    let dbs = TestDbs::new("chk_nopk", 2).await;
    dbs.exec_all(
        "CREATE TABLE np(a int, b text, noise timestamptz default clock_timestamp());
                  INSERT INTO np(a, b) SELECT g, 'b' || g FROM generate_series(1, 200) g;",
    )
    .await;
    dbs.exec(1, "UPDATE np SET b = 'changed' WHERE a = 50;")
        .await;
    let c = checker(&dbs).await;
    let r = c.run(&Default::default()).await.unwrap();
    assert_eq!(table(&r, "public.np").status, TableStatus::Skipped);
    assert_eq!(r.exit_code(), 1);

    let mut cfg = config_for(&dbs);
    add_rule(&mut cfg, dbs.name(0), "np", Some(vec!["a"]), vec!["noise"]);
    let c = Checker::connect(cfg, dbs.name(0)).await.unwrap();
    let r = run_both(&c, &Default::default()).await;
    let t = table(&r, "public.np");
    assert_eq!(t.key_columns, s(&["a"]));
    assert_eq!(diffs(t), vec![(json!({"a": 50}), vec![], s(&["b"]))]);
}

#[tokio::test]
async fn where_max_differences_table_selection_and_injection() {
    let dbs = TestDbs::new("chk_opts", 2).await;
    dbs.exec_all("CREATE TABLE t(id int primary key, v int); INSERT INTO t SELECT g, g FROM generate_series(1, 1000) g;
                  CREATE TABLE other(id int primary key); INSERT INTO other VALUES (1);").await;
    dbs.exec(
        1,
        "UPDATE t SET v = 0 WHERE id IN (5, 500, 900); DELETE FROM other;",
    )
    .await;
    let c = checker(&dbs).await;
    let o = CheckOptions {
        tables: s(&["t"]),
        filter: Some("id >= 100 AND v IS NOT NULL".into()),
        ..Default::default()
    };
    let r = run_both(&c, &o).await;
    assert_eq!(r.tables.len(), 1);
    let t = table(&r, "public.t");
    assert_eq!(
        diffs(t).iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
        vec![json!({"id": 500}), json!({"id": 900})]
    );
    assert_eq!(t.row_counts.get("r1"), Some(&901));

    let o = CheckOptions {
        max_differences: Some(1),
        ..Default::default()
    };
    let r = run_both(&c, &o).await;
    let t = table(&r, "public.t");
    assert_eq!(t.difference_count, 3);
    assert_eq!(t.differences.len(), 1);
    assert_eq!(table(&r, "public.other").difference_count, 1);

    let o = CheckOptions {
        exclude_tables: s(&["public.other"]),
        ..Default::default()
    };
    let r = c.run(&o).await.unwrap();
    assert_eq!(
        r.tables
            .iter()
            .map(|t| t.table.as_str())
            .collect::<Vec<_>>(),
        vec!["public.t"]
    );

    for bad in [
        "id = 1; DROP TABLE t",
        "id IN (SELECT 1)",
        "pg_sleep(10) IS NULL",
        "1 = 1 --",
        "id = 1) OR (1 = 1",
    ] {
        let o = CheckOptions {
            filter: Some(bad.into()),
            ..Default::default()
        };
        match c.run(&o).await {
            Err(Error::Usage(m)) => assert!(m.contains("--where"), "{m}"),
            other => panic!("{bad}: expected a usage error, got {other:?}"),
        }
    }
    for bad in ["t; DROP TABLE t", "nope", "a.b.c"] {
        let o = CheckOptions {
            tables: s(&[bad]),
            ..Default::default()
        };
        assert!(matches!(c.run(&o).await, Err(Error::Usage(_))), "{bad}");
    }
    assert_eq!(
        dbs.query_texts(0, "SELECT count(*)::text FROM t").await,
        vec![Some("1000".to_string())]
    );
}

#[tokio::test]
async fn jobs_and_record() {
    let dbs = TestDbs::new("chk_jobs", 2).await;
    for i in 0..5 {
        dbs.exec_all(&format!("CREATE TABLE t{i}(id int primary key, v int); INSERT INTO t{i} SELECT g, g FROM generate_series(1, 300) g;")).await;
        dbs.exec(1, &format!("UPDATE t{i} SET v = 0 WHERE id = {};", i + 1))
            .await;
    }
    let c = checker(&dbs).await;
    let r1 = c
        .run(&CheckOptions {
            jobs: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let r2 = c
        .run(&CheckOptions {
            jobs: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(strip(&r1), strip(&r2));
    assert_eq!(r1.tables.len(), 5);
    assert!(
        !c.run(&Default::default())
            .await
            .unwrap()
            .tables
            .iter()
            .any(|t| t.table.contains("replication_conflicts"))
    );
    let r = c
        .run(&CheckOptions {
            record: true,
            run_id: Some("run-1".into()),
            tables: s(&["t0"]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(r.run_id, "run-1");
    for i in 0..2 {
        let rows = dbs
            .query_texts(i, "SELECT table_name || ' ' || key::text || ' ' || conflict_type || ' ' || (resolved_at IS NULL)::text || ' ' || run_id FROM replication_conflicts")
            .await;
        assert_eq!(
            rows,
            vec![Some(
                "public.t0 {\"id\": 1} update_differs true run-1".to_string()
            )]
        );
    }
    // The conflicts table is the tool's own: never checked.
    let r = c.run(&Default::default()).await.unwrap();
    assert!(
        !r.tables
            .iter()
            .any(|t| t.table.contains("replication_conflicts"))
    );
}

/// Differences PostgreSQL's hash functions alone would miss: a float 0.0 against NULL (seed-0
/// hashes agree), intervals equal only under 30-day months, array bounds, and text that a
/// case-insensitive type's hash folds. Both modes must report each key.
#[tokio::test]
async fn pushdown_sees_what_server_hashes_would_fold() {
    let dbs = TestDbs::new("chk_hash_blind_spots", 2).await;
    dbs.exec_all(
        "CREATE TABLE t(id int primary key, f float8, iv interval, arr int[]);
         INSERT INTO t SELECT g, g, g * interval '1 day', ARRAY[g] FROM generate_series(1, 300) g;",
    )
    .await;
    dbs.exec(0, "UPDATE t SET f = 0 WHERE id = 7; UPDATE t SET iv = interval '1 mon' WHERE id = 8; UPDATE t SET arr = '{1,2}' WHERE id = 9;").await;
    dbs.exec(1, "UPDATE t SET f = NULL WHERE id = 7; UPDATE t SET iv = interval '30 days' WHERE id = 8; UPDATE t SET arr = '[0:1]={1,2}' WHERE id = 9;").await;
    let c = checker(&dbs).await;
    let r = run_both(&c, &Default::default()).await;
    let got: Vec<_> = diffs(table(&r, "public.t"))
        .into_iter()
        .map(|(k, _, cols)| (k, cols))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!({"id": 7}), s(&["f"])),
            (json!({"id": 8}), s(&["iv"])),
            (json!({"id": 9}), s(&["arr"]))
        ],
        "{:#}",
        r.to_json()
    );
}

/// Past 16k differences the listing goes through a temporary file: every difference is
/// still listed, in key order, in both modes, and `--max-differences` still caps it.
#[tokio::test]
async fn many_differences_are_all_listed_in_key_order() {
    let dbs = TestDbs::new("chk_many", 2).await;
    dbs.exec_all(
        "CREATE TABLE t(id bigint primary key, v int);
         INSERT INTO t SELECT g, g FROM generate_series(1, 40000) g;",
    )
    .await;
    // Every row differs: a changed value, a missing row, or an extra one.
    dbs.exec(
        1,
        "UPDATE t SET v = -v WHERE id % 3 <> 0; DELETE FROM t WHERE id % 3 = 0;
         INSERT INTO t SELECT g, g FROM generate_series(40001, 42000) g;",
    )
    .await;
    let c = checker(&dbs).await;
    let r = run_both(&c, &CheckOptions::default()).await;
    let t = table(&r, "public.t");
    assert_eq!(t.difference_count, 42000);
    assert_eq!(t.differences.len(), 42000);
    let got: Vec<(i64, Vec<String>, Vec<String>)> = t
        .differences
        .iter()
        .map(|d| {
            (
                d.key["id"].as_i64().unwrap(),
                d.missing_in.clone(),
                d.changed_columns.clone(),
            )
        })
        .collect();
    let want: Vec<(i64, Vec<String>, Vec<String>)> = (1..=42000)
        .map(|i| match i {
            i if i > 40000 => (i, s(&["r1"]), vec![]),
            i if i % 3 == 0 => (i, s(&["r2"]), vec![]),
            i => (i, vec![], s(&["v"])),
        })
        .collect();
    assert!(
        got == want,
        "first difference: {:?}",
        got.iter().zip(&want).find(|(a, b)| a != b)
    );
    // The JSON report carries them all.
    let j = r.to_json();
    assert_eq!(
        j["tables"][0]["differences"].as_array().unwrap().len(),
        42000
    );
    assert_eq!(
        j["tables"][0]["differences"][41999]["key"]["id"],
        json!(42000)
    );

    let o = CheckOptions {
        max_differences: Some(20000),
        ..Default::default()
    };
    let r = c.run(&o).await.unwrap();
    let t = table(&r, "public.t");
    assert_eq!(t.difference_count, 42000);
    assert_eq!(t.differences.len(), 20000);
    assert_eq!(t.differences.iter().last().unwrap().key["id"], json!(20000));
}
