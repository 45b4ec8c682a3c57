//! Order checks of custom expressions, for `validate-config`.

use super::Version;
use super::eval::column;
use super::expr::{Expression, show_value};
use crate::row::value::Value;

/// Samples pairs and triples of `samples` and returns warnings when the expression is not
/// antisymmetric (both `a beats b` and `b beats a`) or not transitive (`x` beats `y`, `y`
/// beats `z`, but `x` does not beat `z`), plus one warning when it cannot be evaluated for
/// some pair. Only versions with a row count; beyond 96 of them an evenly spread 96 are used;
/// at most three warnings of each kind are returned. An expression that does not parse gives
/// its error as the only warning (call [`super::validate_rule_syntax`] first to tell the two
/// apart).
///
/// Such an expression still resolves deterministically (the version that beats the most
/// others wins), but the outcome of repairing regions two at a time may then depend on the
/// order of the repairs.
pub fn check_expression_order(expression: &str, samples: &[Version]) -> Vec<String> {
    let expr = match Expression::parse(expression) {
        Ok(e) => e,
        Err(m) => return vec![m],
    };
    const CAP: usize = 96;
    let present: Vec<&Version> = samples.iter().filter(|v| v.row.is_some()).collect();
    let s: Vec<&Version> = if present.len() <= CAP {
        present
    } else {
        (0..CAP).map(|k| present[k * present.len() / CAP]).collect()
    };
    let n = s.len();
    let mut beats = vec![vec![false; n]; n];
    let mut warnings = Vec::new();
    let mut eval_error = None;
    // Versions of one key come from different regions: only such pairs ever meet.
    let apart = |i: usize, j: usize| i != j && s[i].region != s[j].region;
    for i in 0..n {
        for j in 0..n {
            if !apart(i, j) {
                continue;
            }
            match expr.eval(s[i], s[j]) {
                Ok(x) => beats[i][j] = x == Some(true),
                Err(m) => {
                    eval_error.get_or_insert((i, j, m));
                }
            }
        }
    }
    const MAX: usize = 3;
    let mut anti = 0;
    for i in 0..n {
        for j in (i + 1)..n {
            if beats[i][j] && beats[j][i] && anti < MAX {
                anti += 1;
                warnings.push(format!(
                    "expression `{}` is not antisymmetric: with {} and {} each beats the other",
                    expr.text,
                    show_version(&expr, s[i]),
                    show_version(&expr, s[j])
                ));
            }
        }
    }
    let mut trans = 0;
    'outer: for i in 0..n {
        for j in 0..n {
            if !apart(i, j) || !beats[i][j] {
                continue;
            }
            for k in 0..n {
                if !apart(k, i) || !apart(k, j) || !beats[j][k] || beats[i][k] {
                    continue;
                }
                trans += 1;
                warnings.push(format!(
                    "expression `{}` is not transitive: {} beats {}, which beats {}, but the first does not beat the last",
                    expr.text,
                    show_version(&expr, s[i]),
                    show_version(&expr, s[j]),
                    show_version(&expr, s[k])
                ));
                if trans >= MAX {
                    break 'outer;
                }
            }
        }
    }
    if let Some((i, j, m)) = eval_error {
        warnings.push(format!(
            "expression `{}` cannot be evaluated with a = {} and b = {}: {m}; such pairs count as neither beating the other",
            expr.text,
            show_version(&expr, s[i]),
            show_version(&expr, s[j])
        ));
    }
    warnings
}

/// Synthetic sample versions for [`check_expression_order`] when no table data is at hand:
/// every combination of NULL, 0, 1 and 2 for the columns the expression uses (the first 3 of
/// them; others NULL), each in every region of `regions` (at most 3), commit timestamps
/// following the values. Column types are unknown here, so integers stand for every type.
pub fn synthetic_samples(expression: &str, regions: &[String]) -> Vec<Version> {
    let Ok(expr) = Expression::parse(expression) else {
        return Vec::new();
    };
    let cols: Vec<String> = expr.columns.iter().cloned().collect();
    let used = cols.len().min(3);
    let domain = [Value::Null, Value::Int(0), Value::Int(1), Value::Int(2)];
    let regions: Vec<String> = if regions.is_empty() {
        vec!["region-1".into(), "region-2".into()]
    } else {
        regions.iter().take(3).cloned().collect()
    };
    let combos = 4usize.pow(used as u32);
    let mut out = Vec::new();
    for c in 0..combos {
        let mut x = c;
        let mut pairs = Vec::with_capacity(cols.len());
        for (k, col) in cols.iter().enumerate() {
            let v = if k < used {
                domain[x % 4].clone()
            } else {
                Value::Null
            };
            if k < used {
                x /= 4;
            }
            pairs.push((col.clone(), v));
        }
        for (ri, r) in regions.iter().enumerate() {
            let row = super::Row::from_pairs(pairs.clone());
            out.push(
                super::Version::present(r.clone(), ri, row).with_commit_ts(c as i64 * 1_000_000),
            );
        }
    }
    out
}

fn show_version(expr: &Expression, v: &Version) -> String {
    let mut parts: Vec<String> = expr
        .columns
        .iter()
        .map(|c| format!("{c}={}", show_value(&column(v, c))))
        .collect();
    parts.insert(0, format!("region={}", v.region));
    format!("({})", parts.join(", "))
}
