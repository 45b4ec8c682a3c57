//! The built-in rules compiled from the config, and the resolution of one key.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::custom::{CustomResolver, Registry};
use super::expr::Expression;
use super::order::{CommitStep, Primary, Ranking, commit_value, total_cmp};
use super::tombstone::{deletion_time, kills, newest, row_time};
use super::{Action, Decision, Row, Version, Winner};
use super::{Resolution, Tombstone};
use crate::row::value::Value;

/// A column group of `column_merge`: columns that travel together with their tracking column.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// The tracking column.
    pub tracking: String,
    /// The merged columns (the tracking column itself is added when the row has it).
    pub columns: Vec<String>,
}

/// A compiled rule.
#[derive(Clone)]
pub(crate) enum Rule {
    Lww(Option<String>),
    Fww(Option<String>),
    Priority(Vec<String>),
    Highest(String),
    Expr(Arc<Expression>),
    Rust(Option<Arc<dyn CustomResolver>>, String),
    Merge {
        groups: Vec<Group>,
        base: Option<String>,
    },
    Manual,
}

fn nonempty(what: &str, s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err(format!("the {what} is empty"))
    } else {
        Ok(())
    }
}

impl Rule {
    /// Compiles what can be checked without the registry (`custom_rust` left unbound).
    pub(super) fn compile_syntax(r: &Resolution) -> Result<Rule, String> {
        Ok(match r {
            Resolution::LastWriteWins { tracking_column } => {
                if let Some(c) = tracking_column {
                    nonempty("tracking_column of last_write_wins", c)?;
                }
                Rule::Lww(tracking_column.clone())
            }
            Resolution::FirstWriteWins { tracking_column } => {
                if let Some(c) = tracking_column {
                    nonempty("tracking_column of first_write_wins", c)?;
                }
                Rule::Fww(tracking_column.clone())
            }
            Resolution::RegionPriority { regions } => {
                if regions.is_empty() {
                    return Err(
                        "region_priority needs a non-empty `regions:` list, most trusted first"
                            .into(),
                    );
                }
                for (i, r) in regions.iter().enumerate() {
                    nonempty("region name in region_priority's `regions:`", r)?;
                    if regions[..i].contains(r) {
                        return Err(format!("region_priority lists region `{r}` twice"));
                    }
                }
                Rule::Priority(regions.clone())
            }
            Resolution::HighestValue { column } => {
                nonempty("column of highest_value", column)?;
                Rule::Highest(column.clone())
            }
            Resolution::Custom { expression } => {
                Rule::Expr(Arc::new(Expression::parse(expression)?))
            }
            Resolution::CustomRust { name } => {
                nonempty("name of the custom_rust resolver", name)?;
                Rule::Rust(None, name.clone())
            }
            Resolution::ColumnMerge {
                columns,
                tracking_column,
            } => {
                let mut groups: BTreeMap<&String, Vec<String>> = BTreeMap::new();
                for (c, t) in columns {
                    nonempty("column name in column_merge's `columns:`", c)?;
                    nonempty(&format!("tracking column of `{c}` in column_merge"), t)?;
                    if columns.contains_key(t) && t != c {
                        return Err(format!(
                            "column_merge uses `{t}` as the tracking column of `{c}` but also merges `{t}` by `{}`: a tracking column travels with its columns",
                            columns[t]
                        ));
                    }
                    if c != t {
                        groups.entry(t).or_default().push(c.clone());
                    } else {
                        groups.entry(t).or_default();
                    }
                }
                if let Some(b) = tracking_column {
                    nonempty("tracking_column of column_merge", b)?;
                    if columns.contains_key(b) || groups.contains_key(b) {
                        return Err(format!(
                            "column_merge's tracking_column `{b}` is also listed under `columns:`; it tracks the unlisted columns only"
                        ));
                    }
                }
                let groups = groups
                    .into_iter()
                    .map(|(t, cs)| Group {
                        tracking: t.clone(),
                        columns: cs,
                    })
                    .collect();
                Rule::Merge {
                    groups,
                    base: tracking_column.clone(),
                }
            }
            Resolution::Manual => Rule::Manual,
        })
    }

