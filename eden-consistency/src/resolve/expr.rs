//! `resolution: custom` expressions: parsed with sqlparser (PostgreSQL dialect) into a small
//! AST of our own, validated, and evaluated in Rust with SQL's three-valued logic.
//!
//! Allowed: `a.col` / `b.col`, literals (numbers, strings, `TRUE`/`FALSE`/`NULL`, typed
//! literals such as `TIMESTAMPTZ '2024-01-01 00:00:00+00'`, `INTERVAL '5 minutes'`),
//! comparisons (`= <> != < <= > >=`, `IS [NOT] DISTINCT FROM`), `AND`/`OR`/`NOT`,
//! `IS [NOT] TRUE|FALSE`, arithmetic (`+ - * / %`, unary `-`), `IS [NOT] NULL`, `COALESCE`,
//! `GREATEST`, `LEAST`, `region(a)` and `commit_ts(a)`. Anything else (other functions,
//! subqueries, casts, `CASE`, `LIKE`, ...) is refused with a message quoting it.
//!
//! Evaluation follows PostgreSQL where it matters: a comparison with NULL is NULL, `AND`/`OR`
//! use three-valued logic, `GREATEST`/`LEAST` ignore NULLs, an untyped string literal takes
//! the type of what it is compared with (`a.updated_at > '2024-01-01'`), integer division
//! truncates. Exact decimal `+ - *` when the result fits 38 digits, double precision
//! otherwise. An evaluation error (division by zero, values that cannot be compared) makes
//! the expression NULL for that pair: neither version beats the other by it.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use sqlparser::ast::{
    self, BinaryOperator, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::Version;
use crate::value::{Value, normalize_decimal};

/// The allowed constructs, as quoted in every refusal.
const ALLOWED: &str = "only a.col/b.col, literals, comparisons, AND/OR/NOT, arithmetic, IS [NOT] NULL, \
COALESCE, GREATEST, LEAST, region() and commit_ts() are";

/// Which candidate a reference is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Side {
    A,
    B,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Coalesce,
    Greatest,
    Least,
}

/// The validated expression tree.
#[derive(Debug, Clone)]
enum Node {
    Col(Side, String),
    Region(Side),
    CommitTs(Side),
    Lit(Ev),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    /// `IS DISTINCT FROM` (`true`) or `IS NOT DISTINCT FROM` (`false`).
    Distinct(bool, Box<Node>, Box<Node>),
    Arith(ArithOp, Box<Node>, Box<Node>),
    Neg(Box<Node>),
    /// `IS NULL` (`false`) or `IS NOT NULL` (`true`).
    IsNull(bool, Box<Node>),
    /// `IS [NOT] TRUE|FALSE`: (value tested, negated).
    IsBool(bool, bool, Box<Node>),
    Call(Func, Vec<Node>),
}

/// An evaluated value: a typed value, or a string literal whose type is not known yet (SQL's
/// `unknown`), which takes the type of what it meets.
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    V(Value),
    Unknown(String),
}

/// What the validator knows of a node's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    NotBool,
    Any,
}

/// A validated `custom` expression: `true` when version `a` beats version `b`.
#[derive(Debug, Clone)]
pub struct Expression {
    text: String,
    root: Node,
    columns: BTreeSet<String>,
}

