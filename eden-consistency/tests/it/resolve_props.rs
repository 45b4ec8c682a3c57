//! Properties of conflict resolution, for every built-in rule and for custom expressions and
//! Rust resolvers: deterministic; independent of the order regions are given in; idempotent;
//! resolving N regions equals resolving them two at a time in any grouping (so regions
//! converge whatever the order of repairs); the winner is always one of the inputs (for a
//! column merge, every column from some input); a tombstone newer than every version always
//! wins, an older one never does.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use eden_consistency::Value;
use eden_consistency::{
    Action, CustomResolver, Decision, Registry, Resolver, Row, Version, Winner,
};
use eden_consistency::{Resolution, Tombstone};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-south-1"];
const COLUMNS: [&str; 6] = ["id", "v", "w", "ts", "a_ts", "deleted_at"];

/// Highest `w` wins; `Equal` on ties (a strict weak order).
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

fn registry() -> Registry {
    Registry::new().with(HighestW).unwrap()
}

fn columns() -> Vec<String> {
    COLUMNS.iter().map(|s| s.to_string()).collect()
}

/// Every rule under test, with whether it is a total order over versions (the condition of
/// the two-at-a-time property).
fn rules() -> Vec<(Resolution, bool)> {
    let mut merge = BTreeMap::new();
    merge.insert("w".to_string(), "a_ts".to_string());
    vec![
        (
            Resolution::LastWriteWins {
                tracking_column: Some("ts".into()),
            },
            true,
        ),
        (
            Resolution::LastWriteWins {
                tracking_column: None,
            },
            true,
        ),
        (
            Resolution::FirstWriteWins {
                tracking_column: Some("ts".into()),
            },
            true,
        ),
        (
            Resolution::FirstWriteWins {
                tracking_column: None,
            },
            true,
        ),
        (
            Resolution::RegionPriority {
                regions: vec!["eu-west-1".into(), "us-east-1".into()],
            },
            true,
        ),
        (Resolution::HighestValue { column: "v".into() }, true),
        (
            Resolution::Custom {
                expression: "COALESCE(a.v, -1) > COALESCE(b.v, -1)".into(),
            },
            true,
        ),
        (
            Resolution::Custom {
                expression: "a.w > b.w OR (a.w = b.w AND region(a) < region(b))".into(),
            },
            false,
        ),
        (
            Resolution::Custom {
                expression: "(a.v - b.v + 3) % 3 = 1".into(),
            },
            false,
        ),
        (
            Resolution::CustomRust {
                name: "highest_w".into(),
            },
            true,
        ),
        (Resolution::Manual, true),
        (
            Resolution::ColumnMerge {
                columns: merge,
                tracking_column: Some("ts".into()),
            },
            false,
        ),
    ]
}

fn small_int() -> impl Strategy<Value = Value> {
    prop_oneof![1 => Just(Value::Null), 4 => (0i64..3).prop_map(Value::Int)]
}

fn small_ts() -> impl Strategy<Value = Value> {
    prop_oneof![1 => Just(Value::Null), 4 => (0i64..4).prop_map(Value::TimestampTz)]
}

fn a_row() -> impl Strategy<Value = Row> {
    (small_int(), small_int(), small_ts(), small_ts()).prop_map(|(v, w, ts, a_ts)| {
        Row::from_pairs([
            ("id", Value::Int(1)),
            ("v", v),
            ("w", w),
            ("ts", ts),
            ("a_ts", a_ts),
            ("deleted_at", Value::Null),
        ])
    })
}

/// One region's state: a row (maybe soft-deleted) or absence (maybe with a tombstone).
#[derive(Debug, Clone)]
enum Slot {
    Row(Row, Option<i64>, Option<i64>),
    Absent(Option<i64>),
}

fn maybe(p: f64, range: std::ops::Range<i64>) -> BoxedStrategy<Option<i64>> {
    if p > 0.0 {
        prop::option::weighted(p, range).boxed()
    } else {
        Just(None).boxed()
    }
}

fn slot(tombstones: bool) -> impl Strategy<Value = Slot> {
    let row = (
        a_row(),
        prop::option::weighted(0.8, 0i64..4),
        maybe(if tombstones { 0.2 } else { 0.0 }, 0..5),
    )
        .prop_map(|(r, c, soft)| Slot::Row(r, c, soft));
    let absent = maybe(if tombstones { 0.6 } else { 0.0 }, 0..5).prop_map(Slot::Absent);
    prop_oneof![4 => row, 1 => absent]
}