    /// Compiles a rule, binding `custom_rust` to the registry.
    pub(super) fn compile(r: &Resolution, registry: &Registry) -> Result<Rule, String> {
        match Rule::compile_syntax(r)? {
            Rule::Rust(_, name) => match registry.get(&name) {
                Some(res) => Ok(Rule::Rust(Some(res), name)),
                None => {
                    let known: Vec<&str> = registry.names().collect();
                    Err(format!(
                        "no custom resolver named `{name}` is registered ({}): register it with Registry::register before building the resolver",
                        if known.is_empty() {
                            "none are".to_string()
                        } else {
                            format!("registered: {}", known.join(", "))
                        }
                    ))
                }
            },
            other => Ok(other),
        }
    }

    /// The columns the rule reads, each with the role it plays (for messages).
    fn used_columns(&self) -> Vec<(String, &'static str)> {
        match self {
            Rule::Lww(Some(c)) | Rule::Fww(Some(c)) => vec![(c.clone(), "tracking column")],
            Rule::Highest(c) => vec![(c.clone(), "highest_value column")],
            Rule::Expr(e) => e
                .columns()
                .map(|c| (c.to_string(), "expression column"))
                .collect(),
            Rule::Merge { groups, base } => {
                let mut v = Vec::new();
                for g in groups {
                    v.push((g.tracking.clone(), "column_merge tracking column"));
                    for c in &g.columns {
                        v.push((c.clone(), "column_merge column"));
                    }
                }
                if let Some(b) = base {
                    v.push((b.clone(), "column_merge tracking_column"));
                }
                v
            }
            _ => Vec::new(),
        }
    }

    /// Checks that every column the rule reads exists.
    pub(super) fn check_columns(&self, columns: &[String]) -> Result<(), String> {
        if let Rule::Expr(e) = self {
            return e.check_columns(columns);
        }
        for (c, role) in self.used_columns() {
            if !columns.contains(&c) {
                return Err(format!(
                    "the {role} `{c}` is not a compared column of the table (columns: {})",
                    super::list_columns(columns)
                ));
            }
        }
        Ok(())
    }

    /// Checks column types (see `Resolver::check_column_types`).
    pub(super) fn check_types(
        &self,
        types: &[(String, String)],
        tombstone: Option<&Tombstone>,
    ) -> Result<(), String> {
        let ty = |c: &str| {
            types
                .iter()
                .find(|(n, _)| n == c)
                .map(|(_, t)| base_type(t))
        };
        let tracking_ok = |t: &str| {
            matches!(
                t,
                "timestamp"
                    | "timestamp without time zone"
                    | "timestamptz"
                    | "timestamp with time zone"
                    | "date"
                    | "smallint"
                    | "integer"
                    | "bigint"
                    | "int2"
                    | "int4"
                    | "int8"
                    | "numeric"
                    | "decimal"
            )
        };
        let mut tracking: Vec<&String> = Vec::new();
        match self {
            Rule::Lww(Some(c)) | Rule::Fww(Some(c)) => tracking.push(c),
            Rule::Merge { groups, base } => {
                tracking.extend(groups.iter().map(|g| &g.tracking));
                tracking.extend(base.iter());
            }
            Rule::Highest(c) => {
                if let Some(t) = ty(c) {
                    if t == "json" || t == "xml" || t == "point" {
                        return Err(format!(
                            "the highest_value column `{c}` is of type {t}, which has no order"
                        ));
                    }
                }
            }
            _ => {}
        }
        for c in tracking {
            if let Some(t) = ty(c) {
                if !tracking_ok(&t) {
                    return Err(format!(
                        "the tracking column `{c}` is of type {t}; it must be timestamp, timestamptz, date, smallint, integer, bigint or numeric"
                    ));
                }
            }
        }
        if let Some(Tombstone::Column { column }) = tombstone {
            if let Some(t) = ty(column) {
                if !matches!(
                    t.as_str(),
                    "timestamp"
                        | "timestamp without time zone"
                        | "timestamptz"
                        | "timestamp with time zone"
                        | "date"
                        | "boolean"
                        | "bool"
                ) {
                    return Err(format!(
                        "the soft-delete column `{column}` is of type {t}; it must be timestamp, timestamptz, date or boolean"
                    ));
                }
            }
        }
        Ok(())
    }

