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

use std::collections::BTreeSet;

use sqlparser::ast::{
    self, BinaryOperator, FunctionArg, FunctionArgExpr, FunctionArguments, UnaryOperator,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use super::Version;
use super::eval::{coerce, date_of, eval, parse_bool, parse_interval, ts_of};
use crate::row::decimal::normalize_decimal;
use crate::row::value::Value;

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
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Coalesce,
    Greatest,
    Least,
}

/// The validated expression tree.
#[derive(Debug, Clone)]
pub(crate) enum Node {
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
pub(crate) enum Ev {
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
///
/// Allowed: `a.col` / `b.col` (unquoted names fold to lower case, as in PostgreSQL), literals
/// (numbers, strings, `TRUE`/`FALSE`/`NULL`, typed literals such as
/// `TIMESTAMPTZ '2024-01-01 00:00:00+00'` and `INTERVAL '5 minutes'`), comparisons
/// (`= <> != < <= > >=`, `IS [NOT] DISTINCT FROM`), `AND`/`OR`/`NOT`, `IS [NOT] TRUE|FALSE`,
/// arithmetic (`+ - * / %`, unary `-`), `IS [NOT] NULL`, `COALESCE`, `GREATEST`, `LEAST`,
/// `region(a)` (the version's region name) and `commit_ts(a)` (its commit timestamp, a
/// `timestamptz`). Anything else (other functions, subqueries, casts, `CASE`, `LIKE`, ...) is
/// refused with a message quoting it, as is an expression that is certainly not a boolean.
///
/// Evaluation follows PostgreSQL where it matters: a comparison with NULL is NULL, `AND`/`OR`
/// use three-valued logic, `GREATEST`/`LEAST` ignore NULLs, an untyped string literal takes
/// the type of what it is compared with (`a.updated_at > '2024-01-01'`), integer division
/// truncates, `timestamp - timestamp` is an interval. Numeric `+ - *` are exact up to 38
/// digits, in double precision beyond and for `/`. An evaluation error (division by zero,
/// values that cannot be compared) makes the expression NULL for that pair: neither version
/// beats the other by it.
///
/// ```
/// use eden_consistency::{Expression, Row, Version};
/// use eden_consistency::Value;
/// let e = Expression::parse("a.version > b.version OR (a.version = b.version AND region(a) = 'us-east-1')")?;
/// let v = |region: &str, n: i64| Version::present(region, 0, Row::from_pairs([("version", Value::Int(n))]));
/// assert!(e.beats(&v("us-west-2", 3), &v("us-east-1", 2)));
/// assert!(e.beats(&v("us-east-1", 3), &v("us-west-2", 3)));
/// assert_eq!(e.eval(&v("us-west-2", 3), &v("us-east-1", 3)), Ok(Some(false)));
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone)]
pub struct Expression {
    pub(crate) text: String,
    root: Node,
    pub(crate) columns: BTreeSet<String>,
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
        if trimmed.len() > MAX_LEN {
            return Err(format!(
                "the custom expression is {} characters long, more than the {MAX_LEN} allowed",
                trimmed.len()
            ));
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
        let mut ctx = Ctx {
            names: BTreeSet::new(),
            depth: 0,
        };
        let root = convert(&parsed, &mut ctx)?;
        let columns = ctx.names;
        match kind(&root) {
            Kind::NotBool => {
                return Err(format!(
                    "expression `{trimmed}` is not a boolean: it must be true when version a beats version b"
                ));
            }
            Kind::Bool | Kind::Any => {}
        }
        check_bool_operands(&root)?;
        Ok(Expression {
            text: trimmed.to_string(),
            root,
            columns,
        })
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
                    "expression `{}` refers to column `{c}`, which is not a compared column of the table (columns: {})",
                    self.text,
                    super::list_columns(columns)
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
    let v = if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    };
    match v.as_str() {
        "a" => Some(Side::A),
        "b" => Some(Side::B),
        _ => None,
    }
}

fn column_name(ident: &ast::Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// What conversion collects and how deep it is.
struct Ctx {
    names: BTreeSet<String>,
    depth: usize,
}

/// The deepest nesting accepted (it bounds every recursion over the tree).
const MAX_DEPTH: usize = 200;

/// The longest expression text accepted.
const MAX_LEN: usize = 4096;

fn convert(e: &ast::Expr, cols: &mut Ctx) -> Result<Node, String> {
    cols.depth += 1;
    if cols.depth > MAX_DEPTH {
        return Err(format!(
            "the custom expression is nested more than {MAX_DEPTH} levels deep: simplify it"
        ));
    }
    let node = convert_inner(e, cols);
    cols.depth -= 1;
    node
}

fn convert_inner(e: &ast::Expr, cols: &mut Ctx) -> Result<Node, String> {
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
            cols.names.insert(name.clone());
            Node::Col(side, name)
        }
        E::Value(v) => Node::Lit(literal(&v.value).ok_or_else(|| refuse(e))?),
        E::TypedString(ts) => {
            let text = match &ts.value.value {
                ast::Value::SingleQuotedString(s) => s.clone(),
                _ => return Err(refuse(e)),
            };
            let ty = ts.data_type.to_string();
            Node::Lit(Ev::V(typed_literal(&ty, &text).map_err(|m| {
                format!("expression literal `{e}` is not valid: {m}")
            })?))
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
            if iv.last_field.is_some()
                || iv.leading_precision.is_some()
                || iv.fractional_seconds_precision.is_some()
            {
                return Err(refuse(e));
            }
            let text = match &iv.leading_field {
                Some(f) => format!("{text} {f}"),
                None => text,
            };
            Node::Lit(Ev::V(parse_interval(&text).ok_or_else(|| {
                format!("expression literal `{e}` is not a valid interval")
            })?))
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
        E::IsNotDistinctFrom(x, y) => {
            Node::Distinct(false, b(convert(x, cols)?), b(convert(y, cols)?))
        }
        E::Function(f) => convert_function(e, f, cols)?,
        _ => return Err(refuse(e)),
    })
}