fn build(slots: &[Slot]) -> Vec<Version> {
    slots
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Slot::Row(r, c, soft) => {
                let r = match soft {
                    Some(t) => set(r, "deleted_at", Value::TimestampTz(*t)),
                    None => r.clone(),
                };
                let v = Version::present(REGIONS[i], i, r);
                match c {
                    Some(c) => v.with_commit_ts(*c),
                    None => v,
                }
            }
            Slot::Absent(t) => {
                let v = Version::absent(REGIONS[i], i);
                match t {
                    Some(t) => v.with_tombstone(Value::TimestampTz(*t)),
                    None => v,
                }
            }
        })
        .collect()
}

fn set(r: &Row, col: &str, val: Value) -> Row {
    Row::from_pairs(r.iter().map(|(c, v)| {
        (
            c.to_string(),
            if c == col { val.clone() } else { v.clone() },
        )
    }))
}

fn versions(tombstones: bool) -> impl Strategy<Value = Vec<Version>> {
    prop::collection::vec(slot(tombstones), 1..=4).prop_map(|s| build(&s))
}

fn resolver(rule: &Resolution, tomb: Option<&Tombstone>) -> Resolver {
    Resolver::new(rule, tomb, &columns(), &registry()).unwrap()
}

fn soft() -> Tombstone {
    Tombstone::Column {
        column: "deleted_at".into(),
    }
}

/// The decision as something independent of input order: winning content, the winner's
/// region (unless the winning content is held by several regions), decided_by, and actions by
/// region.
#[derive(Debug, PartialEq)]
struct Outcome {
    content: Option<Row>,
    decided_by: String,
    actions: BTreeMap<String, Action>,
    needs_human: bool,
}

fn outcome(d: &Decision, v: &[Version]) -> Outcome {
    Outcome {
        content: d.winning_row(v).cloned(),
        decided_by: d.decided_by.clone(),
        actions: d.actions.iter().cloned().collect(),
        needs_human: d.needs_human,
    }
}

fn same_content(a: Option<&Row>, b: Option<&Row>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.same_values(y),
        (None, None) => true,
        _ => false,
    }
}

/// The state a pair of regions is left in after repairing them with decision `d`: the
/// winning version (with its metadata), or the winning delete.
fn survivor(d: &Decision, pair: &[Version]) -> Version {
    match (&d.winner, d.winner_index) {
        (Winner::Merged(row), Some(i)) => {
            let base = &pair[i];
            let mut v = Version::present(base.region.clone(), base.region_order, row.clone());
            v.commit_ts = base.commit_ts;
            v
        }
        (_, Some(i)) => pair[i].clone(),
        (_, None) => pair[0].clone(),
    }
}

/// Resolves `versions` two at a time, in the grouping `picks` describes, down to one state.
fn pairwise(r: &Resolver, versions: &[Version], picks: &[(usize, usize)]) -> Version {
    let mut pool: Vec<Version> = versions.to_vec();
    let mut k = 0;
    while pool.len() > 1 {
        let (x, y) = picks[k % picks.len()];
        k += 1;
        let i = x % pool.len();
        let mut j = y % (pool.len() - 1);
        if j >= i {
            j += 1;
        }
        let a = pool[i].clone();
        let b = pool[j].clone();
        let pair = [a, b];
        let d = r.resolve(&pair);
        let s = survivor(&d, &pair);
        let (hi, lo) = if i > j { (i, j) } else { (j, i) };
        pool.remove(hi);
        pool.remove(lo);
        pool.push(s);
    }
    pool.pop().unwrap()
}

fn winner_is_an_input(d: &Decision, v: &[Version]) -> Result<(), TestCaseError> {
    match &d.winner {
        Winner::Row(i) => prop_assert!(*i < v.len() && v[*i].row.is_some()),
        Winner::Delete => prop_assert!(
            v.iter().all(|x| x.row.is_none()) || d.winner_index.is_some_and(|i| i < v.len())
        ),
        Winner::Merged(row) => {
            prop_assert_eq!(d.column_sources.len(), row.columns().len());
            for (c, i) in &d.column_sources {
                prop_assert!(*i < v.len());
                prop_assert_eq!(
                    v[*i].get(c),
                    row.get(c),
                    "column {} not from version {}",
                    c,
                    i
                );
            }
        }
    }
    if let Some(i) = d.winner_index {
        prop_assert!(i < v.len());
    }
    Ok(())
}