    /// `decided_by` when the rule's own value decides.
    fn step_name(&self) -> String {
        match self {
            Rule::Lww(Some(c)) | Rule::Fww(Some(c)) | Rule::Highest(c) => c.clone(),
            Rule::Lww(None) | Rule::Fww(None) | Rule::Merge { base: None, .. } => {
                "commit_timestamp".into()
            }
            Rule::Merge { base: Some(c), .. } => c.clone(),
            Rule::Priority(_) => "region_priority".into(),
            Rule::Expr(_) => "expression".into(),
            Rule::Rust(_, name) => format!("custom_rust:{name}"),
            Rule::Manual => "manual".into(),
        }
    }

    /// The column whose value tells when a row was written, if the rule has one.
    fn time_column(&self) -> Option<&str> {
        match self {
            Rule::Lww(c) | Rule::Fww(c) => c.as_deref(),
            Rule::Merge { base, .. } => base.as_deref(),
            _ => None,
        }
    }
}

/// `numeric(10,2)` → `numeric`, lower case.
fn base_type(t: &str) -> String {
    let t = t.trim().to_lowercase();
    match t.find('(') {
        Some(i) => {
            let rest = t[i..].find(')').map(|j| &t[i + j + 1..]).unwrap_or("");
            format!("{}{}", t[..i].trim_end(), rest).trim().to_string()
        }
        None => t,
    }
}

fn value_of(v: &Version, column: &str) -> Value {
    v.get(column).cloned().unwrap_or(Value::Null)
}

/// The order a single-winner rule uses among the present versions `cands`.
fn ranking<'v>(rule: &Rule, versions: &'v [Version], cands: &[usize]) -> Ranking<'v> {
    let n = versions.len();
    let values = |f: &dyn Fn(&Version) -> Value| Primary::Values(versions.iter().map(f).collect());
    let mk = |primary, smaller_wins, name: &str, commit| Ranking {
        versions,
        primary,
        smaller_wins,
        name: name.to_string(),
        commit,
    };
    match rule {
        Rule::Lww(Some(c)) => mk(values(&|v| value_of(v, c)), false, c, CommitStep::NewerWins),
        Rule::Lww(None) => mk(
            values(&commit_value),
            false,
            "commit_timestamp",
            CommitStep::Skip,
        ),
        Rule::Fww(Some(c)) => mk(values(&|v| value_of(v, c)), true, c, CommitStep::OlderWins),
        Rule::Fww(None) => mk(
            values(&commit_value),
            true,
            "commit_timestamp",
            CommitStep::Skip,
        ),
        Rule::Priority(list) => {
            let ranks = versions
                .iter()
                .map(|v| {
                    -(list
                        .iter()
                        .position(|r| *r == v.region)
                        .unwrap_or(list.len()) as i64)
                })
                .collect();
            mk(
                Primary::Ranks(ranks),
                false,
                "region_priority",
                CommitStep::NewerWins,
            )
        }
        Rule::Highest(c) => mk(values(&|v| value_of(v, c)), false, c, CommitStep::NewerWins),
        Rule::Expr(e) => {
            let mut score = vec![0i64; n];
            for &i in cands {
                for &j in cands {
                    if i != j && e.beats(&versions[i], &versions[j]) {
                        score[i] += 1;
                    }
                }
            }
            mk(
                Primary::Ranks(score),
                false,
                "expression",
                CommitStep::NewerWins,
            )
        }
        Rule::Rust(res, name) => {
            let mut score = vec![0i64; n];
            if let Some(res) = res {
                let chain = Ranking::tiebreak_only(versions);
                for (k, &i) in cands.iter().enumerate() {
                    for &j in &cands[k + 1..] {
                        // Ask in the tie-break order, never in input order.
                        let (x, y) = if chain.cmp(i, j).0 == Ordering::Less {
                            (j, i)
                        } else {
                            (i, j)
                        };
                        match res.compare(&versions[x], &versions[y]) {
                            Ordering::Greater => score[x] += 1,
                            Ordering::Less => score[y] += 1,
                            Ordering::Equal => {}
                        }
                    }
                }
            }
            mk(
                Primary::Ranks(score),
                false,
                &format!("custom_rust:{name}"),
                CommitStep::NewerWins,
            )
        }
        Rule::Manual | Rule::Merge { .. } => {
            mk(Primary::None, false, "manual", CommitStep::NewerWins)
        }
    }
}

