//! Differential test: custom expressions evaluated by the resolver (three-valued logic,
//! NULL handling of comparisons, COALESCE, GREATEST/LEAST, IS [NOT] DISTINCT FROM,
//! arithmetic) agree with PostgreSQL evaluating the same expression with the same values.
//!
//! Talks to the shared test server (`EDEN_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) with read-only `SELECT`s: no database or
//! object is created.

use eden_consistency::Value;
use eden_consistency::{Expression, Row, Version};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};

/// A tiny deterministic generator (xorshift), so that a proptest seed fixes an expression.
struct Gen(u64);

impl Gen {
    fn next(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }
}

/// An integer expression: (text for the resolver, text for PostgreSQL).
fn int_expr(g: &mut Gen, depth: u32, bind: &dyn Fn(&str) -> String) -> (String, String) {
    let leaf = depth == 0 || g.next(3) == 0;
    if leaf {
        return match g.next(4) {
            0 | 1 => {
                let c = ["a.x", "a.y", "b.x", "b.y"][g.next(4) as usize];
                (c.to_string(), bind(c))
            }
            2 => {
                let n = g.next(5);
                (n.to_string(), n.to_string())
            }
            _ => ("a.z".to_string(), bind("a.z")),
        };
    }
    match g.next(6) {
        0..=2 => {
            let op = ["+", "-", "*"][g.next(3) as usize];
            let (l1, l2) = int_expr(g, depth - 1, bind);
            let (r1, r2) = int_expr(g, depth - 1, bind);
            (format!("({l1} {op} {r1})"), format!("({l2} {op} {r2})"))
        }
        3 => {
            let (x1, x2) = int_expr(g, depth - 1, bind);
            (format!("(-{x1})"), format!("(-{x2})"))
        }
        _ => {
            let f = ["COALESCE", "GREATEST", "LEAST"][g.next(3) as usize];
            let n = 1 + g.next(3);
            let (mut a1, mut a2) = (Vec::new(), Vec::new());
            for _ in 0..n {
                let (x1, x2) = int_expr(g, depth - 1, bind);
                a1.push(x1);
                a2.push(x2);
            }
            (
                format!("{f}({})", a1.join(", ")),
                format!("{f}({})", a2.join(", ")),
            )
        }
    }
}

/// A boolean expression: (text for the resolver, text for PostgreSQL).
fn bool_expr(g: &mut Gen, depth: u32, bind: &dyn Fn(&str) -> String) -> (String, String) {
    if depth == 0 {
        return match g.next(4) {
            0 => ("TRUE".into(), "TRUE".into()),
            1 => ("FALSE".into(), "FALSE".into()),
            _ => {
                let op = ["=", "<>", "<", "<=", ">", ">="][g.next(6) as usize];
                let (l1, l2) = int_expr(g, 1, bind);
                let (r1, r2) = int_expr(g, 1, bind);
                (format!("({l1} {op} {r1})"), format!("({l2} {op} {r2})"))
            }
        };
    }
    match g.next(8) {
        0 | 1 => {
            let op = ["AND", "OR"][g.next(2) as usize];
            let (l1, l2) = bool_expr(g, depth - 1, bind);
            let (r1, r2) = bool_expr(g, depth - 1, bind);
            (format!("({l1} {op} {r1})"), format!("({l2} {op} {r2})"))
        }
        2 => {
            let (x1, x2) = bool_expr(g, depth - 1, bind);
            (format!("(NOT {x1})"), format!("(NOT {x2})"))
        }
        3 => {
            let not = if g.next(2) == 0 { "" } else { "NOT " };
            let (x1, x2) = int_expr(g, depth, bind);
            (
                format!("({x1} IS {not}NULL)"),
                format!("({x2} IS {not}NULL)"),
            )
        }
        4 => {
            let not = if g.next(2) == 0 { "" } else { "NOT " };
            let (l1, l2) = int_expr(g, depth, bind);
            let (r1, r2) = int_expr(g, depth, bind);
            (
                format!("({l1} IS {not}DISTINCT FROM {r1})"),
                format!("({l2} IS {not}DISTINCT FROM {r2})"),
            )
        }
        5 => {
            let t = ["TRUE", "FALSE"][g.next(2) as usize];
            let not = if g.next(2) == 0 { "" } else { "NOT " };
            let (x1, x2) = bool_expr(g, depth - 1, bind);
            (format!("({x1} IS {not}{t})"), format!("({x2} IS {not}{t})"))
        }
        _ => {
            let op = ["=", "<>", "<", "<=", ">", ">="][g.next(6) as usize];
            let (l1, l2) = int_expr(g, depth.min(3), bind);
            let (r1, r2) = int_expr(g, depth.min(3), bind);
            (format!("({l1} {op} {r1})"), format!("({l2} {op} {r2})"))
        }
    }
}

