//! The config files operators write, and the messages bad ones get.

use std::path::PathBuf;

use eden_consistency::SslMode;
use eden_consistency::{Config, Resolution, Tombstone};
use eden_consistency::{Error, TableName};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
        .join(name)
}

fn load_err(name: &str) -> (String, String) {
    let path = fixture(name);
    let err = Config::load(&path).unwrap_err();
    assert!(err.is_config(), "{err:?}");
    (path.display().to_string(), err.to_string())
}

#[test]
fn guide_example_loads_unchanged() {
    let path = fixture("postgresql-multi-region.yaml");
    // The fixture is the guide's example, byte for byte.
    let guide = std::fs::read_to_string("/work/shared/seed/multi-region-deployment-guide.md")
        .or_else(|_| {
            std::fs::read_to_string(fixture(
                "../../shared/seed/multi-region-deployment-guide.md",
            ))
        });
    if let Ok(guide) = guide {
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            guide.contains(&format!("```yaml\n{text}```")),
            "fixture differs from the guide's example"
        );
    }
    let cfg = Config::load(&path).unwrap();
    assert_eq!(cfg.file.as_deref(), Some(path.as_path()));
    assert_eq!(cfg.regions.len(), 2);
    assert_eq!(cfg.regions[1].name, "us-west-2");
    assert_eq!(
        cfg.regions[1].conn.host.as_deref(),
        Some("postgres.us-west-2.eden.internal")
    );
    assert_eq!(cfg.lag_window(), std::time::Duration::from_secs(300));
    assert_eq!(cfg.provider.as_deref(), Some("pglogical"));
    let rule = cfg
        .table_rule("eden_vault", &TableName::new("public", "vault_secrets"))
        .unwrap();
    assert_eq!(
        rule.resolution,
        Resolution::LastWriteWins {
            tracking_column: Some("last_updated_at".into())
        }
    );
    assert!(
        cfg.table_rule("eden_vault", &TableName::new("public", "other"))
            .is_none()
    );
    assert!(cfg.node_group("nope").is_none());
}