/// Makes the tracking values of a column merge distinct (ties in a merge are broken by
/// version metadata, which a merged row cannot carry for each group).
fn distinct_merge_values(v: &mut [Version]) {
    for (k, x) in v.iter_mut().enumerate() {
        if let Some(r) = &x.row {
            let mut r = set(r, "ts", Value::TimestampTz(10 + (k as i64 * 7) % 5));
            r = set(&r, "a_ts", Value::TimestampTz(20 + (k as i64 * 3) % 5));
            *x = Version {
                row: Some(r.clone()),
                digest: r.digest(),
                ..x.clone()
            };
        }
    }
}

/// Failure seeds are kept in `eden-consistency/proptest-regressions/resolve_props.txt`
/// (cargo runs tests from the package root).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/resolve_props.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn deterministic_and_winner_is_an_input(v in versions(true)) {
        for (rule, _) in rules() {
            for tomb in [None, Some(soft())] {
                let r = resolver(&rule, tomb.as_ref());
                let d1 = r.resolve(&v);
                let d2 = r.resolve(&v);
                prop_assert_eq!(&d1, &d2);
                prop_assert_eq!(d1.actions.len(), v.len());
                winner_is_an_input(&d1, &v)?;
            }
        }
    }

    #[test]
    fn independent_of_region_order(v in versions(true), perm in Just((0..4usize).collect::<Vec<_>>()).prop_shuffle()) {
        let order: Vec<usize> = perm.into_iter().filter(|&i| i < v.len()).collect();
        let shuffled: Vec<Version> = order.iter().map(|&i| v[i].clone()).collect();
        for (rule, _) in rules() {
            for tomb in [None, Some(soft())] {
                let r = resolver(&rule, tomb.as_ref());
                let a = outcome(&r.resolve(&v), &v);
                let b = outcome(&r.resolve(&shuffled), &shuffled);
                prop_assert_eq!(&a, &b, "rule {:?}", rule);
            }
        }
    }

    #[test]
    fn idempotent(v in versions(true), commits in prop::collection::vec(prop::option::of(0i64..4), 4)) {
        for (rule, _) in rules() {
            for tomb in [None, Some(soft())] {
                let r = resolver(&rule, tomb.as_ref());
                let d = r.resolve(&v);
                // Apply the decision: every region ends up with the winner (or without a row),
                // with whatever commit timestamp the write got.
                let target = d.winning_row(&v).cloned();
                let deleted_by = d.winner_index.and_then(|i| v[i].tombstone.clone());
                let applied: Vec<Version> = v.iter().enumerate().map(|(i, x)| {
                    let mut y = match &target {
                        Some(row) => Version::present(x.region.clone(), x.region_order, row.clone()),
                        None => Version::absent(x.region.clone(), x.region_order),
                    };
                    y.commit_ts = commits[i];
                    if y.row.is_none() {
                        y.tombstone = deleted_by.clone();
                    }
                    y
                }).collect();
                let again = r.resolve(&applied);
                prop_assert!(again.is_noop(), "rule {:?}: {:?} then {:?}", rule, d, again);
                prop_assert!(!again.needs_human);
            }
        }
    }

    #[test]
    fn pairwise_in_any_grouping_equals_all_at_once(
        v in versions(false),
        picks in prop::collection::vec((0usize..8, 0usize..8), 1..6),
    ) {
        for (rule, total_order) in rules() {
            let mut v = v.clone();
            if matches!(rule, Resolution::ColumnMerge { .. }) {
                distinct_merge_values(&mut v);
            } else if !total_order {
                continue;
            }
            let r = resolver(&rule, None);
            let all = r.resolve(&v);
            let folded = pairwise(&r, &v, &picks);
            prop_assert!(
                same_content(all.winning_row(&v), folded.row.as_ref()),
                "rule {:?}: all at once {:?}, pairwise {:?}", rule, all.winning_row(&v), folded.row
            );
        }
    }

    #[test]
    fn pairwise_with_tombstones_for_time_ordered_rules(
        v in versions(true),
        picks in prop::collection::vec((0usize..8, 0usize..8), 1..6),
    ) {
        // A delete and a write compare by time; the rules whose order is time itself keep the
        // two-at-a-time property with deletes (see the module docs for why others cannot).
        for rule in [
            Resolution::LastWriteWins { tracking_column: None },
            Resolution::LastWriteWins { tracking_column: Some("ts".into()) },
        ] {
            for tomb in [None, Some(soft())] {
                let r = resolver(&rule, tomb.as_ref());
                let all = r.resolve(&v);
                let folded = pairwise(&r, &v, &picks);
                prop_assert!(
                    same_content(all.winning_row(&v), folded.row.as_ref()),
                    "rule {:?}: all at once {:?}, pairwise {:?}", rule, all, folded
                );
            }
        }
    }

    #[test]
    fn newer_tombstone_always_wins(v in versions(false), at in 0usize..4) {
        // Every write happened at time <= 4 (commit timestamps and tracking values alike).
        let mut v = v;
        let pos = at.min(v.len());
        v.insert(pos, Version::absent("tomb", 9).with_tombstone(Value::TimestampTz(100)));
        for (rule, _) in rules() {
            let r = resolver(&rule, Some(&Tombstone::Table { table: "t".into(), deleted_at_column: "d".into() }));
            let d = r.resolve(&v);
            prop_assert_eq!(&d.winner, &Winner::Delete, "rule {:?}", rule);
            prop_assert_eq!(d.winner_region(&v), Some("tomb"));
            for (x, (_, a)) in v.iter().zip(&d.actions) {
                let expect = match (x.row.is_some(), matches!(rule, Resolution::Manual)) {
                    (false, _) => Action::None,
                    (true, false) => Action::Delete,
                    (true, true) => Action::Manual,
                };
                prop_assert_eq!(*a, expect);
            }
        }
    }

    #[test]
    fn older_tombstone_never_wins(v in versions(false), at in 0usize..4) {
        // Every version has a known write time (commit timestamp, and tracking value where the
        // rule has one), all after the delete.
        let v: Vec<Version> = v.into_iter().map(|x| {
            let row = x.row.as_ref().map(|r| {
                let r = if r.get("ts") == Some(&Value::Null) { set(r, "ts", Value::TimestampTz(0)) } else { r.clone() };
                if r.get("a_ts") == Some(&Value::Null) { set(&r, "a_ts", Value::TimestampTz(0)) } else { r }
            });
            match row {
                Some(r) => Version::present(x.region.clone(), x.region_order, r).with_commit_ts(x.commit_ts.unwrap_or(0)),
                None => x,
            }
        }).collect();
        prop_assume!(v.iter().any(|x| x.row.is_some()));
        let pos = at.min(v.len());
        let mut with = v.clone();
        with.insert(pos, Version::absent("tomb", 9).with_tombstone(Value::TimestampTz(-100)));
        for (rule, _) in rules() {
            let r = resolver(&rule, Some(&Tombstone::Table { table: "t".into(), deleted_at_column: "d".into() }));
            let without = r.resolve(&v);
            let d = r.resolve(&with);
            prop_assert!(d.winner != Winner::Delete, "rule {:?}", rule);
            prop_assert!(same_content(d.winning_row(&with), without.winning_row(&v)), "rule {:?}", rule);
            let expect = if matches!(rule, Resolution::Manual) { Action::Manual } else { Action::Insert };
            prop_assert_eq!(d.actions[pos].1, expect);
        }
    }
}