impl Expression {
    /// Parses and validates the expression's text (syntax and allowed constructs only; see
    /// [`Expression::check_columns`] for column names). The error is one sentence quoting the
    /// offending part.
    pub fn parse(text: &str) -> Result<Expression, String> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err("the custom expression is empty: write a SQL boolean over a.col and b.col that is true when a beats b".into());
        }
        let dialect = PostgreSqlDialect {};
        let mut parser = Parser::new(&dialect)
            .try_with_sql(trimmed)
            .map_err(|e| format!("expression `{trimmed}` is not valid SQL: {e}"))?;
        let parsed = parser
            .parse_expr()
            .map_err(|e| format!("expression `{trimmed}` is not valid SQL: {e}"))?;
        let next = parser.peek_token();
        if next.token != Token::EOF {
            return Err(format!(
                "expression `{trimmed}` has unexpected text from `{}` on: it must be a single SQL boolean expression",
                next.token
            ));
        }
        let mut columns = BTreeSet::new();
        let root = convert(&parsed, &mut columns)?;
        match kind(&root) {
            Kind::NotBool => {
                return Err(format!(
                    "expression `{trimmed}` is not a boolean: it must be true when version a beats version b"
                ));
            }
            Kind::Bool | Kind::Any => {}
        }
        check_bool_operands(&root)?;
        Ok(Expression { text: trimmed.to_string(), root, columns })
    }

    /// The expression's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The column names it refers to (through `a.` or `b.`).
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(String::as_str)
    }

    /// Checks that every `a.col` / `b.col` names one of `columns`.
    pub fn check_columns(&self, columns: &[String]) -> Result<(), String> {
        for c in &self.columns {
            if !columns.iter().any(|x| x == c) {
                return Err(format!(
                    "expression `{}` refers to column `{c}`, which the table does not have (columns: {})",
                    self.text,
                    columns.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Evaluates the expression with `a` and `b` bound: `Ok(Some(true))` when `a` beats `b`,
    /// `Ok(Some(false))` when it is false, `Ok(None)` when it is NULL, `Err` when it cannot be
    /// evaluated (e.g. division by zero).
    pub fn eval(&self, a: &Version, b: &Version) -> Result<Option<bool>, String> {
        match eval(&self.root, a, b)? {
            Ev::V(Value::Bool(x)) => Ok(Some(x)),
            Ev::V(Value::Null) => Ok(None),
            Ev::Unknown(s) => match parse_bool(&s) {
                Some(x) => Ok(Some(x)),
                None => Err(format!("the expression's value `{s}` is not a boolean")),
            },
            Ev::V(other) => Err(format!("the expression's value {other:?} is not a boolean")),
        }
    }

    /// True when the expression is TRUE for (`a`, `b`); NULL, FALSE and errors are false.
    pub fn beats(&self, a: &Version, b: &Version) -> bool {
        matches!(self.eval(a, b), Ok(Some(true)))
    }
}

// ---------------------------------------------------------------------------------------
// Conversion from sqlparser's AST, refusing what is not allowed.

fn refuse(e: &impl std::fmt::Display) -> String {
    format!("expression uses `{e}`, which is not allowed: {ALLOWED}")
}

fn side_of(ident: &ast::Ident) -> Option<Side> {
    let v = if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() };
    match v.as_str() {
        "a" => Some(Side::A),
        "b" => Some(Side::B),
        _ => None,
    }
}

fn column_name(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

fn convert(e: &ast::Expr, cols: &mut BTreeSet<String>) -> Result<Node, String> {
    use ast::Expr as E;
    let b = |x: Node| Box::new(x);
    Ok(match e {
        E::Nested(inner) => convert(inner, cols)?,
        E::Identifier(id) => {
            return Err(format!(
                "expression uses `{id}`, which is not allowed: columns must be written a.col or b.col ({ALLOWED})"
            ));
        }
        E::CompoundIdentifier(parts) => {
            if parts.len() != 2 {
                return Err(refuse(e));
            }
            let Some(side) = side_of(&parts[0]) else {
                return Err(format!(
                    "expression uses `{e}`, which is not allowed: columns must be written a.col or b.col ({ALLOWED})"
                ));
            };
            let name = column_name(&parts[1]);
            cols.insert(name.clone());
            Node::Col(side, name)
        }
        E::Value(v) => Node::Lit(literal(&v.value).ok_or_else(|| refuse(e))?),
        E::TypedString(ts) => {
            let text = match &ts.value.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                _ => return Err(refuse(e)),
            };
            let ty = ts.data_type.to_string();
            Node::Lit(Ev::V(typed_literal(&ty, &text).map_err(|m| format!("expression literal `{e}` is not valid: {m}"))?))
        }
        E::Interval(iv) => {
            let text = match iv.value.as_ref() {
                E::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    ast::Value::Number(n, _) => n.to_string(),
                    _ => return Err(refuse(e)),
                },
                _ => return Err(refuse(e)),
            };
            if iv.last_field.is_some() || iv.leading_precision.is_some() || iv.fractional_seconds_precision.is_some() {
                return Err(refuse(e));
            }
            let text = match &iv.leading_field {
                Some(f) => format!("{text} {f}"),
                None => text,
            };
            Node::Lit(Ev::V(parse_interval(&text).ok_or_else(|| format!("expression literal `{e}` is not a valid interval"))?))
        }
        E::UnaryOp { op, expr } => match op {
            UnaryOperator::Not => Node::Not(b(convert(expr, cols)?)),
            UnaryOperator::Minus => Node::Neg(b(convert(expr, cols)?)),
            UnaryOperator::Plus => convert(expr, cols)?,
            _ => return Err(refuse(e)),
        },
        E::BinaryOp { left, op, right } => {
            let l = b(convert(left, cols)?);
            let r = b(convert(right, cols)?);
            match op {
                BinaryOperator::And => Node::And(l, r),
                BinaryOperator::Or => Node::Or(l, r),
                BinaryOperator::Eq => Node::Cmp(CmpOp::Eq, l, r),
                BinaryOperator::NotEq => Node::Cmp(CmpOp::Ne, l, r),
                BinaryOperator::Lt => Node::Cmp(CmpOp::Lt, l, r),
                BinaryOperator::LtEq => Node::Cmp(CmpOp::Le, l, r),
                BinaryOperator::Gt => Node::Cmp(CmpOp::Gt, l, r),
                BinaryOperator::GtEq => Node::Cmp(CmpOp::Ge, l, r),
                BinaryOperator::Plus => Node::Arith(ArithOp::Add, l, r),
                BinaryOperator::Minus => Node::Arith(ArithOp::Sub, l, r),
                BinaryOperator::Multiply => Node::Arith(ArithOp::Mul, l, r),
                BinaryOperator::Divide => Node::Arith(ArithOp::Div, l, r),
                BinaryOperator::Modulo => Node::Arith(ArithOp::Mod, l, r),
                _ => return Err(refuse(e)),
            }
        }
        E::IsNull(x) => Node::IsNull(false, b(convert(x, cols)?)),
        E::IsNotNull(x) => Node::IsNull(true, b(convert(x, cols)?)),
        E::IsTrue(x) => Node::IsBool(true, false, b(convert(x, cols)?)),
        E::IsNotTrue(x) => Node::IsBool(true, true, b(convert(x, cols)?)),
        E::IsFalse(x) => Node::IsBool(false, false, b(convert(x, cols)?)),
        E::IsNotFalse(x) => Node::IsBool(false, true, b(convert(x, cols)?)),
        E::IsDistinctFrom(x, y) => Node::Distinct(true, b(convert(x, cols)?), b(convert(y, cols)?)),
        E::IsNotDistinctFrom(x, y) => Node::Distinct(false, b(convert(x, cols)?), b(convert(y, cols)?)),
        E::Function(f) => convert_function(e, f, cols)?,
        _ => return Err(refuse(e)),
    })
}

fn convert_function(e: &ast::Expr, f: &ast::Function, cols: &mut BTreeSet<String>) -> Result<Node, String> {
    if f.uses_odbc_syntax
        || !matches!(f.parameters, FunctionArguments::None)
        || !f.within_group.is_empty()
        || f.filter.is_some()
        || f.null_treatment.is_some()
        || f.over.is_some()
        || f.name.0.len() != 1
    {
        return Err(refuse(e));
    }
    let Some(ident) = f.name.0[0].as_ident() else {
        return Err(refuse(e));
    };
    let name = column_name(ident);
    let FunctionArguments::List(list) = &f.args else {
        return Err(refuse(e));
    };
    if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
        return Err(refuse(e));
    }
    let mut args = Vec::with_capacity(list.args.len());
    for a in &list.args {
        match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => args.push(x),
            _ => return Err(refuse(e)),
        }
    }
    match name.as_str() {
        "region" | "commit_ts" => {
            let side = match args.as_slice() {
                [ast::Expr::Identifier(id)] => side_of(id),
                _ => None,
            };
            let Some(side) = side else {
                return Err(format!("expression uses `{e}`, which is not allowed: {name}() takes a or b, as in {name}(a)"));
            };
            Ok(if name == "region" { Node::Region(side) } else { Node::CommitTs(side) })
        }
        "coalesce" | "greatest" | "least" => {
            if args.is_empty() {
                return Err(format!("expression uses `{e}`, which is not allowed: {name}() needs at least one argument"));
            }
            let func = match name.as_str() {
                "coalesce" => Func::Coalesce,
                "greatest" => Func::Greatest,
                _ => Func::Least,
            };
            let nodes = args.into_iter().map(|x| convert(x, cols)).collect::<Result<Vec<_>, _>>()?;
            Ok(Node::Call(func, nodes))
        }
        _ => Err(refuse(e)),
    }
}

