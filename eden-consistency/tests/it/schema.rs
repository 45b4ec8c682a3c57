//! Schema introspection against a real PostgreSQL.

use eden_consistency::TableName;
use eden_consistency::{__private::schema, KeySource, TableSchema};
use eden_test_util::{ClusterOptions, TestCluster, TestDbs};

fn t(s: &str, n: &str) -> TableName {
    TableName::new(s, n)
}

async fn load(
    dbs: &TestDbs,
    i: usize,
    table: &TableName,
    key: Option<&[String]>,
) -> Option<TableSchema> {
    let c = dbs.client(i).await;
    schema::load_table(&c, dbs.region(i), table, key)
        .await
        .unwrap()
}

#[tokio::test]
async fn covered_tables_lists_user_tables_only() {
    let dbs = TestDbs::new("schema_covered", 1).await;
    dbs.exec(
        0,
        r#"
        CREATE EXTENSION citext;
        CREATE TABLE public.a (id int PRIMARY KEY);
        CREATE SCHEMA "Odd Schema";
        CREATE TABLE "Odd Schema"."Weird ""T""" (id int PRIMARY KEY);
        CREATE TABLE public.replication_conflicts (id bigserial PRIMARY KEY);
        CREATE TABLE public.parted (id int, k text, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
        CREATE TABLE public.parted_a PARTITION OF public.parted FOR VALUES IN ('a');
        CREATE TABLE public.parted_b PARTITION OF public.parted FOR VALUES IN ('b');
        CREATE VIEW public.v AS SELECT 1 AS x;
        CREATE MATERIALIZED VIEW public.mv AS SELECT 1 AS x;
        CREATE SEQUENCE public.s;
        CREATE TABLE public."Ünïcødé" (id int);
        "#,
    )
    .await;
    let c = dbs.client(0).await;
    let own = [t("public", "replication_conflicts")];
    let tables = schema::covered_tables(&c, "r1", false, &own).await.unwrap();
    assert_eq!(
        tables,
        vec![
            t("Odd Schema", "Weird \"T\""),
            t("public", "a"),
            t("public", "parted"),
            t("public", "Ünïcødé")
        ]
    );
    // pglogical requested but not installed: all user tables.
    let tables2 = schema::covered_tables(&c, "r1", true, &own).await.unwrap();
    assert_eq!(tables, tables2);
    // Without `own`, the conflicts table is a user table like any other.
    let all = schema::covered_tables(&c, "r1", false, &[]).await.unwrap();
    assert!(all.contains(&t("public", "replication_conflicts")));
}

#[test]
fn covered_tables_with_pglogical_replication_sets() {
    // pglogical needs shared_preload_libraries, so it gets a cluster of its own.
    if !std::path::Path::new("/usr/share/postgresql/15/extension/pglogical.control").exists() {
        eprintln!("SKIPPED: package postgresql-15-pglogical is not installed");
        return;
    }
    let cluster = TestCluster::start(
        ClusterOptions::new()
            .logical()
            .setting("shared_preload_libraries", "'pglogical'"),
    );
    cluster.psql("postgres", "CREATE DATABASE app");
    cluster.psql(
        "app",
        &format!(
            "CREATE EXTENSION pglogical;
             SELECT pglogical.create_node(node_name := 'n1', dsn := 'host=127.0.0.1 port={} dbname=app user=postgres');
             CREATE TABLE public.replicated (id int PRIMARY KEY);
             CREATE TABLE public.local_only (id int PRIMARY KEY);
             CREATE SCHEMA \"Other\";
             CREATE TABLE \"Other\".\"Rep 2\" (id int PRIMARY KEY);
             CREATE TABLE public.replication_conflicts (id bigserial PRIMARY KEY);
             SELECT pglogical.replication_set_add_table('default', 'public.replicated');
             SELECT pglogical.replication_set_add_table('default', '\"Other\".\"Rep 2\"');
             SELECT pglogical.replication_set_add_table('default', 'public.replication_conflicts');",
            cluster.port
        ),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = cluster.client("app").await;
        let own = [t("public", "replication_conflicts")];
        let tables = schema::covered_tables(&c, "r1", true, &own).await.unwrap();
        assert_eq!(tables, vec![t("Other", "Rep 2"), t("public", "replicated")]);
        let all = schema::covered_tables(&c, "r1", false, &own).await.unwrap();
        assert_eq!(
            all,
            vec![
                t("Other", "Rep 2"),
                t("public", "local_only"),
                t("public", "replicated")
            ],
            "pglogical's own tables are excluded"
        );
    });
}