/// SQL-ish fragments, so that random text often parses.
fn sqlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("a.v".to_string()),
        Just("b.v".to_string()),
        Just("a.ts".to_string()),
        Just("b.w".to_string()),
        Just(" AND ".to_string()),
        Just(" OR ".to_string()),
        Just(" NOT ".to_string()),
        Just(" > ".to_string()),
        Just(" = ".to_string()),
        Just(" + ".to_string()),
        Just(" - ".to_string()),
        Just(" * ".to_string()),
        Just(" / ".to_string()),
        Just(" % ".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(", ".to_string()),
        Just("COALESCE(".to_string()),
        Just("GREATEST(".to_string()),
        Just("LEAST(".to_string()),
        Just("region(a)".to_string()),
        Just("commit_ts(b)".to_string()),
        Just(" IS NULL".to_string()),
        Just(" IS NOT DISTINCT FROM ".to_string()),
        Just("NULL".to_string()),
        Just("'x'".to_string()),
        Just("INTERVAL '1 day'".to_string()),
        Just("DATE '2000-01-01'".to_string()),
        Just("-".to_string()),
        (0i64..100).prop_map(|n| n.to_string()),
        "[a-z0-9_'\\.\\(\\) <>=!:;\"\\\\é]{1,6}",
    ];
    prop::collection::vec(token, 1..12).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn expressions_never_panic(text in sqlish(), v in versions(true)) {
        if let Ok(e) = eden_consistency::Expression::parse(&text) {
            for a in &v {
                for b in &v {
                    let _ = e.eval(a, b);
                }
            }
            // Random text may name columns the table lacks (`b.v19NULL`): refused, not a panic.
            if let Ok(r) = Resolver::new(&Resolution::Custom { expression: text.clone() }, None, &columns(), &registry()) {
                let d = r.resolve(&v);
                winner_is_an_input(&d, &v)?;
            }
        }
        let _ = eden_consistency::check_expression_order(&text, &v);
    }
}