fn literal(v: &ast::Value) -> Option<Ev> {
    Some(match v {
        ast::Value::Number(n, _) => Ev::V(number(&n.to_string())?),
        ast::Value::SingleQuotedString(s)
        | ast::Value::EscapedStringLiteral(s)
        | ast::Value::UnicodeStringLiteral(s) => Ev::Unknown(s.clone()),
        ast::Value::DollarQuotedString(d) => Ev::Unknown(d.value.clone()),
        ast::Value::Boolean(b) => Ev::V(Value::Bool(*b)),
        ast::Value::Null => Ev::V(Value::Null),
        _ => return None,
    })
}

fn number(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Int(i));
    }
    if s.contains(['e', 'E']) {
        return s.parse::<f64>().ok().map(Value::Float);
    }
    if is_decimal(s) { Some(Value::Numeric(normalize_decimal(s))) } else { None }
}

fn is_decimal(s: &str) -> bool {
    let s = s.trim();
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (i, f) = body.split_once('.').unwrap_or((body, ""));
    !(i.is_empty() && f.is_empty())
        && i.bytes().all(|c| c.is_ascii_digit())
        && f.bytes().all(|c| c.is_ascii_digit())
}

/// A typed literal such as `DATE '2024-01-01'`.
fn typed_literal(ty: &str, text: &str) -> Result<Value, String> {
    let ty = ty.to_lowercase();
    let base = ty.split('(').next().unwrap_or("").trim().to_string();
    let like = match base.as_str() {
        "date" => Value::Date(0),
        "timestamp" | "timestamp without time zone" => Value::Timestamp(0),
        "timestamptz" | "timestamp with time zone" => Value::TimestampTz(0),
        "time" | "time without time zone" => Value::Time(0),
        "interval" => Value::Interval { months: 0, days: 0, micros: 0 },
        "int" | "integer" | "int4" | "bigint" | "int8" | "smallint" | "int2" => Value::Int(0),
        "numeric" | "decimal" => Value::Numeric("0".into()),
        "real" | "float4" | "double precision" | "float8" | "float" => Value::Float(0.0),
        "text" | "varchar" | "character varying" | "char" | "character" => Value::Text(String::new()),
        "boolean" | "bool" => Value::Bool(false),
        "uuid" => Value::Uuid(uuid::Uuid::nil()),
        "json" | "jsonb" => Value::Json("null".into()),
        _ => return Err(format!("type {ty} is not supported in expressions")),
    };
    coerce(text, &like).ok_or_else(|| format!("`{text}` is not a valid {ty}"))
}

/// The validator's type of a node.
fn kind(n: &Node) -> Kind {
    match n {
        Node::Not(_)
        | Node::And(..)
        | Node::Or(..)
        | Node::Cmp(..)
        | Node::Distinct(..)
        | Node::IsNull(..)
        | Node::IsBool(..) => Kind::Bool,
        Node::Arith(..) | Node::Neg(_) | Node::Region(_) | Node::CommitTs(_) => Kind::NotBool,
        Node::Lit(Ev::V(Value::Bool(_))) | Node::Lit(Ev::V(Value::Null)) | Node::Lit(Ev::Unknown(_)) => Kind::Any,
        Node::Lit(_) => Kind::NotBool,
        Node::Col(..) => Kind::Any,
        Node::Call(_, args) => {
            let ks: Vec<Kind> = args.iter().map(kind).collect();
            if ks.contains(&Kind::NotBool) {
                Kind::NotBool
            } else if ks.contains(&Kind::Bool) {
                Kind::Bool
            } else {
                Kind::Any
            }
        }
    }
}

