//! The config's reading, validation and `--region` flags.

use super::*;

const GUIDE: &str = include_str!("../../../fixtures/postgresql-multi-region.yaml");

fn err(text: &str) -> String {
    Config::from_yaml_str(text, "cfg.yaml")
        .unwrap_err()
        .to_string()
}

const REGIONS: &str = "regions:\n  - name: us-east-1\n    instance: {host: a, port: 5432}\n  - name: us-west-2\n    instance: {host: b}\n";

fn with_tables(tables: &str) -> String {
    format!(
        "{REGIONS}replication:\n  node_groups:\n    - name: g\n      database: d\n      conflict_resolution_tables:\n{tables}"
    )
}

#[test]
fn guide_example_loads() {
    let cfg = Config::from_yaml_str(GUIDE, "postgresql-multi-region.yaml").unwrap();
    assert_eq!(
        cfg.global.replication_user.as_deref(),
        Some("replication_user")
    );
    assert_eq!(cfg.global.max_replication_lag_seconds, Some(300));
    assert_eq!(
        cfg.default_resolution(),
        Resolution::LastWriteWins {
            tracking_column: None
        }
    );
    let names: Vec<_> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["us-east-1", "us-west-2"]);
    assert_eq!(
        cfg.regions[0].conn.host.as_deref(),
        Some("postgres.us-east-1.eden.internal")
    );
    assert_eq!(cfg.regions[0].conn.port, Some(5432));
    assert_eq!(cfg.regions[0].role.as_deref(), Some("active"));
    assert_eq!(cfg.provider.as_deref(), Some("pglogical"));
    let g = cfg.node_group("eden_vault").unwrap();
    assert_eq!(g.name, "eden_vault_group");
    let rule = cfg
        .table_rule("eden_vault", &TableName::new("public", "vault_secrets"))
        .unwrap();
    assert_eq!(
        rule.resolution,
        Resolution::LastWriteWins {
            tracking_column: Some("last_updated_at".into())
        }
    );
    // No file yet: no in-flight window.
    assert_eq!(cfg.lag_window(), Duration::ZERO);
}

#[test]
fn every_rule_kind() {
    let cfg = Config::from_yaml_str(
        &with_tables(
            r#"        - {table: a, resolution: first_write_wins}
        - {table: b, resolution: region_priority, regions: [us-west-2, us-east-1]}
        - {table: c, resolution: highest_value, column: limit_bytes}
        - {table: d, resolution: custom, expression: "a.version > b.version"}
        - {table: e, custom_rust: my_resolver}
        - {table: f, resolution: custom_rust, name: other}
        - table: g
          resolution: column_merge
          columns: {email: email_updated_at, name: name_updated_at}
          tracking_column: updated_at
        - {table: h, resolution: manual, key_columns: [x, y], exclude_columns: [z]}
        - {table: i, tombstone: {column: deleted_at}}
        - {table: s.j, tracking_column: ts, tombstone: {table: graves, deleted_at_column: gone_at}}
        - {table: k, resolution: last_write_wins, unknown_key: whatever}
"#,
        ),
        "x.yaml",
    )
    .unwrap();
    let r: Vec<&Resolution> = cfg.node_groups[0]
        .tables
        .iter()
        .map(|t| &t.resolution)
        .collect();
    assert_eq!(
        r[0],
        &Resolution::FirstWriteWins {
            tracking_column: None
        }
    );
    assert_eq!(
        r[1],
        &Resolution::RegionPriority {
            regions: vec!["us-west-2".into(), "us-east-1".into()]
        }
    );
    assert_eq!(
        r[2],
        &Resolution::HighestValue {
            column: "limit_bytes".into()
        }
    );
    assert_eq!(
        r[3],
        &Resolution::Custom {
            expression: "a.version > b.version".into()
        }
    );
    assert_eq!(
        r[4],
        &Resolution::CustomRust {
            name: "my_resolver".into()
        }
    );
    assert_eq!(
        r[5],
        &Resolution::CustomRust {
            name: "other".into()
        }
    );
    match r[6] {
        Resolution::ColumnMerge {
            columns,
            tracking_column,
        } => {
            assert_eq!(
                columns.get("email").map(String::as_str),
                Some("email_updated_at")
            );
            assert_eq!(tracking_column.as_deref(), Some("updated_at"));
        }
        other => panic!("{other:?}"),
    }
    let t = &cfg.node_groups[0].tables;
    assert_eq!(t[7].resolution, Resolution::Manual);
    assert_eq!(
        t[7].key_columns.as_deref(),
        Some(&["x".to_string(), "y".to_string()][..])
    );
    assert_eq!(t[7].exclude_columns, ["z"]);
    // No resolution: the global default (last_write_wins on commit timestamps).
    assert_eq!(
        t[8].resolution,
        Resolution::LastWriteWins {
            tracking_column: None
        }
    );
    assert_eq!(
        t[8].tombstone,
        Some(Tombstone::Column {
            column: "deleted_at".into()
        })
    );
    assert_eq!(
        t[9].resolution,
        Resolution::LastWriteWins {
            tracking_column: Some("ts".into())
        }
    );
    assert_eq!(
        t[9].tombstone,
        Some(Tombstone::Table {
            table: "graves".into(),
            deleted_at_column: "gone_at".into()
        })
    );
    assert!(cfg.table_rule("d", &TableName::new("s", "j")).is_some());
    assert!(
        cfg.table_rule("d", &TableName::new("public", "j"))
            .is_none()
    );
}