fn same_rows(a: Option<&Row>, b: Option<&Row>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.same_values(y),
        (None, None) => true,
        _ => false,
    }
}

/// What the rule picked among the surviving present versions.
struct Pick {
    winner: Winner,
    index: usize,
    sources: Vec<(String, usize)>,
    /// The deciding step against a differing rival, if there was one.
    step: Option<String>,
}

fn pick_single(rule: &Rule, versions: &[Version], cands: &[usize]) -> Option<Pick> {
    let r = ranking(rule, versions, cands);
    let best = r.best(cands)?;
    let wrow = versions[best].row.as_ref();
    let step = r.decisive(best, cands, |j| !same_rows(versions[j].row.as_ref(), wrow));
    Some(Pick {
        winner: Winner::Row(best),
        index: best,
        sources: Vec::new(),
        step,
    })
}

fn pick_merge(
    groups: &[Group],
    base: Option<&str>,
    versions: &[Version],
    cands: &[usize],
) -> Option<Pick> {
    let base_rank = match base {
        Some(c) => Ranking {
            versions,
            primary: Primary::Values(versions.iter().map(|v| value_of(v, c)).collect()),
            smaller_wins: false,
            name: c.to_string(),
            commit: CommitStep::NewerWins,
        },
        None => Ranking {
            versions,
            primary: Primary::Values(versions.iter().map(commit_value).collect()),
            smaller_wins: false,
            name: "commit_timestamp".into(),
            commit: CommitStep::Skip,
        },
    };
    let base_idx = base_rank.best(cands)?;
    let base_row = versions[base_idx].row.as_ref()?;
    let mut source: Vec<usize> = vec![base_idx; base_row.columns().len()];
    let mut values: Vec<Value> = base_row.values().to_vec();
    let col_pos = |c: &str| base_row.columns().iter().position(|x| x == c);

    // Each group: its columns and its tracking column travel together.
    let mut group_cols: Vec<Vec<usize>> = Vec::new();
    let mut steps: Vec<String> = Vec::new();
    let mut grouped = vec![false; values.len()];
    for g in groups {
        let mut cols: Vec<usize> = g.columns.iter().filter_map(|c| col_pos(c)).collect();
        if let Some(p) = col_pos(&g.tracking) {
            cols.push(p);
        }
        for &p in &cols {
            grouped[p] = true;
        }
        group_cols.push(cols);
    }
    let base_cols: Vec<usize> = (0..values.len()).filter(|p| !grouped[*p]).collect();
    let group_differs = |cols: &[usize], i: usize, j: usize| {
        cols.iter().any(|&p| {
            let c = &base_row.columns()[p];
            !super::eval::sql_equal(&value_of(&versions[i], c), &value_of(&versions[j], c))
        })
    };
    if let Some(s) = base_rank.decisive(base_idx, cands, |j| group_differs(&base_cols, base_idx, j))
    {
        steps.push(s);
    }
    for (g, cols) in groups.iter().zip(&group_cols) {
        let rank = Ranking {
            versions,
            primary: Primary::Values(versions.iter().map(|v| value_of(v, &g.tracking)).collect()),
            smaller_wins: false,
            name: g.tracking.clone(),
            commit: CommitStep::NewerWins,
        };
        let Some(src) = rank.best(cands) else {
            continue;
        };
        for &p in cols {
            let c = &base_row.columns()[p];
            values[p] = value_of(&versions[src], c);
            source[p] = src;
        }
        if let Some(s) = rank.decisive(src, cands, |j| group_differs(cols, src, j)) {
            if !steps.contains(&s) {
                steps.push(s);
            }
        }
    }
    let merged = Row {
        columns: base_row.shared_columns().clone(),
        values,
    };
    // A merge that equals one of the versions is that version.
    let equal_to = |i: usize| {
        versions[i]
            .row
            .as_ref()
            .is_some_and(|r| r.same_values(&merged))
    };
    let ordered = {
        let mut o: Vec<usize> = cands.to_vec();
        o.sort_by(|&a, &b| base_rank.cmp(b, a).0);
        o
    };
    let step = if steps.is_empty() {
        None
    } else {
        Some(steps.join(","))
    };
    if let Some(&i) = ordered.iter().find(|&&i| equal_to(i)) {
        let step = if step.is_some() {
            // The winner as a whole: the rule's step between it and the best differing rival.
            base_rank
                .decisive(i, cands, |j| {
                    !same_rows(versions[j].row.as_ref(), versions[i].row.as_ref())
                })
                .or(step)
        } else {
            None
        };
        return Some(Pick {
            winner: Winner::Row(i),
            index: i,
            sources: Vec::new(),
            step,
        });
    }
    let sources = merged.columns().iter().cloned().zip(source).collect();
    Some(Pick {
        winner: Winner::Merged(merged),
        index: base_idx,
        sources,
        step,
    })
}