fn convert_function(e: &ast::Expr, f: &ast::Function, cols: &mut Ctx) -> Result<Node, String> {
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
                return Err(format!(
                    "expression uses `{e}`, which is not allowed: {name}() takes a or b, as in {name}(a)"
                ));
            };
            Ok(if name == "region" {
                Node::Region(side)
            } else {
                Node::CommitTs(side)
            })
        }
        "coalesce" | "greatest" | "least" => {
            if args.is_empty() {
                return Err(format!(
                    "expression uses `{e}`, which is not allowed: {name}() needs at least one argument"
                ));
            }
            let func = match name.as_str() {
                "coalesce" => Func::Coalesce,
                "greatest" => Func::Greatest,
                _ => Func::Least,
            };
            let nodes = args
                .into_iter()
                .map(|x| convert(x, cols))
                .collect::<Result<Vec<_>, _>>()?;
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

pub(crate) fn number(s: &str) -> Option<Value> {
    if let Ok(i) = s.parse::<i64>() {
        return Some(Value::Int(i));
    }
    if s.contains(['e', 'E']) {
        return s.parse::<f64>().ok().map(Value::Float);
    }
    if is_decimal(s) {
        Some(Value::Numeric(normalize_decimal(s)))
    } else {
        None
    }
}

pub(crate) fn is_decimal(s: &str) -> bool {
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
        "interval" => Value::Interval {
            months: 0,
            days: 0,
            micros: 0,
        },
        "int" | "integer" | "int4" | "bigint" | "int8" | "smallint" | "int2" => Value::Int(0),
        "numeric" | "decimal" => Value::Numeric("0".into()),
        "real" | "float4" | "double precision" | "float8" | "float" => Value::Float(0.0),
        "text" | "varchar" | "character varying" | "char" | "character" => {
            Value::Text(String::new())
        }
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
        Node::Lit(Ev::V(Value::Bool(_)))
        | Node::Lit(Ev::V(Value::Null))
        | Node::Lit(Ev::Unknown(_)) => Kind::Any,
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
        Node::Not(x) | Node::Neg(x) | Node::IsNull(_, x) | Node::IsBool(_, _, x) => {
            check_bool_operands(x)
        }
        Node::And(x, y)
        | Node::Or(x, y)
        | Node::Cmp(_, x, y)
        | Node::Distinct(_, x, y)
        | Node::Arith(_, x, y) => {
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
        Value::Timestamp(t) | Value::TimestampTz(t) => ts_of(*t).map_or_else(
            || format!("timestamp {t}"),
            |x| format!("'{}'", x.format("%Y-%m-%d %H:%M:%S%.f")),
        ),
        other => format!("{other:?}"),
    }
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
        let deep = format!("{}a.v > 1{}", "(".repeat(300), ")".repeat(300));
        assert!(Expression::parse(&deep).is_err());
        let long = vec!["a.v > 1"; 600].join(" AND ");
        assert!(Expression::parse(&long).unwrap_err().contains("characters"));
        let chain = vec!["a.v > 1"; 300].join(" AND ");
        assert!(Expression::parse(&chain).unwrap_err().contains("nested"));
        let e = Expression::parse("a.v > b.v; DROP TABLE x").unwrap_err();
        assert!(e.contains("DROP") || e.contains(";"), "{e}");
    }

    #[test]
    fn evaluates_with_three_valued_logic() {
        let a = Version::present(
            "r1",
            0,
            super::super::Row::from_pairs([("v", Value::Int(2)), ("w", Value::Null)]),
        );
        let b = Version::present(
            "r2",
            1,
            super::super::Row::from_pairs([("v", Value::Int(1)), ("w", Value::Int(5))]),
        );
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
        let a = Version::present(
            "r1",
            0,
            super::super::Row::from_pairs([("t", Value::TimestampTz(86_400_000_000))]),
        );
        let e = Expression::parse("a.t > '2000-01-01 12:00:00+00' AND a.t < TIMESTAMPTZ '2000-01-03' AND a.t - INTERVAL '1 day' = '2000-01-01'").unwrap();
        assert_eq!(e.eval(&a, &a), Ok(Some(true)));
        let e = Expression::parse("commit_ts(a) IS NULL").unwrap();
        assert_eq!(e.eval(&a, &a), Ok(Some(true)));
    }
}