/// Refuses boolean operators over operands that are certainly not boolean (`NOT a.x + 1`).
fn check_bool_operands(n: &Node) -> Result<(), String> {
    let operands: Vec<&Node> = match n {
        Node::Not(x) | Node::IsBool(_, _, x) => vec![x],
        Node::And(x, y) | Node::Or(x, y) => vec![x, y],
        _ => vec![],
    };
    for o in &operands {
        if kind(o) == Kind::NotBool {
            return Err(format!(
                "expression uses a non-boolean operand ({}) where AND/OR/NOT/IS TRUE need a boolean",
                describe(o)
            ));
        }
    }
    match n {
        Node::Not(x) | Node::Neg(x) | Node::IsNull(_, x) | Node::IsBool(_, _, x) => check_bool_operands(x),
        Node::And(x, y) | Node::Or(x, y) | Node::Cmp(_, x, y) | Node::Distinct(_, x, y) | Node::Arith(_, x, y) => {
            check_bool_operands(x)?;
            check_bool_operands(y)
        }
        Node::Call(_, args) => args.iter().try_for_each(check_bool_operands),
        _ => Ok(()),
    }
}

fn describe(n: &Node) -> String {
    match n {
        Node::Col(s, c) => format!("{}.{c}", side_name(*s)),
        Node::Region(s) => format!("region({})", side_name(*s)),
        Node::CommitTs(s) => format!("commit_ts({})", side_name(*s)),
        Node::Arith(..) | Node::Neg(_) => "an arithmetic expression".into(),
        Node::Lit(Ev::V(v)) => format!("the literal {}", show_value(v)),
        Node::Lit(Ev::Unknown(s)) => format!("the literal '{s}'"),
        _ => "a sub-expression".into(),
    }
}

fn side_name(s: Side) -> &'static str {
    match s {
        Side::A => "a",
        Side::B => "b",
    }
}

/// A short human rendering of a value, for messages.
pub(crate) fn show_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Numeric(s) | Value::Other(s) => s.clone(),
        Value::Text(s) => format!("'{s}'"),
        Value::Uuid(u) => format!("'{u}'"),
        Value::Date(d) => date_of(*d).map_or_else(|| format!("date {d}"), |x| format!("'{x}'")),
        Value::Timestamp(t) | Value::TimestampTz(t) => {
            ts_of(*t).map_or_else(|| format!("timestamp {t}"), |x| format!("'{}'", x.format("%Y-%m-%d %H:%M:%S%.f")))
        }
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation.

fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).unwrap_or_default()
}

fn date_of(days: i32) -> Option<NaiveDate> {
    epoch().date().checked_add_signed(TimeDelta::try_days(days as i64)?)
}

fn ts_of(micros: i64) -> Option<NaiveDateTime> {
    epoch().checked_add_signed(TimeDelta::microseconds(micros))
}

fn micros_of(t: NaiveDateTime) -> Option<i64> {
    (t - epoch()).num_microseconds()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_naive_ts(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    for f in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn parse_tstz(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return micros_of(t.naive_utc());
    }
    for f in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f %#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return micros_of(t.naive_utc());
        }
    }
    let s = s.strip_suffix(" UTC").or_else(|| s.strip_suffix('Z')).unwrap_or(s);
    parse_naive_ts(s).and_then(micros_of)
}

/// Parses PostgreSQL-style interval text: `5 minutes`, `1 day 2 hours`, `-3 seconds`.
fn parse_interval(s: &str) -> Option<Value> {
    let toks: Vec<&str> = s.split_whitespace().collect();
    if toks.is_empty() || toks.len() % 2 != 0 {
        return None;
    }
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    for pair in toks.chunks(2) {
        let n: f64 = pair[0].parse().ok()?;
        let unit = pair[1].to_lowercase();
        let unit = unit.trim_end_matches('s');
        let whole = |x: f64| if x.fract() == 0.0 { Some(x as i64) } else { None };
        match unit {
            "microsecond" | "u" | "usec" => micros += whole(n)?,
            "millisecond" | "m" | "msec" => micros += (n * 1_000.0).round() as i64,
            "second" | "sec" | "" => micros += (n * 1_000_000.0).round() as i64,
            "minute" | "min" => micros += (n * 60_000_000.0).round() as i64,
            "hour" | "h" | "hr" => micros += (n * 3_600_000_000.0).round() as i64,
            "day" | "d" => days += whole(n)?,
            "week" | "w" => days += whole(n * 7.0)?,
            "month" | "mon" => months += whole(n)?,
            "year" | "y" | "yr" => months += whole(n * 12.0)?,
            _ => return None,
        }
    }
    Some(Value::Interval { months: i32::try_from(months).ok()?, days: i32::try_from(days).ok()?, micros })
}