/// Resolves one key.
pub(crate) fn resolve(
    rule: &Rule,
    tombstone: Option<&Tombstone>,
    versions: &[Version],
) -> Decision {
    let tc = rule.time_column();
    let mut live: Vec<usize> = Vec::new();
    let mut deletions: Vec<(usize, Value)> = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        match deletion_time(v, tombstone, tc) {
            Some(t) => deletions.push((i, t)),
            None if v.row.is_some() => live.push(i),
            None => {}
        }
    }
    let newest_delete = newest(deletions.iter().map(|(_, t)| t));
    let survivors: Vec<usize> = live
        .iter()
        .copied()
        .filter(|&i| !newest_delete.is_some_and(|t| kills(t, &row_time(&versions[i], tc))))
        .collect();

    let picked = if survivors.is_empty() {
        None
    } else {
        match rule {
            Rule::Merge { groups, base } => {
                pick_merge(groups, base.as_deref(), versions, &survivors)
            }
            _ => pick_single(rule, versions, &survivors),
        }
    };

    let (winner, index, sources, decided_by) = match picked {
        Some(p) => {
            let by = p.step.unwrap_or_else(|| {
                if deletions.is_empty() {
                    "missing_row".into()
                } else {
                    "tombstone".into()
                }
            });
            (p.winner, Some(p.index), p.sources, by)
        }
        None => match best_deletion(versions, &deletions) {
            Some(i) if versions[i].row.is_some() => {
                (Winner::Row(i), Some(i), Vec::new(), "tombstone".to_string())
            }
            Some(i) => (Winner::Delete, Some(i), Vec::new(), "tombstone".to_string()),
            None => (Winner::Delete, None, Vec::new(), "missing_row".to_string()),
        },
    };

    let target: Option<&Row> = match &winner {
        Winner::Row(i) => versions[*i].row.as_ref(),
        Winner::Merged(r) => Some(r),
        Winner::Delete => None,
    };
    let manual = matches!(rule, Rule::Manual);
    let actions: Vec<(String, Action)> = versions
        .iter()
        .map(|v| {
            let a = match (target, &v.row) {
                (Some(t), Some(r)) if t.same_values(r) => Action::None,
                (Some(_), Some(_)) => Action::Update,
                (Some(_), None) => Action::Insert,
                (None, Some(_)) => Action::Delete,
                (None, None) => Action::None,
            };
            let a = if manual && a != Action::None {
                Action::Manual
            } else {
                a
            };
            (v.region.clone(), a)
        })
        .collect();
    let needs_human = manual && actions.iter().any(|(_, a)| *a != Action::None);
    let noop = actions.iter().all(|(_, a)| *a == Action::None);
    // Nothing to do while rows exist: the data agrees; name the rule's own step.
    let decided_by = if noop && target.is_some() {
        rule.step_name()
    } else {
        decided_by
    };
    Decision {
        winner,
        winner_index: index,
        actions,
        decided_by: if manual { "manual".into() } else { decided_by },
        needs_human,
        column_sources: sources,
    }
}

/// The deletion that wins when no row survives: the newest, ties by the tie-break order.
fn best_deletion(versions: &[Version], deletions: &[(usize, Value)]) -> Option<usize> {
    let chain = Ranking::tiebreak_only(versions);
    deletions
        .iter()
        .max_by(|(i, a), (j, b)| total_cmp(a, b).then_with(|| chain.cmp(*i, *j).0))
        .map(|(i, _)| *i)
}
