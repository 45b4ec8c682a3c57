//! Scenario tests of the conflict-resolution core: one test per case of the module docs.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use eden_consistency::Value;
use eden_consistency::{
    Action, CustomResolver, Registry, Resolver, Row, Version, Winner, check_expression_order,
    synthetic_samples, validate_against_columns, validate_rule_syntax,
};
use eden_consistency::{Resolution, Tombstone};

const DAY: i64 = 86_400_000_000;

fn cols(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn row(id: i64, name: &str, updated: Option<i64>) -> Row {
    Row::from_pairs([
        ("id", Value::Int(id)),
        ("name", Value::Text(name.into())),
        (
            "updated_at",
            updated.map_or(Value::Null, Value::TimestampTz),
        ),
    ])
}

fn lww() -> Resolver {
    Resolver::new(
        &Resolution::LastWriteWins {
            tracking_column: Some("updated_at".into()),
        },
        None,
        &cols(&["id", "name", "updated_at"]),
        &Registry::new(),
    )
    .unwrap()
}

fn actions(d: &eden_consistency::Decision) -> Vec<(&str, Action)> {
    d.actions.iter().map(|(r, a)| (r.as_str(), *a)).collect()
}

#[test]
fn last_write_wins_by_tracking_column() {
    let v = [
        Version::present("us-east-1", 0, row(1, "old", Some(DAY))).with_commit_ts(5 * DAY),
        Version::present("us-west-2", 1, row(1, "new", Some(2 * DAY))).with_commit_ts(DAY),
    ];
    let d = lww().resolve(&v);
    assert_eq!(d.winner, Winner::Row(1));
    assert_eq!(d.decided_by, "updated_at");
    assert_eq!(
        actions(&d),
        [("us-east-1", Action::Update), ("us-west-2", Action::None)]
    );
    assert_eq!(d.winner_region(&v), Some("us-west-2"));
    assert!(!d.needs_human);
    // Data that agrees: nothing to do, whatever the commit timestamps.
    let same = [
        Version::present("us-east-1", 0, row(1, "x", Some(DAY))).with_commit_ts(1),
        Version::present("us-west-2", 1, row(1, "x", Some(DAY))).with_commit_ts(2),
    ];
    let d = lww().resolve(&same);
    assert!(d.is_noop());
    assert_eq!(d.decided_by, "updated_at");
}

#[test]
fn ties_fall_to_commit_timestamp_then_region_order_then_digest() {
    let a = Version::present("us-east-1", 0, row(1, "a", Some(DAY))).with_commit_ts(10);
    let b = Version::present("us-west-2", 1, row(1, "b", Some(DAY))).with_commit_ts(20);
    let d = lww().resolve(&[a.clone(), b.clone()]);
    assert_eq!(
        (d.winner.clone(), d.decided_by.as_str()),
        (Winner::Row(1), "tiebreak:commit_timestamp")
    );

    let b = b.with_commit_ts(10);
    let d = lww().resolve(&[a.clone(), b.clone()]);
    assert_eq!(
        (d.winner.clone(), d.decided_by.as_str()),
        (Winner::Row(0), "tiebreak:region_order")
    );
    // Whatever order the regions answered in.
    let d = lww().resolve(&[b.clone(), a.clone()]);
    assert_eq!(
        (d.winner.clone(), d.decided_by.as_str()),
        (Winner::Row(1), "tiebreak:region_order")
    );

    // Same region order (two versions of one region, as when folding repairs): the digest.
    let c = Version {
        region_order: 0,
        ..b.clone()
    };
    let d = lww().resolve(&[a.clone(), c.clone()]);
    assert_eq!(d.decided_by, "tiebreak:region_order"); // region name still differs
    let c = Version {
        region: "us-east-1".into(),
        ..c
    };
    let d = lww().resolve(&[a.clone(), c.clone()]);
    assert_eq!(d.decided_by, "tiebreak:digest");
    let expect = if a.digest > c.digest { 0 } else { 1 };
    assert_eq!(d.winner, Winner::Row(expect));
}

#[test]
fn null_tracking_value_is_older_than_every_value() {
    let v = [
        Version::present("r1", 0, row(1, "null", None)).with_commit_ts(100 * DAY),
        Version::present("r2", 1, row(1, "dated", Some(-1000 * DAY))).with_commit_ts(0),
    ];
    let d = lww().resolve(&v);
    assert_eq!(d.winner, Winner::Row(1));
    assert_eq!(d.decided_by, "updated_at");
    // first_write_wins is the exact mirror: NULL is the oldest, so it wins there.
    let fww = Resolver::new(
        &Resolution::FirstWriteWins {
            tracking_column: Some("updated_at".into()),
        },
        None,
        &[],
        &Registry::new(),
    )
    .unwrap();
    assert_eq!(fww.resolve(&v).winner, Winner::Row(0));
}

#[test]
fn commit_timestamp_without_tracking_column() {
    let r = Resolver::new(
        &Resolution::LastWriteWins {
            tracking_column: None,
        },
        None,
        &[],
        &Registry::new(),
    )
    .unwrap();
    let v = [
        Version::present("r1", 0, row(1, "a", None)).with_commit_ts(3),
        Version::present("r2", 1, row(1, "b", None)).with_commit_ts(2),
        Version::present("r3", 2, row(1, "c", None)),
    ];
    let d = r.resolve(&v);
    assert_eq!(
        (d.winner, d.decided_by.as_str()),
        (Winner::Row(0), "commit_timestamp")
    );
    let f = Resolver::new(
        &Resolution::FirstWriteWins {
            tracking_column: None,
        },
        None,
        &[],
        &Registry::new(),
    )
    .unwrap();
    let d = f.resolve(&v);
    // Unknown commit time is older than every known one.
    assert_eq!(
        (d.winner, d.decided_by.as_str()),
        (Winner::Row(2), "commit_timestamp")
    );
}

#[test]
fn region_priority_and_unlisted_regions() {
    let r = Resolver::new(
        &Resolution::RegionPriority {
            regions: cols(&["us-west-2", "us-east-1"]),
        },
        None,
        &[],
        &Registry::new(),
    )
    .unwrap();
    let v = [
        Version::present("us-east-1", 0, row(1, "east", Some(9 * DAY))),
        Version::present("us-west-2", 1, row(1, "west", Some(DAY))),
        Version::present("eu-west-1", 2, row(1, "eu", Some(10 * DAY))),
    ];
    let d = r.resolve(&v);
    assert_eq!(
        (d.winner, d.decided_by.as_str()),
        (Winner::Row(1), "region_priority")
    );
    // Two unlisted regions tie on priority: the tie-break order decides.
    let d = r.resolve(&[
        v[2].clone(),
        Version::present("ap-south-1", 3, row(1, "ap", None)),
    ]);
    assert_eq!(
        (d.winner, d.decided_by.as_str()),
        (Winner::Row(0), "tiebreak:region_order")
    );
}

#[test]
fn highest_value() {
    let r = Resolver::new(
        &Resolution::HighestValue {
            column: "limit_bytes".into(),
        },
        None,
        &cols(&["id", "limit_bytes"]),
        &Registry::new(),
    )
    .unwrap();
    let q = |n: Value| Row::from_pairs([("id", Value::Int(1)), ("limit_bytes", n)]);
    let v = [
        Version::present("r1", 0, q(Value::Numeric("10.5".into()))),
        Version::present("r2", 1, q(Value::Numeric("9".into()))),
        Version::present("r3", 2, q(Value::Null)),
    ];
    let d = r.resolve(&v);
    assert_eq!(
        (d.winner, d.decided_by.as_str()),
        (Winner::Row(0), "limit_bytes")
    );
    assert_eq!(
        d.actions
            .iter()
            .filter(|(_, a)| *a == Action::Update)
            .count(),
        2
    );
}

#[test]
fn missing_row_is_copied_not_deleted() {
    let v = [
        Version::present("r1", 0, row(1, "a", Some(DAY))),
        Version::absent("r2", 1),
        Version::absent("r3", 2),
    ];
    let d = lww().resolve(&v);
    assert_eq!(d.winner, Winner::Row(0));
    assert_eq!(d.decided_by, "missing_row");
    assert_eq!(
        actions(&d),
        [
            ("r1", Action::None),
            ("r2", Action::Insert),
            ("r3", Action::Insert)
        ]
    );
    // Nothing anywhere: nothing to do.
    let d = lww().resolve(&[Version::absent("r1", 0), Version::absent("r2", 1)]);
    assert!(d.is_noop());
    assert_eq!(d.winner_index, None);
}

fn tomb_table() -> Tombstone {
    Tombstone::Table {
        table: "deleted_rows".into(),
        deleted_at_column: "deleted_at".into(),
    }
}

#[test]
fn tombstone_newer_than_the_row_wins_and_propagates() {
    let r = Resolver::new(
        &Resolution::LastWriteWins {
            tracking_column: Some("updated_at".into()),
        },
        Some(&tomb_table()),
        &[],
        &Registry::new(),
    )
    .unwrap();
    let v = [
        Version::present("r1", 0, row(1, "a", Some(DAY))),
        Version::absent("r2", 1).with_tombstone(Value::TimestampTz(2 * DAY)),
        Version::absent("r3", 2),
    ];
    let d = r.resolve(&v);
    assert_eq!(d.winner, Winner::Delete);
    assert_eq!(d.winner_region(&v), Some("r2"));
    assert_eq!(d.decided_by, "tombstone");
    assert_eq!(
        actions(&d),
        [
            ("r1", Action::Delete),
            ("r2", Action::None),
            ("r3", Action::None)
        ]
    );
}

#[test]
fn tombstone_older_than_the_row_loses_and_the_row_is_restored() {
    let r = Resolver::new(
        &Resolution::LastWriteWins {
            tracking_column: Some("updated_at".into()),
        },
        Some(&tomb_table()),
        &[],
        &Registry::new(),
    )
    .unwrap();
    let v = [
        Version::present("r1", 0, row(1, "a", Some(3 * DAY))),
        Version::absent("r2", 1).with_tombstone(Value::TimestampTz(2 * DAY)),
    ];
    let d = r.resolve(&v);
    assert_eq!(d.winner, Winner::Row(0));
    assert_eq!(d.decided_by, "tombstone");
    assert_eq!(actions(&d), [("r1", Action::None), ("r2", Action::Insert)]);
    // A delete at the very time of the write does not win (it is not newer).
    let v = [
        v[0].clone(),
        Version::absent("r2", 1).with_tombstone(Value::TimestampTz(3 * DAY)),
    ];
    assert_eq!(r.resolve(&v).winner, Winner::Row(0));
}

#[test]
fn a_delete_kills_every_version_written_before_it_whatever_the_rule() {
    // region_priority prefers r1, but r1's version predates the delete while r3 rewrote the
    // row after it: the delete removed r1's version, r3's survives.
    let r = Resolver::new(
        &Resolution::RegionPriority {
            regions: cols(&["r1", "r2", "r3"]),
        },
        Some(&tomb_table()),
        &[],
        &Registry::new(),
    )
    .unwrap();
    let v = [
        Version::present("r1", 0, row(1, "a", None)).with_commit_ts(DAY),
        Version::absent("r2", 1).with_tombstone(Value::TimestampTz(2 * DAY)),
        Version::present("r3", 2, row(1, "c", None)).with_commit_ts(3 * DAY),
    ];
    let d = r.resolve(&v);
    assert_eq!(d.winner, Winner::Row(2));
    assert_eq!(d.decided_by, "tombstone");
    assert_eq!(
        actions(&d),
        [
            ("r1", Action::Update),
            ("r2", Action::Insert),
            ("r3", Action::None)
        ]
    );
}

fn soft_row(name: &str, updated: i64, deleted: Option<i64>) -> Row {
    Row::from_pairs([
        ("id", Value::Int(1)),
        ("name", Value::Text(name.into())),
        ("updated_at", Value::TimestampTz(updated)),
        (
            "deleted_at",
            deleted.map_or(Value::Null, Value::TimestampTz),
        ),
    ])
}

#[test]
fn soft_delete_column() {
    let t = Tombstone::Column {
        column: "deleted_at".into(),
    };
    let r = Resolver::new(
        &Resolution::LastWriteWins {
            tracking_column: Some("updated_at".into()),
        },
        Some(&t),
        &cols(&["id", "name", "updated_at", "deleted_at"]),
        &Registry::new(),
    )
    .unwrap();
    // Soft-deleted after the other region's last write: the soft-deleted row wins and is
    // copied (an update, never a hard delete).
    let v = [
        Version::present("r1", 0, soft_row("a", DAY, None)),
        Version::present("r2", 1, soft_row("a", DAY, Some(2 * DAY))),
        Version::absent("r3", 2),
    ];
    let d = r.resolve(&v);
    assert_eq!(d.winner, Winner::Row(1));
    assert_eq!(d.decided_by, "tombstone");
    assert_eq!(
        actions(&d),
        [
            ("r1", Action::Update),
            ("r2", Action::None),
            ("r3", Action::Insert)
        ]
    );
    // Written again after the soft delete: the live row wins, the row is restored.
    let v = [
        Version::present("r1", 0, soft_row("b", 3 * DAY, None)),
        v[1].clone(),
    ];
    let d = r.resolve(&v);
    assert_eq!(d.winner, Winner::Row(0));
    assert_eq!(actions(&d), [("r1", Action::None), ("r2", Action::Update)]);
    // A boolean soft-delete flag takes the row's own time as deletion time.
    let flag = Tombstone::Column {
        column: "is_deleted".into(),
    };
    let r = Resolver::new(
        &Resolution::LastWriteWins {
            tracking_column: Some("updated_at".into()),
        },
        Some(&flag),
        &[],
        &Registry::new(),
    )
    .unwrap();
    let f = |name: &str, t: i64, del: bool| {
        Row::from_pairs([
            ("id", Value::Int(1)),
            ("name", Value::Text(name.into())),
            ("updated_at", Value::TimestampTz(t)),
            ("is_deleted", Value::Bool(del)),
        ])
    };
    let v = [
        Version::present("r1", 0, f("a", DAY, false)),
        Version::present("r2", 1, f("a", 2 * DAY, true)),
    ];
    assert_eq!(r.resolve(&v).winner, Winner::Row(1));
    let v = [
        Version::present("r1", 0, f("a", 3 * DAY, false)),
        Version::present("r2", 1, f("a", 2 * DAY, true)),
    ];
    assert_eq!(r.resolve(&v).winner, Winner::Row(0));
}

#[test]
fn manual_never_changes_data() {
    let r = Resolver::new(&Resolution::Manual, None, &[], &Registry::new()).unwrap();
    let v = [
        Version::present("r1", 0, row(1, "a", None)),
        Version::present("r2", 1, row(1, "b", None)),
        Version::absent("r3", 2),
    ];
    let d = r.resolve(&v);
    assert!(d.needs_human);
    assert_eq!(d.decided_by, "manual");
    assert_eq!(
        actions(&d),
        [
            ("r1", Action::None),
            ("r2", Action::Manual),
            ("r3", Action::Manual)
        ]
    );
    let same = [v[0].clone(), Version::present("r2", 1, row(1, "a", None))];
    let d = r.resolve(&same);
    assert!(!d.needs_human && d.is_noop());
}

#[test]
fn custom_expression() {
    let rule = Resolution::Custom {
        expression: "a.version > b.version OR (a.version = b.version AND region(a) = 'us-east-1')"
            .into(),
    };
    let columns = cols(&["id", "version", "payload"]);
    validate_rule_syntax(&rule).unwrap();
    validate_against_columns(&rule, &columns).unwrap();
    let r = Resolver::new(&rule, None, &columns, &Registry::new()).unwrap();
    let f = |v: i64, p: &str| {
        Row::from_pairs([
            ("id", Value::Int(1)),
            ("version", Value::Int(v)),
            ("payload", Value::Text(p.into())),
        ])
    };
    let v = [
        Version::present("us-west-2", 0, f(3, "w")),
        Version::present("us-east-1", 1, f(3, "e")),
        Version::present("eu", 2, f(2, "x")),
    ];
    let d = r.resolve(&v);
    assert_eq!(
        (d.winner, d.decided_by.as_str()),
        (Winner::Row(1), "expression")
    );
    // No version beats the other (NULL versions): the tie-break order decides.
    let v = [
        Version::present("us-west-2", 0, f(3, "w")).with_commit_ts(1),
        Version::present(
            "eu",
            1,
            Row::from_pairs([
                ("id", Value::Int(1)),
                ("version", Value::Null),
                ("payload", Value::Text("n".into())),
            ]),
        )
        .with_commit_ts(2),
    ];
    let d = r.resolve(&v);
    assert_eq!(
        (d.winner, d.decided_by.as_str()),
        (Winner::Row(1), "tiebreak:commit_timestamp")
    );
}

#[test]
fn custom_expression_refusals_quote_the_offending_part() {
    let bad = |e: &str| {
        validate_rule_syntax(&Resolution::Custom {
            expression: e.into(),
        })
        .unwrap_err()
    };
    let m = bad("a.version > b.version AND pg_sleep(1) IS NULL");
    assert!(
        m.contains("`pg_sleep(1)`") && m.contains("not allowed"),
        "{m}"
    );
    assert!(bad("a.x IN (SELECT 1)").contains("not allowed"));
    assert!(bad("version > 1").contains("`version`"));
    assert!(bad("c.version > 1").contains("`c.version`"));
    assert!(bad("a.x LIKE 'a%'").contains("LIKE"));
    assert!(bad("CAST(a.x AS int) > 1").contains("CAST"));
    assert!(bad("a.x > ").contains("not valid SQL"));
    assert!(bad("").contains("empty"));
    assert!(bad("a.x + 1").contains("not a boolean"));
    assert!(bad("region(c) = 'x'").contains("region(c)"));
    let m = validate_against_columns(
        &Resolution::Custom {
            expression: "a.nope > b.nope".into(),
        },
        &cols(&["id"]),
    )
    .unwrap_err();
    assert!(m.contains("`nope`"), "{m}");
    // One sentence: no newline.
    assert!(!m.contains('\n'));
}

struct HighestW;
impl CustomResolver for HighestW {
    fn name(&self) -> &str {
        "highest_w"
    }
    fn compare(&self, a: &Version, b: &Version) -> Ordering {
        let w = |v: &Version| match v.get("w") {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        };
        w(a).cmp(&w(b))
    }
}

#[test]
fn custom_rust_resolver() {
    let mut reg = Registry::new();
    reg.register(HighestW).unwrap();
    assert!(
        reg.register(HighestW)
            .unwrap_err()
            .to_string()
            .contains("already registered")
    );
    let rule = Resolution::CustomRust {
        name: "highest_w".into(),
    };
    let r = Resolver::new(&rule, None, &[], &reg).unwrap();
    let f = |w: i64| Row::from_pairs([("id", Value::Int(1)), ("w", Value::Int(w))]);
    let v = [
        Version::present("r1", 0, f(1)),
        Version::present("r2", 1, f(7)),
        Version::present("r3", 2, f(3)),
    ];
    let d = r.resolve(&v);
    assert_eq!(
        (d.winner, d.decided_by.as_str()),
        (Winner::Row(1), "custom_rust:highest_w")
    );
    let e = Resolver::new(
        &Resolution::CustomRust {
            name: "nope".into(),
        },
        None,
        &[],
        &reg,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`nope`") && e.contains("highest_w"), "{e}");
}

#[test]
fn column_merge_takes_each_column_from_its_newest_version() {
    let mut m = BTreeMap::new();
    m.insert("price".to_string(), "price_at".to_string());
    m.insert("stock".to_string(), "stock_at".to_string());
    let rule = Resolution::ColumnMerge {
        columns: m,
        tracking_column: Some("updated_at".into()),
    };
    let columns = cols(&[
        "id",
        "name",
        "price",
        "price_at",
        "stock",
        "stock_at",
        "updated_at",
    ]);
    let r = Resolver::new(&rule, None, &columns, &Registry::new()).unwrap();
    let f = |name: &str, price: i64, pat: i64, stock: i64, sat: i64, up: i64| {
        Row::from_pairs([
            ("id", Value::Int(1)),
            ("name", Value::Text(name.into())),
            ("price", Value::Int(price)),
            ("price_at", Value::TimestampTz(pat)),
            ("stock", Value::Int(stock)),
            ("stock_at", Value::TimestampTz(sat)),
            ("updated_at", Value::TimestampTz(up)),
        ])
    };
    let v = [
        Version::present("r1", 0, f("n1", 10, 5, 100, 1, 5)),
        Version::present("r2", 1, f("n2", 12, 2, 90, 6, 6)),
    ];
    let d = r.resolve(&v);
    let Winner::Merged(row) = &d.winner else {
        panic!("expected a merge: {d:?}")
    };
    assert_eq!(row.get("name"), Some(&Value::Text("n2".into())));
    assert_eq!(row.get("price"), Some(&Value::Int(10)));
    assert_eq!(row.get("price_at"), Some(&Value::TimestampTz(5)));
    assert_eq!(row.get("stock"), Some(&Value::Int(90)));
    assert_eq!(d.decided_by, "updated_at,price_at,stock_at");
    assert_eq!(
        actions(&d),
        [("r1", Action::Update), ("r2", Action::Update)]
    );
    let src: BTreeMap<_, _> = d.column_sources.iter().cloned().collect();
    assert_eq!((src["price"], src["stock"], src["name"]), (0, 1, 1));
    // A merge that equals one version is that version.
    let v = [
        Version::present("r1", 0, f("n1", 10, 5, 100, 7, 5)),
        Version::present("r2", 1, f("n2", 12, 2, 90, 6, 6)),
    ];
    let d = r.resolve(&v);
    assert!(matches!(d.winner, Winner::Merged(_)));
    let v = [
        Version::present("r1", 0, f("n1", 10, 5, 100, 7, 7)),
        Version::present("r2", 1, f("n2", 12, 2, 90, 6, 6)),
    ];
    let d = r.resolve(&v);
    assert_eq!(d.winner, Winner::Row(0));
    assert_eq!(d.decided_by, "updated_at");
    // A tracking column that is itself merged by another is refused.
    let mut bad = BTreeMap::new();
    bad.insert("price".to_string(), "price_at".to_string());
    bad.insert("price_at".to_string(), "updated_at".to_string());
    assert!(
        validate_rule_syntax(&Resolution::ColumnMerge {
            columns: bad,
            tracking_column: None
        })
        .is_err()
    );
}

#[test]
fn unknown_columns_and_types_are_refused() {
    let reg = Registry::new();
    let e = Resolver::new(
        &Resolution::LastWriteWins {
            tracking_column: Some("nope".into()),
        },
        None,
        &cols(&["id"]),
        &reg,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`nope`"), "{e}");
    let e = Resolver::new(
        &Resolution::HighestValue {
            column: "nope".into(),
        },
        None,
        &cols(&["id"]),
        &reg,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("`nope`"), "{e}");
    let t = Tombstone::Column {
        column: "gone".into(),
    };
    let e = Resolver::new(&Resolution::Manual, Some(&t), &cols(&["id"]), &reg)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`gone`"), "{e}");
    assert!(validate_rule_syntax(&Resolution::RegionPriority { regions: vec![] }).is_err());

    let r = lww();
    let ty = |c: &str, t: &str| vec![(c.to_string(), t.to_string())];
    r.check_column_types(&ty("updated_at", "timestamp with time zone"))
        .unwrap();
    r.check_column_types(&ty("updated_at", "numeric(20,0)"))
        .unwrap();
    let e = r
        .check_column_types(&ty("updated_at", "text"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`updated_at`") && e.contains("text"), "{e}");
}

#[test]
fn expression_order_warnings() {
    let regions = cols(&["r1", "r2"]);
    let ok = "a.v > b.v";
    assert!(check_expression_order(ok, &synthetic_samples(ok, &regions)).is_empty());
    let ok2 = "COALESCE(a.v, -1) > COALESCE(b.v, -1) OR (COALESCE(a.v, -1) = COALESCE(b.v, -1) AND region(a) < region(b))";
    assert!(check_expression_order(ok2, &synthetic_samples(ok2, &regions)).is_empty());
    let sym = "a.v >= b.v";
    let w = check_expression_order(sym, &synthetic_samples(sym, &regions));
    assert!(w.iter().any(|m| m.contains("not antisymmetric")), "{w:?}");
    // Transitivity only matters where three versions of one key meet: three regions.
    let rps = "(a.v - b.v + 3) % 3 = 1";
    let w = check_expression_order(rps, &synthetic_samples(rps, &cols(&["r1", "r2", "r3"])));
    assert!(w.iter().any(|m| m.contains("not transitive")), "{w:?}");
    let div = "a.v / b.v > 0";
    let w = check_expression_order(div, &synthetic_samples(div, &regions));
    assert!(w.iter().any(|m| m.contains("division by zero")), "{w:?}");
    let w = check_expression_order("pg_sleep(1)", &[]);
    assert_eq!(w.len(), 1);
}

#[test]
fn custom_expression_over_non_orders_is_still_deterministic() {
    let rule = Resolution::Custom {
        expression: "(a.v - b.v + 3) % 3 = 1".into(),
    };
    let r = Resolver::new(&rule, None, &[], &Registry::new()).unwrap();
    let f = |v: i64| Row::from_pairs([("v", Value::Int(v))]);
    let v = [
        Version::present("r1", 0, f(0)),
        Version::present("r2", 1, f(1)),
        Version::present("r3", 2, f(2)),
    ];
    // Rock-paper-scissors: every version beats exactly one other; the tie-break order picks.
    let d = r.resolve(&v);
    assert_eq!(
        (d.winner, d.decided_by.as_str()),
        (Winner::Row(0), "tiebreak:region_order")
    );
    let rev: Vec<Version> = v.iter().rev().cloned().collect();
    assert_eq!(r.resolve(&rev).winner, Winner::Row(2));
}

#[test]
fn resolvers_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Resolver>();
    assert_send_sync::<Registry>();
    assert_send_sync::<Version>();
}

#[test]
fn decided_by_per_action() {
    let v = [
        Version::present("r1", 0, row(1, "a", Some(2 * DAY))),
        Version::present("r2", 1, row(1, "b", Some(DAY))),
        Version::absent("r3", 2),
    ];
    let d = lww().resolve(&v);
    assert_eq!(d.decided_by, "updated_at");
    assert_eq!(d.decided_by_for(1, &v), "updated_at");
    assert_eq!(d.decided_by_for(2, &v), "missing_row");
}

/// Throughput, for the record: `cargo test -p eden-consistency --test it -- --ignored --nocapture resolve_rules::throughput`.
#[test]
#[ignore]
fn throughput() {
    let r = lww();
    let expr = Resolver::new(&Resolution::Custom { expression: "a.updated_at > b.updated_at OR (a.updated_at = b.updated_at AND region(a) < region(b))".into() }, None, &[], &Registry::new()).unwrap();
    let n = 100_000;
    let sets: Vec<Vec<Version>> = (0..1000)
        .map(|i| {
            vec![
                Version::present("us-east-1", 0, row(i, "a", Some(i * 7 % 13))).with_commit_ts(i),
                Version::present("us-west-2", 1, row(i, "b", Some(i * 5 % 11)))
                    .with_commit_ts(i + 1),
                Version::absent("eu-west-1", 2),
            ]
        })
        .collect();
    for (name, res) in [("last_write_wins", &r), ("custom expression", &expr)] {
        let t = std::time::Instant::now();
        let mut updates = 0usize;
        for k in 0..n {
            let d = res.resolve(&sets[k % sets.len()]);
            updates += d.actions.iter().filter(|(_, a)| *a != Action::None).count();
        }
        let el = t.elapsed();
        println!(
            "{name}: {n} keys × 3 regions in {el:?} ({:.0} keys/s), {updates} actions",
            n as f64 / el.as_secs_f64()
        );
    }
}