/// Gives an untyped literal the kind of `like`.
fn coerce(s: &str, like: &Value) -> Option<Value> {
    Some(match like {
        Value::Null | Value::Text(_) => Value::Text(s.to_string()),
        Value::Other(_) => Value::Other(s.to_string()),
        Value::Bool(_) => Value::Bool(parse_bool(s)?),
        Value::Int(_) | Value::Numeric(_) | Value::Float(_) => {
            let t = s.trim();
            match like {
                Value::Float(_) => Value::Float(t.parse().ok()?),
                _ => number(t)?,
            }
        }
        Value::Uuid(_) => Value::Uuid(uuid::Uuid::parse_str(s.trim()).ok()?),
        Value::Date(_) => {
            let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
            Value::Date(i32::try_from((d - epoch().date()).num_days()).ok()?)
        }
        Value::Timestamp(_) => Value::Timestamp(micros_of(parse_naive_ts(s)?)?),
        Value::TimestampTz(_) => Value::TimestampTz(parse_tstz(s)?),
        Value::Time(_) => {
            let t = NaiveTime::parse_from_str(s.trim(), "%H:%M:%S%.f")
                .or_else(|_| NaiveTime::parse_from_str(s.trim(), "%H:%M"))
                .ok()?;
            Value::Time((t - NaiveTime::MIN).num_microseconds()?)
        }
        Value::Interval { .. } => parse_interval(s)?,
        Value::Json(_) => Value::Json(crate::value::canonical_json(s).ok()?),
        Value::Bytes(_) => {
            let hex = s.trim().strip_prefix("\\x")?;
            if hex.len() % 2 != 0 {
                return None;
            }
            let bytes = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok()).collect::<Option<Vec<u8>>>()?;
            Value::Bytes(bytes)
        }
        _ => return None,
    })
}

/// Resolves two evaluated operands to typed values, giving untyped literals the other's kind.
fn unify(x: Ev, y: Ev) -> Result<(Value, Value), String> {
    match (x, y) {
        (Ev::V(a), Ev::V(b)) => Ok((a, b)),
        (Ev::Unknown(s), Ev::V(b)) => {
            let a = coerce(&s, &b).ok_or_else(|| format!("'{s}' is not a valid value to compare with {}", show_value(&b)))?;
            Ok((a, b))
        }
        (Ev::V(a), Ev::Unknown(s)) => {
            let b = coerce(&s, &a).ok_or_else(|| format!("'{s}' is not a valid value to compare with {}", show_value(&a)))?;
            Ok((a, b))
        }
        (Ev::Unknown(a), Ev::Unknown(b)) => Ok((Value::Text(a), Value::Text(b))),
    }
}

fn column(v: &Version, name: &str) -> Value {
    v.row.as_ref().and_then(|r| r.get(name)).cloned().unwrap_or(Value::Null)
}

fn to_bool(e: Ev) -> Result<Option<bool>, String> {
    match e {
        Ev::V(Value::Bool(b)) => Ok(Some(b)),
        Ev::V(Value::Null) => Ok(None),
        Ev::Unknown(s) => parse_bool(&s).map(Some).ok_or_else(|| format!("'{s}' is not a boolean")),
        Ev::V(v) => Err(format!("{} is not a boolean", show_value(&v))),
    }
}

fn b3(x: Option<bool>) -> Ev {
    Ev::V(x.map_or(Value::Null, Value::Bool))
}

/// Value equality as SQL sees it (numbers of different kinds by value).
pub(crate) fn sql_equal(a: &Value, b: &Value) -> bool {
    a == b || a.compare(b) == Some(Ordering::Equal)
}