#[test]
fn global_rules() {
    let cfg = Config::from_yaml_str(
        &format!("global: {{conflict_resolution: manual}}\n{REGIONS}"),
        "c",
    )
    .unwrap();
    assert_eq!(cfg.default_resolution(), Resolution::Manual);
    let cfg = Config::from_yaml_str(
            &format!("global: {{conflict_resolution: first_write_wins}}\n{REGIONS}replication:\n  node_groups:\n    - {{database: d, conflict_resolution_tables: [{{table: t, tracking_column: c}}]}}\n"),
            "c",
        )
        .unwrap();
    assert_eq!(cfg.node_groups[0].name, "d");
    assert_eq!(
        cfg.node_groups[0].tables[0].resolution,
        Resolution::FirstWriteWins {
            tracking_column: Some("c".into())
        }
    );
    assert_eq!(
        err(&format!(
            "global: {{conflict_resolution: highest_value}}\n{REGIONS}"
        )),
        "cfg.yaml: global.conflict_resolution: highest_value needs a per-table setting, so it cannot be the default for all tables; use last_write_wins, first_write_wins or manual there and set highest_value on the tables that need it under conflict_resolution_tables"
    );
    assert_eq!(
        err(&format!(
            "global: {{conflict_resolution: newest}}\n{REGIONS}"
        )),
        "cfg.yaml: global.conflict_resolution: unknown resolution \"newest\"; use last_write_wins, first_write_wins or manual"
    );
}