#[test]
fn all_rules_fixture() {
    let cfg = Config::load(&fixture("config/all-rules.yaml")).unwrap();
    let names: Vec<_> = cfg.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["us-east-1", "us-west-2", "eu-central-1"]);
    let east = &cfg.regions[0].conn;
    assert_eq!(east.sslmode, Some(SslMode::VerifyFull));
    assert_eq!(east.sslrootcert.as_deref(), Some("/etc/eden/ca.pem"));
    assert_eq!(east.user.as_deref(), Some("reconciler"));
    assert_eq!(east.connect_timeout, Some(5));
    assert_eq!(cfg.regions[1].conn.port, Some(5433));
    assert_eq!(cfg.regions[1].conn.sslmode, Some(SslMode::Require));
    assert_eq!(cfg.regions[2].conn.addr(), "[::1]:5432");
    assert_eq!(cfg.region_index("eu-central-1"), Some(2));
    let g = cfg.node_group("eden_vault").unwrap();
    assert_eq!(g.conflicts_schema.as_deref(), Some("eden_meta"));
    assert_eq!(g.tables.len(), 10);
    let rule = |t: &str| {
        cfg.table_rule(
            "eden_vault",
            &TableName::parse_user(t)
                .map(|(s, n)| TableName::new(s.unwrap_or("public".into()), n))
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(rule("vault_secrets").exclude_columns, ["cache_blob"]);
    assert_eq!(rule("audit_log").resolution.name(), "first_write_wins");
    assert_eq!(rule("tenants").resolution.name(), "region_priority");
    assert_eq!(
        rule("quotas").resolution,
        Resolution::HighestValue {
            column: "limit_bytes".into()
        }
    );
    assert_eq!(rule("feature_flags").resolution.name(), "custom");
    assert_eq!(
        rule("billing.invoices").resolution,
        Resolution::CustomRust {
            name: "invoice_resolver".into()
        }
    );
    assert_eq!(rule("profiles").resolution.name(), "column_merge");
    assert_eq!(
        rule("legal_holds").key_columns.as_deref(),
        Some(&["tenant_id".to_string(), "hold_id".to_string()][..])
    );
    assert_eq!(
        rule("sessions").tombstone,
        Some(Tombstone::Column {
            column: "deleted_at".into()
        })
    );
    assert_eq!(
        rule("documents").tombstone,
        Some(Tombstone::Table {
            table: "document_tombstones".into(),
            deleted_at_column: "deleted_at".into()
        })
    );
    assert!(cfg.node_group("eden_cache").unwrap().tables.is_empty());
}

#[test]
fn malformed_yaml_names_line_and_column() {
    let (p, e) = load_err("config/malformed.yaml");
    assert!(
        e.starts_with(&format!(
            "{p}: line 7, column 4: the file is not valid YAML: "
        )),
        "{e}"
    );
}

#[test]
fn unknown_resolution() {
    let (p, e) = load_err("config/unknown-resolution.yaml");
    assert_eq!(
        e,
        format!(
            "{p}: table vault_secrets in node group \"eden_vault_group\": unknown resolution \"newest_wins\"; use one of last_write_wins, first_write_wins, region_priority, highest_value, custom, custom_rust, column_merge, manual"
        )
    );
}

#[test]
fn undefined_region_in_rule() {
    let (p, e) = load_err("config/undefined-region.yaml");
    assert_eq!(
        e,
        format!(
            "{p}: table tenants in node group \"eden_vault_group\": region_priority names region \"eu-central-1\", which is not defined under regions: (defined: us-east-1, us-west-2); fix the name or define the region"
        )
    );
}

#[test]
fn rule_missing_its_setting() {
    let (p, e) = load_err("config/missing-column.yaml");
    assert_eq!(
        e,
        format!(
            "{p}: table quotas in node group \"eden_vault_group\": resolution highest_value needs the column to compare; add \"column: <column name>\" to the table's entry"
        )
    );
}

#[test]
fn region_errors() {
    let (p, e) = load_err("config/duplicate-region.yaml");
    assert_eq!(
        e,
        format!(
            "{p}: region \"us-east-1\" is defined twice under regions:; give each region a unique name"
        )
    );
    let (p, e) = load_err("config/no-host.yaml");
    assert_eq!(
        e,
        format!(
            "{p}: region \"us-east-1\" has no host; add \"instance: {{host: <host>, port: 5432}}\" (or a conninfo:) to it"
        )
    );
    let (p, e) = load_err("config/bad-port.yaml");
    assert_eq!(
        e,
        format!(
            "{p}: line 6, column 13: regions[0].instance.port: invalid port \"abc\": expected a port number (1-65535)"
        )
    );
}

#[test]
fn global_default_needing_settings() {
    let (p, e) = load_err("config/bad-global.yaml");
    assert!(
        e.starts_with(&format!(
            "{p}: global.conflict_resolution: region_priority needs a per-table setting"
        )),
        "{e}"
    );
}

#[test]
fn missing_file() {
    let err = Config::load(&fixture("config/does-not-exist.yaml")).unwrap_err();
    assert!(matches!(err, Error::Config { .. }));
    assert!(
        err.to_string()
            .ends_with("does-not-exist.yaml: cannot read the config file: no such file"),
        "{err}"
    );
}

#[test]
fn region_flags_over_the_guide() {
    let mut cfg = Config::load(&fixture("postgresql-multi-region.yaml")).unwrap();
    cfg.apply_region_flag(
        "us-east-1=postgresql://reconciler:s3cret@127.0.0.1:6432/eden_vault?sslmode=disable",
    )
    .unwrap();
    cfg.apply_region_flag("ap-south-1=host=127.0.0.1 port=6433")
        .unwrap();
    assert_eq!(cfg.regions[0].conn.addr(), "127.0.0.1:6432");
    assert_eq!(cfg.regions[0].conn.password.as_deref(), Some("s3cret"));
    assert!(!format!("{cfg:?}").contains("s3cret"));
    assert_eq!(cfg.regions[2].name, "ap-south-1");
    cfg.validate().unwrap();
    let e = cfg
        .apply_region_flag("us-east-1=postgres://u:s3cret@h:port/db")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "--region us-east-1: invalid port number (expected 1-65535)"
    );
}