fn eval(n: &Node, a: &Version, b: &Version) -> Result<Ev, String> {
    let pick = |s: Side| if s == Side::A { a } else { b };
    Ok(match n {
        Node::Col(s, c) => Ev::V(column(pick(*s), c)),
        Node::Region(s) => Ev::V(Value::Text(pick(*s).region.clone())),
        Node::CommitTs(s) => Ev::V(pick(*s).commit_ts.map_or(Value::Null, Value::TimestampTz)),
        Node::Lit(v) => v.clone(),
        Node::Not(x) => b3(to_bool(eval(x, a, b)?)?.map(|v| !v)),
        Node::And(x, y) => {
            let l = to_bool(eval(x, a, b)?)?;
            if l == Some(false) {
                return Ok(b3(Some(false)));
            }
            let r = to_bool(eval(y, a, b)?)?;
            b3(match (l, r) {
                (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            })
        }
        Node::Or(x, y) => {
            let l = to_bool(eval(x, a, b)?)?;
            if l == Some(true) {
                return Ok(b3(Some(true)));
            }
            let r = to_bool(eval(y, a, b)?)?;
            b3(match (l, r) {
                (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            })
        }
        Node::Cmp(op, x, y) => {
            let (l, r) = unify(eval(x, a, b)?, eval(y, a, b)?)?;
            if l.is_null() || r.is_null() {
                return Ok(b3(None));
            }
            let o = if matches!(op, CmpOp::Eq | CmpOp::Ne) && sql_equal(&l, &r) {
                Ordering::Equal
            } else {
                l.compare(&r).ok_or_else(|| format!("cannot compare {} with {}", show_value(&l), show_value(&r)))?
            };
            b3(Some(match op {
                CmpOp::Eq => o == Ordering::Equal,
                CmpOp::Ne => o != Ordering::Equal,
                CmpOp::Lt => o == Ordering::Less,
                CmpOp::Le => o != Ordering::Greater,
                CmpOp::Gt => o == Ordering::Greater,
                CmpOp::Ge => o != Ordering::Less,
            }))
        }
        Node::Distinct(distinct, x, y) => {
            let (l, r) = unify(eval(x, a, b)?, eval(y, a, b)?)?;
            let same = match (l.is_null(), r.is_null()) {
                (true, true) => true,
                (true, false) | (false, true) => false,
                _ => sql_equal(&l, &r),
            };
            b3(Some(same != *distinct))
        }
        Node::IsNull(not, x) => {
            let v = eval(x, a, b)?;
            let null = matches!(v, Ev::V(Value::Null));
            b3(Some(null != *not))
        }
        Node::IsBool(want, not, x) => {
            let v = to_bool(eval(x, a, b)?)?;
            b3(Some((v == Some(*want)) != *not))
        }
        Node::Neg(x) => match eval(x, a, b)? {
            Ev::V(v) => Ev::V(negate(v)?),
            Ev::Unknown(s) => Ev::V(negate(number(s.trim()).ok_or_else(|| format!("'{s}' is not a number"))?)?),
        },
        Node::Arith(op, x, y) => {
            let (l, r) = match (eval(x, a, b)?, eval(y, a, b)?) {
                (Ev::Unknown(s), Ev::Unknown(t)) => (
                    number(s.trim()).ok_or_else(|| format!("'{s}' is not a number"))?,
                    number(t.trim()).ok_or_else(|| format!("'{t}' is not a number"))?,
                ),
                (p, q) => arith_unify(p, q)?,
            };
            Ev::V(arith(*op, l, r)?)
        }
        Node::Call(f, args) => match f {
            Func::Coalesce => {
                for x in args {
                    let v = eval(x, a, b)?;
                    if !matches!(v, Ev::V(Value::Null)) {
                        return Ok(v);
                    }
                }
                Ev::V(Value::Null)
            }
            Func::Greatest | Func::Least => {
                let vals = args.iter().map(|x| eval(x, a, b)).collect::<Result<Vec<_>, _>>()?;
                let like = vals.iter().find_map(|v| match v {
                    Ev::V(x) if !x.is_null() => Some(x.clone()),
                    _ => None,
                });
                let mut best: Option<Value> = None;
                for v in vals {
                    let v = match (v, &like) {
                        (Ev::V(x), _) => x,
                        (Ev::Unknown(s), Some(l)) => coerce(&s, l).ok_or_else(|| format!("'{s}' is not a valid value here"))?,
                        (Ev::Unknown(s), None) => Value::Text(s),
                    };
                    if v.is_null() {
                        continue;
                    }
                    best = Some(match best {
                        None => v,
                        Some(cur) => {
                            let o = v.compare(&cur).ok_or_else(|| format!("cannot compare {} with {}", show_value(&v), show_value(&cur)))?;
                            let take = if *f == Func::Greatest { o == Ordering::Greater } else { o == Ordering::Less };
                            if take { v } else { cur }
                        }
                    });
                }
                Ev::V(best.unwrap_or(Value::Null))
            }
        },
    })
}

fn arith_unify(x: Ev, y: Ev) -> Result<(Value, Value), String> {
    // An untyped literal next to a date/timestamp in arithmetic is an interval or a number.
    match (&x, &y) {
        (Ev::V(v), Ev::Unknown(s)) | (Ev::Unknown(s), Ev::V(v))
            if matches!(v, Value::Timestamp(_) | Value::TimestampTz(_) | Value::Date(_)) =>
        {
            let lit = parse_interval(s)
                .or_else(|| number(s.trim()))
                .ok_or_else(|| format!("'{s}' is not an interval or a number"))?;
            if matches!(x, Ev::Unknown(_)) { Ok((lit, v.clone())) } else { Ok((v.clone(), lit)) }
        }
        _ => unify(x, y),
    }
}

fn negate(v: Value) -> Result<Value, String> {
    Ok(match v {
        Value::Null => Value::Null,
        Value::Int(i) => Value::Int(i.checked_neg().ok_or("integer out of range")?),
        Value::Float(f) => Value::Float(-f),
        Value::Numeric(s) => Value::Numeric(match s.strip_prefix('-') {
            Some(r) => r.to_string(),
            None if s == "0" || s == "NaN" => s,
            None => format!("-{s}"),
        }),
        Value::Interval { months, days, micros } => Value::Interval {
            months: months.checked_neg().ok_or("interval out of range")?,
            days: days.checked_neg().ok_or("interval out of range")?,
            micros: micros.checked_neg().ok_or("interval out of range")?,
        },
        other => return Err(format!("cannot negate {}", show_value(&other))),
    })
}

/// A decimal as mantissa and scale, for exact `+ - *`.
fn dec(v: &Value) -> Option<(i128, u32)> {
    let s = match v {
        Value::Int(i) => return Some((*i as i128, 0)),
        Value::Numeric(s) => s.as_str(),
        _ => return None,
    };
    let (neg, body) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (i, f) = body.split_once('.').unwrap_or((body, ""));
    if f.len() > 30 || !is_decimal(body) {
        return None;
    }
    let m: i128 = format!("{i}{f}").parse().ok()?;
    Some((if neg { -m } else { m }, f.len() as u32))
}

fn dec_text(m: i128, scale: u32) -> String {
    let neg = m < 0;
    let digits = m.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale { format!("{}{digits}", "0".repeat(scale + 1 - digits.len())) } else { digits };
    let (i, f) = padded.split_at(padded.len() - scale);
    normalize_decimal(&format!("{}{i}.{f}", if neg { "-" } else { "" }))
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Numeric(s) => s.parse().ok(),
        _ => None,
    }
}

fn arith(op: ArithOp, l: Value, r: Value) -> Result<Value, String> {
    use Value::*;
    if l.is_null() || r.is_null() {
        return Ok(Null);
    }
    let oor = || "value out of range".to_string();
    let bad = |l: &Value, r: &Value| format!("cannot compute {} {} {}", show_value(l), op_sym(op), show_value(r));
    match (&l, &r) {
        (Int(x), Int(y)) => {
            let (x, y) = (*x, *y);
            return Ok(Int(match op {
                ArithOp::Add => x.checked_add(y).ok_or_else(oor)?,
                ArithOp::Sub => x.checked_sub(y).ok_or_else(oor)?,
                ArithOp::Mul => x.checked_mul(y).ok_or_else(oor)?,
                ArithOp::Div if y == 0 => return Err("division by zero".into()),
                ArithOp::Div => x.checked_div(y).ok_or_else(oor)?,
                ArithOp::Mod if y == 0 => return Err("division by zero".into()),
                ArithOp::Mod => x.checked_rem(y).unwrap_or(0),
            }));
        }
        (Int(_) | Numeric(_), Int(_) | Numeric(_)) if matches!(op, ArithOp::Add | ArithOp::Sub | ArithOp::Mul) => {
            if let (Some((a, sa)), Some((b, sb))) = (dec(&l), dec(&r)) {
                let exact = match op {
                    ArithOp::Mul => a.checked_mul(b).map(|m| (m, sa + sb)),
                    _ => {
                        let s = sa.max(sb);
                        let a = 10i128.checked_pow(s - sa).and_then(|p| a.checked_mul(p));
                        let b = 10i128.checked_pow(s - sb).and_then(|p| b.checked_mul(p));
                        match (a, b) {
                            (Some(a), Some(b)) if op == ArithOp::Add => a.checked_add(b).map(|m| (m, s)),
                            (Some(a), Some(b)) => a.checked_sub(b).map(|m| (m, s)),
                            _ => None,
                        }
                    }
                };
                if let Some((m, s)) = exact {
                    return Ok(Numeric(dec_text(m, s)));
                }
            }
        }
        _ => {}
    }
    if let (Some(x), Some(y)) = (as_f64(&l), as_f64(&r)) {
        if matches!(op, ArithOp::Div | ArithOp::Mod) && y == 0.0 {
            return Err("division by zero".into());
        }
        return Ok(Float(match op {
            ArithOp::Add => x + y,
            ArithOp::Sub => x - y,
            ArithOp::Mul => x * y,
            ArithOp::Div => x / y,
            ArithOp::Mod => x % y,
        }));
    }
    match (op, &l, &r) {
        (ArithOp::Sub, Timestamp(x), Timestamp(y)) | (ArithOp::Sub, TimestampTz(x), TimestampTz(y)) => {
            Ok(Interval { months: 0, days: 0, micros: x.checked_sub(*y).ok_or_else(oor)? })
        }
        (ArithOp::Sub, Date(x), Date(y)) => Ok(Int(*x as i64 - *y as i64)),
        (ArithOp::Add | ArithOp::Sub, Date(d), Int(n)) => {
            let n = if op == ArithOp::Add { *n } else { n.checked_neg().ok_or_else(oor)? };
            Ok(Date(i32::try_from(*d as i64 + n).map_err(|_| oor())?))
        }
        (ArithOp::Add, Int(n), Date(d)) => Ok(Date(i32::try_from(*d as i64 + n).map_err(|_| oor())?)),
        (ArithOp::Add | ArithOp::Sub, Timestamp(_) | TimestampTz(_) | Date(_), Interval { .. }) => {
            let iv = if op == ArithOp::Add { r.clone() } else { negate(r.clone())? };
            add_interval(&l, &iv).ok_or_else(oor)
        }
        (ArithOp::Add, Interval { .. }, Timestamp(_) | TimestampTz(_) | Date(_)) => add_interval(&r, &l).ok_or_else(oor),
        (ArithOp::Add | ArithOp::Sub, Interval { months: m1, days: d1, micros: u1 }, Interval { months: m2, days: d2, micros: u2 }) => {
            let add = op == ArithOp::Add;
            Ok(Interval {
                months: if add { m1.checked_add(*m2) } else { m1.checked_sub(*m2) }.ok_or_else(oor)?,
                days: if add { d1.checked_add(*d2) } else { d1.checked_sub(*d2) }.ok_or_else(oor)?,
                micros: if add { u1.checked_add(*u2) } else { u1.checked_sub(*u2) }.ok_or_else(oor)?,
            })
        }
        _ => Err(bad(&l, &r)),
    }
}

fn add_interval(t: &Value, iv: &Value) -> Option<Value> {
    let Value::Interval { months, days, micros } = iv else { return None };
    let (base, tz) = match t {
        Value::Timestamp(x) => (ts_of(*x)?, Some(false)),
        Value::TimestampTz(x) => (ts_of(*x)?, Some(true)),
        Value::Date(d) => (date_of(*d)?.and_hms_opt(0, 0, 0)?, None),
        _ => return None,
    };
    let mut t = base;
    if *months >= 0 {
        t = t.checked_add_months(Months::new(*months as u32))?;
    } else {
        t = t.checked_sub_months(Months::new(months.unsigned_abs()))?;
    }
    t = t.checked_add_signed(TimeDelta::try_days(*days as i64)?)?;
    t = t.checked_add_signed(TimeDelta::microseconds(*micros))?;
    let _ = t.year();
    let m = micros_of(t)?;
    Some(match tz {
        Some(true) => Value::TimestampTz(m),
        _ => Value::Timestamp(m),
    })
}

fn op_sym(op: ArithOp) -> &'static str {
    match op {
        ArithOp::Add => "+",
        ArithOp::Sub => "-",
        ArithOp::Mul => "*",
        ArithOp::Div => "/",
        ArithOp::Mod => "%",
    }
}