#[test]
fn bad_rules() {
    assert_eq!(
        err(&with_tables(
            "        - {table: vault_secrets, resolution: newest_wins}\n"
        )),
        "cfg.yaml: table vault_secrets in node group \"g\": unknown resolution \"newest_wins\"; use one of last_write_wins, first_write_wins, region_priority, highest_value, custom, custom_rust, column_merge, manual"
    );
    assert_eq!(
        err(&with_tables(
            "        - {table: quotas, resolution: highest_value}\n"
        )),
        "cfg.yaml: table quotas in node group \"g\": resolution highest_value needs the column to compare; add \"column: <column name>\" to the table's entry"
    );
    assert_eq!(
        err(&with_tables(
            "        - {table: tenants, resolution: region_priority}\n"
        )),
        "cfg.yaml: table tenants in node group \"g\": resolution region_priority needs the ordered list of regions, most trusted first; add \"regions: [us-east-1, us-west-2]\" to the table's entry"
    );
    assert!(
        err(&with_tables("        - {table: f, resolution: custom}\n"))
            .contains("needs an expression; add \"expression: ")
    );
    assert!(
        err(&with_tables(
            "        - {table: f, resolution: column_merge}\n"
        ))
        .contains("needs the columns to merge")
    );
    assert!(
        err(&with_tables(
            "        - {table: f, resolution: custom_rust}\n"
        ))
        .contains("needs the registered resolver's name")
    );
    assert_eq!(
        err(&with_tables(
            "        - {table: tenants, resolution: region_priority, regions: [us-west-2, eu-west-9]}\n"
        )),
        "cfg.yaml: table tenants in node group \"g\": region_priority names region \"eu-west-9\", which is not defined under regions: (defined: us-east-1, us-west-2); fix the name or define the region"
    );
    assert!(
        err(&with_tables(
            "        - {table: t, resolution: region_priority, regions: [us-west-2, us-west-2]}\n"
        ))
        .contains("twice")
    );
    assert!(
        err(&with_tables(
            "        - {table: t, resolution: manual, custom_rust: x}\n"
        ))
        .contains("keep only one")
    );
    assert!(err(&with_tables("        - {resolution: manual}\n")).contains("has no table"));
    assert!(
        err(&with_tables("        - {table: t}\n        - {table: T}\n")).contains("listed twice")
    );
    assert!(err(&with_tables("        - {table: a.b.c}\n")).contains("is not a table name"));
    assert!(
        err(&with_tables(
            "        - {table: t, tombstone: {table: x}}\n"
        ))
        .contains("needs deleted_at_column")
    );
    assert!(
        err(&with_tables("        - {table: t, tombstone: {}}\n")).contains("tombstone: is empty")
    );
    assert!(
        err(&with_tables("        - {table: t, key_columns: []}\n"))
            .contains("key_columns is empty")
    );
    let e = err(&with_tables(
        "        - {table: flags, resolution: custom, expression: \"a.v > pg_sleep(1)\"}\n",
    ));
    assert!(
        e.starts_with("cfg.yaml: table flags in node group \"g\": ") && e.contains("pg_sleep"),
        "{e}"
    );
    // Missing tracking_column is fine for lww/fww.
    Config::from_yaml_str(
        &with_tables("        - {table: t, resolution: last_write_wins}\n"),
        "c",
    )
    .unwrap();
}

#[test]
fn bad_regions() {
    assert_eq!(
        err(
            "regions:\n  - name: a\n    instance: {host: h}\n  - name: a\n    instance: {host: i}\n"
        ),
        "cfg.yaml: region \"a\" is defined twice under regions:; give each region a unique name"
    );
    assert_eq!(
        err("regions:\n  - name: a\n    role: active\n"),
        "cfg.yaml: region \"a\" has no host; add \"instance: {host: <host>, port: 5432}\" (or a conninfo:) to it"
    );
    assert!(err("regions:\n  - instance: {host: h}\n").contains("regions entry 1 has no name"));
    assert!(
        err("regions:\n  - {name: a, instance: {host: h, sslmode: on}}\n")
            .contains("invalid instance.sslmode \"on\"")
    );
    let e = err("regions:\n  - {name: a, conninfo: 'host=h port=x password=hunter2'}\n");
    assert!(
        e.contains("region \"a\": conninfo: invalid port number") && !e.contains("hunter2"),
        "{e}"
    );
    // conninfo and the extra instance keys.
    let cfg = Config::from_yaml_str(
            "regions:\n  - name: a\n    instance: {host: h, port: '6543', user: u, password: p, dbname: d, sslmode: verify-full, sslrootcert: /r.pem, connect_timeout: 4}\n  - {name: b, conninfo: 'postgres://x@y:1/z'}\n",
            "c",
        )
        .unwrap();
    let a = &cfg.regions[0].conn;
    assert_eq!(
        (
            a.port,
            a.user.as_deref(),
            a.password.as_deref(),
            a.dbname.as_deref()
        ),
        (Some(6543), Some("u"), Some("p"), Some("d"))
    );
    assert_eq!(a.sslmode, Some(crate::pg::conninfo::SslMode::VerifyFull));
    assert_eq!(a.connect_timeout, Some(4));
    assert_eq!(cfg.regions[1].conn.host.as_deref(), Some("y"));
}