fn val(x: Option<i64>) -> Value {
    x.map_or(Value::Null, Value::Int)
}

#[test]
fn expressions_evaluate_as_postgresql_does() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = eden_test_util::admin_url();
    let client = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        tokio::spawn(conn);
        client
    });
    let config = Config {
        cases: 400,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/resolve_pg_eval.txt",
        ))),
        ..Config::default()
    };
    let small = || prop::option::of(0i64..5);
    let strategy = (any::<u64>(), small(), small(), small(), small());
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |(seed, ax, ay, bx, by)| {
        let bind = |c: &str| -> String {
            let v = match c {
                "a.x" => ax,
                "a.y" => ay,
                "b.x" => bx,
                "b.y" => by,
                _ => None,
            };
            v.map_or("(NULL::bigint)".into(), |n| format!("({n}::bigint)"))
        };
        let mut g = Gen(seed | 1);
        let (ours, theirs) = bool_expr(&mut g, 3, &bind);
        let expr =
            Expression::parse(&ours).map_err(|e| TestCaseError::fail(format!("{ours}: {e}")))?;
        let a = Version::present(
            "r1",
            0,
            Row::from_pairs([("x", val(ax)), ("y", val(ay)), ("z", Value::Null)]),
        );
        let b = Version::present(
            "r2",
            1,
            Row::from_pairs([("x", val(bx)), ("y", val(by)), ("z", Value::Null)]),
        );
        let mine = expr
            .eval(&a, &b)
            .map_err(|e| TestCaseError::fail(format!("{ours}: {e}")))?;
        let pg: Option<bool> = rt
            .block_on(client.query_one(&format!("SELECT {theirs}"), &[]))
            .map_err(|e| TestCaseError::fail(format!("{theirs}: {e}")))?
            .get(0);
        prop_assert_eq!(
            mine,
            pg,
            "{} with a=({:?},{:?}) b=({:?},{:?})",
            ours,
            ax,
            ay,
            bx,
            by
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// One binding set: the resolver's values and the same values as PostgreSQL literals.
fn typed_version(
    region: &str,
    order: usize,
    vals: &[(&str, Value)],
) -> (Version, Vec<(String, String)>) {
    use eden_consistency::micros_to_datetime;
    let lit = |c: &str, v: &Value| -> String {
        match v {
            Value::Null => {
                let ty = match c {
                    "ts" => "timestamptz",
                    "d" => "date",
                    "n" => "numeric",
                    "f" => "float8",
                    "t" => "text",
                    "iv" => "interval",
                    "b" => "boolean",
                    "u" => "uuid",
                    _ => "bigint",
                };
                format!("(NULL::{ty})")
            }
            Value::Bool(b) => format!("{b}::boolean"),
            Value::Int(i) => format!("({i}::bigint)"),
            Value::Float(f) => format!("({f}::float8)"),
            Value::Numeric(n) => format!("({n}::numeric)"),
            Value::Text(t) => format!("('{t}'::text)"),
            Value::Uuid(u) => format!("('{u}'::uuid)"),
            Value::Date(d) => format!("('2000-01-01'::date + {d})"),
            Value::TimestampTz(t) => format!(
                "('{}'::timestamptz)",
                micros_to_datetime(*t)
                    .unwrap()
                    .format("%Y-%m-%d %H:%M:%S%.6f+00")
            ),
            Value::Interval {
                months,
                days,
                micros,
            } => format!("('{months} months {days} days {micros} microseconds'::interval)"),
            other => panic!("no literal for {other:?}"),
        }
    };
    let row = Row::from_pairs(vals.iter().map(|(c, v)| (c.to_string(), v.clone())));
    let lits = vals
        .iter()
        .map(|(c, v)| (c.to_string(), lit(c, v)))
        .collect();
    (Version::present(region, order, row), lits)
}

/// Replaces `a.col` / `b.col` with the literals of the two versions.
fn substitute(expr: &str, a: &[(String, String)], b: &[(String, String)]) -> String {
    let mut out = String::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let side = bytes[i];
        let boundary =
            i == 0 || !(bytes[i - 1] as char).is_ascii_alphanumeric() && bytes[i - 1] != b'_';
        if boundary && (side == b'a' || side == b'b') && bytes.get(i + 1) == Some(&b'.') {
            let start = i + 2;
            let mut end = start;
            while end < bytes.len()
                && ((bytes[end] as char).is_ascii_alphanumeric() || bytes[end] == b'_')
            {
                end += 1;
            }
            let col = &expr[start..end];
            let lits = if side == b'a' { a } else { b };
            let lit = lits
                .iter()
                .find(|(c, _)| c == col)
                .map(|(_, l)| l.clone())
                .unwrap_or_else(|| "NULL".into());
            out.push_str(&lit);
            i = end;
        } else {
            out.push(side as char);
            i += 1;
        }
    }
    out
}

#[test]
fn typed_expressions_evaluate_as_postgresql_does() {
    const HOUR: i64 = 3_600_000_000;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = eden_test_util::admin_url();
    let client = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test server");
        tokio::spawn(conn);
        client
    });
    let set = |ts: i64, d: i32, n: &str, f: f64, t: &str, iv: i64, b: bool, x: i64, u: u128| {
        vec![
            ("ts", Value::TimestampTz(ts)),
            ("d", Value::Date(d)),
            ("n", Value::Numeric(n.into())),
            ("f", Value::Float(f)),
            ("t", Value::Text(t.into())),
            (
                "iv",
                Value::Interval {
                    months: 0,
                    days: 1,
                    micros: iv,
                },
            ),
            ("b", Value::Bool(b)),
            ("x", Value::Int(x)),
            ("u", Value::Uuid(uuid::Uuid::from_u128(u))),
        ]
    };
    let nulls: Vec<(&str, Value)> = ["ts", "d", "n", "f", "t", "iv", "b", "x", "u"]
        .iter()
        .map(|c| (*c, Value::Null))
        .collect();
    let sets = [
        set(30 * HOUR, 2, "1.5", 1.5, "abc", 2 * HOUR, true, 4, 1),
        set(-5 * HOUR, 40, "-0.25", -2.0, "abd", 0, false, -4, 2),
        set(24 * HOUR, 3, "100.000", 0.1, "ab", -HOUR, true, 3, 1),
        nulls,
    ];
    let exprs = [
        "a.ts > '2000-01-01'",
        "a.ts > '2000-01-02 05:00:00+00'",
        "a.ts - b.ts > INTERVAL '1 hour'",
        "a.ts + INTERVAL '1 month' > b.ts",
        "a.ts - INTERVAL '1 day' <= '2000-01-01 06:00:00+00'",
        "a.ts > TIMESTAMPTZ '2000-01-01 12:00:00+00'",
        "GREATEST(a.ts, b.ts) = b.ts",
        "LEAST(a.ts, b.ts, NULL) = a.ts",
        "a.d + 1 = b.d",
        "a.d - b.d > 0",
        "a.d < DATE '2000-02-01'",
        "a.d > '2000-01-02'",
        "a.n + 0.25 = 1.75",
        "a.n * 2 = 3",
        "a.n - b.n > 1",
        "a.n > a.f",
        "a.n = 100",
        "a.n / 3 > 0.4",
        "a.f / 2 = 0.75",
        "a.f * 10 > b.f",
        "a.t < b.t",
        "a.t = 'abc'",
        "COALESCE(a.t, 'zzz') > 'abc'",
        "a.iv > INTERVAL '1 day'",
        "a.iv - b.iv < INTERVAL '2 hours'",
        "a.b AND NOT b.b",
        "a.b IS TRUE OR b.b IS NOT FALSE",
        "a.b = TRUE",
        "a.u = b.u",
        "a.u IS DISTINCT FROM b.u",
        "a.x % 3 = 1",
        "a.x / 3 = 1",
        "(-a.x) % 3 = -1",
        "a.x * a.x - b.x > 10",
        "COALESCE(a.x, b.x, 0) >= 3",
        "a.x > b.x OR (a.x = b.x AND a.ts > b.ts)",
        "NOT (a.x > b.x) AND a.x IS NOT NULL",
    ];
    let mut checked = 0;
    for (i, sa) in sets.iter().enumerate() {
        for (j, sb) in sets.iter().enumerate() {
            let (va, la) = typed_version("r1", 0, sa);
            let (vb, lb) = typed_version("r2", 1, sb);
            for e in exprs {
                let expr = Expression::parse(e).unwrap_or_else(|m| panic!("{e}: {m}"));
                let mine = expr
                    .eval(&va, &vb)
                    .unwrap_or_else(|m| panic!("{e} (sets {i}, {j}): {m}"));
                let sql = format!("SELECT {}", substitute(e, &la, &lb));
                let pg: Option<bool> = rt
                    .block_on(client.query_one(&sql, &[]))
                    .unwrap_or_else(|m| panic!("{sql}: {m}"))
                    .get(0);
                assert_eq!(
                    mine, pg,
                    "{e} with sets {i} and {j}: resolver {mine:?}, PostgreSQL {pg:?} ({sql})"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, exprs.len() * 16);
}