// ---------------------------------------------------------------------------------------
// Order checks for `validate-config`.

/// Samples pairs and triples of `samples` and returns warnings when the expression is not
/// antisymmetric (both `a beats b` and `b beats a`) or not transitive (`x` beats `y`, `y`
/// beats `z`, but `x` does not beat `z`), plus one warning when it cannot be evaluated for
/// some pair. At most the first 48 samples are used; at most a few warnings of each kind are
/// returned. An expression that does not parse gives its error as the only warning.
///
/// Such an expression still resolves deterministically (the version that beats the most
/// others wins), but the outcome of repairing regions two at a time may then depend on the
/// order of the repairs.
pub fn check_expression_order(expression: &str, samples: &[Version]) -> Vec<String> {
    let expr = match Expression::parse(expression) {
        Ok(e) => e,
        Err(m) => return vec![m],
    };
    let s: Vec<&Version> = samples.iter().filter(|v| v.row.is_some()).take(48).collect();
    let n = s.len();
    let mut beats = vec![vec![false; n]; n];
    let mut warnings = Vec::new();
    let mut eval_error = None;
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            match expr.eval(s[i], s[j]) {
                Ok(x) => beats[i][j] = x == Some(true),
                Err(m) => {
                    eval_error.get_or_insert_with(|| (i, j, m));
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
            if i == j || !beats[i][j] {
                continue;
            }
            for k in 0..n {
                if k == i || k == j || !beats[j][k] || beats[i][k] {
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
/// every combination of NULL, 0, 1 and 2 for the columns the expression uses (at most 4 of
/// them, others NULL), each in every region of `regions` (at most 3), commit timestamps
/// following the values. Column types are unknown here, so integers stand for every type.
pub fn synthetic_samples(expression: &str, regions: &[String]) -> Vec<Version> {
    let Ok(expr) = Expression::parse(expression) else { return Vec::new() };
    let cols: Vec<String> = expr.columns.iter().cloned().collect();
    let used = cols.len().min(4);
    let domain = [Value::Null, Value::Int(0), Value::Int(1), Value::Int(2)];
    let regions: Vec<String> = if regions.is_empty() { vec!["region-1".into(), "region-2".into()] } else { regions.iter().take(3).cloned().collect() };
    let combos = 4usize.pow(used as u32);
    let mut out = Vec::new();
    for c in 0..combos {
        let mut x = c;
        let mut pairs = Vec::with_capacity(cols.len());
        for (k, col) in cols.iter().enumerate() {
            let v = if k < used { domain[x % 4].clone() } else { Value::Null };
            if k < used {
                x /= 4;
            }
            pairs.push((col.clone(), v));
        }
        for (ri, r) in regions.iter().enumerate() {
            let row = super::Row::from_pairs(pairs.clone());
            out.push(super::Version::present(r.clone(), ri, row).with_commit_ts(c as i64 * 1_000_000));
        }
    }
    out
}

fn show_version(expr: &Expression, v: &Version) -> String {
    let mut parts: Vec<String> = expr.columns.iter().map(|c| format!("{c}={}", show_value(&column(v, c)))).collect();
    parts.insert(0, format!("region={}", v.region));
    format!("({})", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_functions_and_bare_columns() {
        let e = Expression::parse("a.v > 1 OR pg_sleep(1) IS NULL").unwrap_err();
        assert!(e.contains("`pg_sleep(1)`"), "{e}");
        let e = Expression::parse("version > 1").unwrap_err();
        assert!(e.contains("`version`"), "{e}");
        let e = Expression::parse("a.v > (SELECT 1)").unwrap_err();
        assert!(e.contains("not allowed"), "{e}");
        let e = Expression::parse("a.v + 1").unwrap_err();
        assert!(e.contains("not a boolean"), "{e}");
        let e = Expression::parse("a.v > b.v; DROP TABLE x").unwrap_err();
        assert!(e.contains("DROP") || e.contains(";"), "{e}");
    }

    #[test]
    fn evaluates_with_three_valued_logic() {
        let a = Version::present("r1", 0, super::super::Row::from_pairs([("v", Value::Int(2)), ("w", Value::Null)]));
        let b = Version::present("r2", 1, super::super::Row::from_pairs([("v", Value::Int(1)), ("w", Value::Int(5))]));
        let e = Expression::parse("a.v > b.v AND (a.w > b.w OR TRUE)").unwrap();
        assert_eq!(e.eval(&a, &b), Ok(Some(true)));
        let e = Expression::parse("a.w > b.w").unwrap();
        assert_eq!(e.eval(&a, &b), Ok(None));
        let e = Expression::parse("NOT (a.w > b.w) OR region(a) = 'r1'").unwrap();
        assert_eq!(e.eval(&a, &b), Ok(Some(true)));
        let e = Expression::parse("COALESCE(a.w, 0) < GREATEST(b.w, b.v, NULL)").unwrap();
        assert_eq!(e.eval(&a, &b), Ok(Some(true)));
        let e = Expression::parse("a.v / 0 > 1").unwrap();
        assert!(e.eval(&a, &b).is_err());
        let e = Expression::parse("a.v + 0.5 = 2.5 AND a.v * 1.5 = 3").unwrap();
        assert_eq!(e.eval(&a, &b), Ok(Some(true)));
    }

    #[test]
    fn untyped_literals_take_the_other_type() {
        let a = Version::present("r1", 0, super::super::Row::from_pairs([("t", Value::TimestampTz(86_400_000_000))]));
        let e = Expression::parse("a.t > '2000-01-01 12:00:00+00' AND a.t < TIMESTAMPTZ '2000-01-03' AND a.t - INTERVAL '1 day' = '2000-01-01'").unwrap();
        assert_eq!(e.eval(&a, &a), Ok(Some(true)));
        let e = Expression::parse("commit_ts(a) IS NULL").unwrap();
        assert_eq!(e.eval(&a, &a), Ok(Some(true)));
    }
}