#[test]
fn yaml_and_type_errors() {
    let e = err("regions:\n  - name: a\n    instance:\n      host: h\n      port: abc\n");
    assert_eq!(
        e,
        "cfg.yaml: line 5, column 13: regions[0].instance.port: invalid port \"abc\": expected a port number (1-65535)"
    );
    let e = err("regions:\n  - name: a\n    instance: {host: h, port: 70000}\n");
    assert!(e.contains("line 3") && e.contains("out of range"), "{e}");
    let e = err("global:\n  max_replication_lag_seconds: soon\n");
    assert!(e.starts_with("cfg.yaml: line 2, column 32: global.max_replication_lag_seconds: invalid type: string \"soon\""), "{e}");
    let e = err("regions:\n  - name: a\n   bad: [\n");
    assert!(
        e.starts_with("cfg.yaml: line ") && e.contains("not valid YAML"),
        "{e}"
    );
    let e = err("global: {a: 1}\nregions: {a: b}\n");
    assert!(
        e.contains("line 2") && e.contains("regions: invalid type: map, expected a sequence"),
        "{e}"
    );
    assert!(err("# only a comment\n").contains("the config file is empty"));
    assert!(err("- a\n- b\n").contains("invalid type: sequence"));
}

#[test]
fn anchors_and_merge_keys() {
    let text = "x-instance: &inst\n  port: 6432\n  sslmode: require\n  parameters: {wal_level: logical}\nregions:\n  - name: a\n    instance:\n      <<: *inst\n      host: h1\n  - name: b\n    instance: {<<: *inst, host: h2}\n";
    let cfg = Config::from_yaml_str(text, "c").unwrap();
    assert_eq!(cfg.regions[0].conn.port, Some(6432));
    assert_eq!(cfg.regions[1].conn.host.as_deref(), Some("h2"));
    assert_eq!(
        cfg.regions[1].conn.sslmode,
        Some(crate::pg::conninfo::SslMode::Require)
    );
}

#[test]
fn region_flags() {
    let mut cfg = Config::from_yaml_str(GUIDE, "g.yaml").unwrap();
    cfg.apply_region_flag("us-west-2=postgres://u:pw@127.0.0.1:5433/db2")
        .unwrap();
    cfg.apply_region_flag("eu-1=host=10.0.0.9 port=5434 dbname='x y'")
        .unwrap();
    let names: Vec<_> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["us-east-1", "us-west-2", "eu-1"]);
    let w = &cfg.regions[1].conn;
    assert_eq!(
        (w.host.as_deref(), w.port, w.dbname.as_deref()),
        (Some("127.0.0.1"), Some(5433), Some("db2"))
    );
    assert_eq!(cfg.regions[2].conn.dbname.as_deref(), Some("x y"));
    // Only the given fields replace.
    cfg.apply_region_flag("us-east-1=port=7777").unwrap();
    assert_eq!(
        cfg.regions[0].conn.host.as_deref(),
        Some("postgres.us-east-1.eden.internal")
    );
    assert_eq!(cfg.regions[0].conn.port, Some(7777));
    cfg.validate().unwrap();

    let mut empty = Config::default();
    assert!(
        empty
            .validate()
            .unwrap_err()
            .to_string()
            .contains("give --config FILE")
    );
    for (flag, want) in [
        ("postgres://u:hunter2@h/d", "--region expects NAME=CONNINFO"),
        (
            "postgres://u:hunter2@h/d?sslmode=require",
            "NAME is a region name",
        ),
        ("=postgres://h", "region name is empty"),
        ("r1=", "--region r1= gives no connection string"),
        (
            "r1=postgres://u:hunter2@h:99999/d",
            "--region r1: invalid port number",
        ),
        (
            "r1=host=h password=hunter2 bogus",
            "--region r1: missing \"=\"",
        ),
    ] {
        let e = empty.apply_region_flag(flag).unwrap_err();
        assert!(matches!(e, Error::Usage(_)));
        let e = e.to_string();
        assert!(e.contains(want), "{flag}: {e}");
        assert!(!e.contains("hunter2"), "{flag}: {e}");
    }
}

#[test]
fn rule_regions_checked_after_flags() {
    // A file without regions: rules are checked once the flags are in.
    let text = "replication:\n  node_groups:\n    - database: d\n      conflict_resolution_tables:\n        - {table: t, resolution: region_priority, regions: [r2, r1]}\n";
    let mut cfg = Config::from_yaml_str(text, "c.yaml").unwrap();
    cfg.apply_region_flag("r1=postgres://h1/d").unwrap();
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("region \"r2\", which is not defined"), "{e}");
    cfg.apply_region_flag("r2=postgres://h2/d").unwrap();
    cfg.validate().unwrap();
}