#[tokio::test]
async fn columns_types_and_attributes() {
    let dbs = TestDbs::new("schema_columns", 1).await;
    dbs.exec(
        0,
        r#"
        CREATE EXTENSION citext; CREATE EXTENSION hstore; CREATE EXTENSION ltree;
        CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
        CREATE DOMAIN posint2 AS posint;
        CREATE TYPE mood AS ENUM ('sad', 'happy');
        CREATE TYPE pair AS (a int, b text);
        CREATE TYPE ppair AS (a int, p point);
        CREATE TABLE "Mixed Case" (
            "Id" integer PRIMARY KEY,
            "we""ird" varchar(20) COLLATE "C",
            dropped int,
            d posint2 NOT NULL,
            m mood,
            arr int[],
            parr point[],
            j json,
            jb jsonb,
            p point,
            tr tstzrange,
            cp pair,
            cpp ppair,
            num numeric(10,2),
            ts timestamptz,
            "ĉu" text,
            ci citext,
            hs hstore,
            lt ltree,
            x xml,
            bx box[],
            mr int4multirange,
            ir int4range[],
            ival interval,
            bits varbit,
            inet_c cidr,
            money_c money,
            tsv tsvector,
            oidv oidvector,
            gen int GENERATED ALWAYS AS ("Id" * 2) STORED,
            ida int GENERATED ALWAYS AS IDENTITY,
            idd int GENERATED BY DEFAULT AS IDENTITY
        );
        ALTER TABLE "Mixed Case" DROP COLUMN dropped;
        "#,
    )
    .await;
    let s = load(&dbs, 0, &t("public", "Mixed Case"), None)
        .await
        .unwrap();
    let names: Vec<&str> = s.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        &names[..15],
        [
            "Id", "we\"ird", "d", "m", "arr", "parr", "j", "jb", "p", "tr", "cp", "cpp", "num",
            "ts", "ĉu"
        ]
    );
    assert_eq!(s.key.as_deref(), Some(&["Id".to_string()][..]));
    assert_eq!(s.key_source, Some(KeySource::PrimaryKey));
    assert!(!s.partitioned);

    let col = |n: &str| s.column(n).unwrap().clone();
    assert_eq!(col("Id").type_name, "integer");
    assert_eq!(col("Id").type_oid, 23);
    assert!(col("Id").not_null && col("Id").hashable);
    assert_eq!(col("we\"ird").type_name, "character varying(20)");
    assert_eq!(col("we\"ird").collation.as_deref(), Some("C"));
    assert!(
        col("we\"ird").hashable,
        "varchar hashes through text's opclass"
    );
    assert_eq!(col("ĉu").collation.as_deref(), Some("default"));
    assert_eq!(col("Id").collation, None);
    assert_eq!(col("d").type_name, "posint2");
    assert_eq!(
        col("d").base_type_oid,
        23,
        "domain over domain resolves to integer"
    );
    assert!(col("d").not_null && col("d").hashable);
    assert!(col("m").hashable);
    assert!(col("arr").is_array && col("arr").hashable);
    assert_eq!(col("arr").elem_type_oid, Some(23));
    assert_eq!(col("arr").type_name, "integer[]");
    assert!(
        col("parr").is_array && !col("parr").hashable,
        "point has no hash opclass"
    );
    assert!(!col("j").hashable, "json has no hash opclass");
    assert!(col("jb").hashable);
    assert!(!col("p").hashable);
    assert!(col("tr").hashable);
    assert!(col("cp").hashable);
    assert!(!col("cpp").hashable, "a composite with a point field");
    assert_eq!(col("num").type_name, "numeric(10,2)");
    assert!(col("num").hashable && col("ts").hashable);
    assert!(!col("j").is_array && col("j").elem_type_oid.is_none());
    assert!(!s.all_hashable());
    assert!(col("gen").generated && !col("gen").identity_always);
    assert!(col("ida").identity_always && !col("ida").generated);
    assert!(!col("idd").identity_always && !col("Id").generated);

    // Cross-check with the server: hash_record_extended looks up every field's hash
    // function (even for NULL) and fails where there is none.
    let c = dbs.client(0).await;
    for column in &s.columns {
        let sql = format!(
            "SELECT hash_record_extended(ROW(NULL::{}), 0)",
            column.type_name
        );
        let ok = c.query_one(&sql, &[]).await.is_ok();
        assert_eq!(
            ok, column.hashable,
            "column {} ({})",
            column.name, column.type_name
        );
    }

    // Absent table.
    assert!(load(&dbs, 0, &t("public", "nope"), None).await.is_none());
    assert!(
        load(&dbs, 0, &t("public", "mixed case"), None)
            .await
            .is_none(),
        "names are exact"
    );
}

#[tokio::test]
async fn domain_over_array_is_an_array() {
    let dbs = TestDbs::new("schema_domain_array", 1).await;
    dbs.exec(
        0,
        "CREATE DOMAIN ints AS int[]; CREATE TABLE x (id int PRIMARY KEY, v ints)",
    )
    .await;
    let s = load(&dbs, 0, &t("public", "x"), None).await.unwrap();
    let v = s.column("v").unwrap();
    assert!(v.is_array && v.hashable);
    assert_eq!(v.elem_type_oid, Some(23));
    assert_eq!(v.base_type_oid, 1007);
}

#[tokio::test]
async fn key_choice() {
    let dbs = TestDbs::new("schema_key_choice", 1).await;
    dbs.exec(
        0,
        r#"
        CREATE TABLE composite_pk (b int, a int, v text, PRIMARY KEY (b, a));
        CREATE TABLE uniq (x int NOT NULL, y int NOT NULL, z int NOT NULL, w int,
                           UNIQUE (y, z), UNIQUE (x, y), UNIQUE (w));
        CREATE UNIQUE INDEX uniq_zz ON uniq (z) WHERE z > 0;        -- partial: unusable
        CREATE UNIQUE INDEX uniq_expr ON uniq ((x + 1));            -- expression: unusable
        CREATE TABLE uniq_inc (a int NOT NULL, b int, UNIQUE (a) INCLUDE (b));
        CREATE TABLE nullable_only (a int, b int, UNIQUE (a));
        CREATE TABLE nokey (a int, b text);
        "#,
    )
    .await;
    let s = load(&dbs, 0, &t("public", "composite_pk"), None)
        .await
        .unwrap();
    assert_eq!(
        s.key,
        Some(vec!["b".to_string(), "a".to_string()]),
        "key in index order"
    );

    let s = load(&dbs, 0, &t("public", "uniq"), None).await.unwrap();
    // Two usable two-column indexes (w is nullable): uniq_x_y_key < uniq_y_z_key by name.
    assert_eq!(s.key, Some(vec!["x".to_string(), "y".to_string()]));
    assert_eq!(
        s.key_source,
        Some(KeySource::UniqueIndex("uniq_x_y_key".into()))
    );

    let s = load(&dbs, 0, &t("public", "uniq_inc"), None).await.unwrap();
    assert_eq!(
        s.key,
        Some(vec!["a".to_string()]),
        "INCLUDE columns are not key columns"
    );

    let s = load(&dbs, 0, &t("public", "nullable_only"), None)
        .await
        .unwrap();
    assert_eq!(s.key, None);
    assert_eq!(s.key_source, None);

    let s = load(&dbs, 0, &t("public", "nokey"), None).await.unwrap();
    assert_eq!(s.key, None);
    let msg = s.skip_message();
    assert!(
        msg.contains("key_columns: [a, b]") && msg.contains("public.nokey"),
        "{msg}"
    );

    // The config's key_columns: validated, and overriding the automatic key.
    let cfg = vec!["a".to_string(), "b".to_string()];
    let s = load(&dbs, 0, &t("public", "nokey"), Some(&cfg))
        .await
        .unwrap();
    assert_eq!(s.key, Some(cfg.clone()));
    assert_eq!(s.key_source, Some(KeySource::Config));
    let s = load(
        &dbs,
        0,
        &t("public", "composite_pk"),
        Some(&["v".to_string()]),
    )
    .await
    .unwrap();
    assert_eq!(s.key, Some(vec!["v".to_string()]));
    assert_eq!(s.key_source, Some(KeySource::Config));

    let c = dbs.client(0).await;
    let err = schema::load_table(
        &c,
        "r1",
        &t("public", "nokey"),
        Some(&["a".to_string(), "nope".to_string()]),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("public.nokey") && err.contains("\"nope\"") && err.contains("r1"),
        "{err}"
    );
    let err = schema::load_table(&c, "r1", &t("public", "nokey"), Some(&[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
}

#[tokio::test]
async fn partitioned_tables_sum_their_partitions() {
    let dbs = TestDbs::new("schema_partitioned", 1).await;
    dbs.exec(
        0,
        r#"
        CREATE TABLE p (id int, k text, v text, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
        CREATE TABLE p_a PARTITION OF p FOR VALUES IN ('a');
        CREATE TABLE p_b PARTITION OF p FOR VALUES IN ('b');
        INSERT INTO p SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, 'x' FROM generate_series(1, 1000) g;
        ANALYZE p_a; ANALYZE p_b;
        "#,
    )
    .await;
    let s = load(&dbs, 0, &t("public", "p"), None).await.unwrap();
    assert!(s.partitioned);
    assert_eq!(s.key, Some(vec!["id".to_string(), "k".to_string()]));
    assert_eq!(s.estimated_rows, 1000);
    assert!(s.total_bytes > 0);
}

#[tokio::test]
async fn unanalyzed_table_estimates_zero() {
    let dbs = TestDbs::new("schema_unanalyzed", 1).await;
    dbs.exec(0, "CREATE TABLE u (id int PRIMARY KEY)").await;
    let s = load(&dbs, 0, &t("public", "u"), None).await.unwrap();
    assert_eq!(s.estimated_rows, 0);
}

#[tokio::test]
async fn resolve_table_follows_search_path() {
    let dbs = TestDbs::new("schema_resolve", 1).await;
    dbs.exec(
        0,
        r#"
        CREATE SCHEMA s1; CREATE SCHEMA s2;
        CREATE TABLE s2.t (id int); CREATE TABLE s1.t (id int);
        CREATE TABLE public."CamelT" (id int);
        CREATE TABLE public.only_public (id int);
        CREATE VIEW public.a_view AS SELECT 1 AS x;
        "#,
    )
    .await;
    let c = dbs.client(0).await;
    let r = |text: &'static str| {
        let c = &c;
        async move { schema::resolve_table(c, "r1", text).await }
    };
    assert_eq!(
        r("only_public").await.unwrap(),
        Some(t("public", "only_public"))
    );
    assert_eq!(
        r("ONLY_PUBLIC").await.unwrap(),
        Some(t("public", "only_public")),
        "unquoted folds"
    );
    assert_eq!(r("CamelT").await.unwrap(), None, "unquoted folds to camelt");
    assert_eq!(r("\"CamelT\"").await.unwrap(), Some(t("public", "CamelT")));
    assert_eq!(
        r("public.\"CamelT\"").await.unwrap(),
        Some(t("public", "CamelT"))
    );
    assert_eq!(
        r("t").await.unwrap(),
        None,
        "s1/s2 are not on the search_path"
    );
    assert_eq!(r("s2.t").await.unwrap(), Some(t("s2", "t")));
    assert_eq!(r("a_view").await.unwrap(), None, "views are not tables");
    c.batch_execute("SET search_path = s2, s1, public")
        .await
        .unwrap();
    assert_eq!(r("t").await.unwrap(), Some(t("s2", "t")));
    c.batch_execute("SET search_path = s1, s2").await.unwrap();
    assert_eq!(r("t").await.unwrap(), Some(t("s1", "t")));
    assert_eq!(r("only_public").await.unwrap(), None);
    let err = r("a; drop table x").await.unwrap_err();
    assert!(err.to_string().contains("not a valid table name"), "{err}");
}

#[tokio::test]
async fn compare_schemas_across_regions() {
    let dbs = TestDbs::new("schema_compare", 3).await;
    // Same columns in another order, and a dropped column: equal.
    dbs.exec(0, "CREATE TABLE same (id int PRIMARY KEY, a text, b int)")
        .await;
    dbs.exec(1, "CREATE TABLE same (b int, id int PRIMARY KEY, x int, a text); ALTER TABLE same DROP COLUMN x").await;
    dbs.exec(2, "CREATE TABLE same (a text, b int, id int PRIMARY KEY)")
        .await;
    // Type difference, missing column, extra column, key difference, excluded column.
    dbs.exec(
        0,
        "CREATE TABLE diff (id int PRIMARY KEY, v integer, gone text, ex int)",
    )
    .await;
    dbs.exec(
        1,
        "CREATE TABLE diff (id int PRIMARY KEY, v bigint, extra text, ex text)",
    )
    .await;
    dbs.exec(
        2,
        "CREATE TABLE diff (id int, v integer, gone text, PRIMARY KEY (id, v))",
    )
    .await;
    // Missing table in r3.
    dbs.exec(0, "CREATE TABLE partial (id int PRIMARY KEY)")
        .await;
    dbs.exec(1, "CREATE TABLE partial (id int PRIMARY KEY)")
        .await;

    async fn all(dbs: &TestDbs, name: &str) -> Vec<Option<TableSchema>> {
        let mut v = Vec::new();
        for i in 0..dbs.len() {
            v.push(load(dbs, i, &t("public", name), None).await);
        }
        v
    }
    let regs = ["r1", "r2", "r3"];
    let pairs = |v: &'_ [Option<TableSchema>]| -> Vec<(&'static str, Option<TableSchema>)> {
        regs.iter()
            .zip(v.iter())
            .map(|(r, s)| (*r, s.clone()))
            .collect()
    };

    let same = all(&dbs, "same").await;
    let p = pairs(&same);
    let refs: Vec<(&str, Option<&TableSchema>)> = p.iter().map(|(r, s)| (*r, s.as_ref())).collect();
    assert_eq!(
        schema::compare_schemas(&t("public", "same"), &refs, &[]),
        vec![]
    );

    let diff = all(&dbs, "diff").await;
    let p = pairs(&diff);
    let refs: Vec<(&str, Option<&TableSchema>)> = p.iter().map(|(r, s)| (*r, s.as_ref())).collect();
    let d = schema::compare_schemas(&t("public", "diff"), &refs, &["ex".to_string()]);
    let cols: Vec<Option<&str>> = d.iter().map(|x| x.column.as_deref()).collect();
    assert_eq!(
        cols,
        vec![Some("v"), Some("gone"), Some("extra"), None],
        "{d:#?}"
    );
    assert_eq!(
        d[0].message,
        "column \"v\" has type \"integer\" in r1, r3, \"bigint\" in r2"
    );
    assert_eq!(d[1].message, "column \"gone\" is missing in r2");
    assert_eq!(d[2].message, "column \"extra\" is missing in r1, r3");
    assert!(
        d[3].message.contains("(id) in r1, r2") && d[3].message.contains("(id, v) in r3"),
        "{}",
        d[3].message
    );
    // Without the exclusion, `ex` differs too.
    let d2 = schema::compare_schemas(&t("public", "diff"), &refs, &[]);
    assert!(d2.iter().any(|x| x.column.as_deref() == Some("ex")));

    let partial = all(&dbs, "partial").await;
    let p = pairs(&partial);
    let refs: Vec<(&str, Option<&TableSchema>)> = p.iter().map(|(r, s)| (*r, s.as_ref())).collect();
    let d = schema::compare_schemas(&t("public", "partial"), &refs, &[]);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].column, None);
    assert_eq!(d[0].message, "table public.partial is missing in r3");

    let d = schema::compare_schemas(&t("public", "x"), &[("r1", None), ("r2", None)], &[]);
    assert_eq!(d.len(), 1);
}

#[tokio::test]
async fn enums_and_domains_compare_by_name() {
    let dbs = TestDbs::new("schema_enum_compare", 2).await;
    dbs.exec_all("CREATE TYPE mood AS ENUM ('a', 'b'); CREATE DOMAIN code AS text")
        .await;
    dbs.exec(0, "CREATE TABLE e (id int PRIMARY KEY, m mood, c code)")
        .await;
    dbs.exec(1, "CREATE TABLE e (id int PRIMARY KEY, m mood, c text)")
        .await;
    let a = load(&dbs, 0, &t("public", "e"), None).await;
    let b = load(&dbs, 1, &t("public", "e"), None).await;
    // OIDs differ between databases; names are what count.
    let d = schema::compare_schemas(
        &t("public", "e"),
        &[("r1", a.as_ref()), ("r2", b.as_ref())],
        &[],
    );
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].column.as_deref(), Some("c"));
    assert_eq!(
        d[0].message,
        "column \"c\" has type \"code\" in r1, \"text\" in r2"
    );
}
