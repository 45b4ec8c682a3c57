//! The `--where` filter: one boolean SQL expression, parsed and checked before it reaches a server.
//!
//! The user's text is parsed with sqlparser's PostgreSQL dialect as exactly one expression,
//! checked against an allow-list, and the SQL that reaches a server is re-emitted from the
//! checked syntax tree (never the user's text), with every column reference quoted.
//!
//! Allowed: references to the table's own columns, literals (numbers, `'strings'`, `true`,
//! `false`, `NULL`, `DATE '…'`, `INTERVAL '…'`), comparisons, `BETWEEN`, `IN (list)`,
//! `LIKE`/`ILIKE`, `IS [NOT] NULL|TRUE|FALSE|DISTINCT FROM`, `AND`/`OR`/`NOT`, arithmetic,
//! `||`, the JSON operators `->`, `->>`, `#>`, `#>>`, `@>`, `<@`, `?`, `CASE`, `EXTRACT`, `AT TIME ZONE`, casts to simple type names, and the functions
//! of [`SAFE_FUNCTIONS`]. Refused: subqueries, other functions, qualified names, system
//! columns, parameters, comments, `;`. Compound operands are parenthesized in the emitted
//! SQL, so its meaning never depends on precedence rules.
//!
//! ```
//! use eden_consistency::__private::filter::validate_where;
//! let cols = vec!["id".to_string(), "last_updated_at".to_string()];
//! assert_eq!(validate_where("id > 10 and last_updated_at < now() - interval '1 day'", &cols).unwrap(),
//!            "(\"id\" > 10) AND (\"last_updated_at\" < (now() - INTERVAL '1 day'))");
//! assert!(validate_where("id = 1; drop table t", &cols).is_err());
//! assert!(validate_where("id in (select id from t)", &cols).is_err());
//! ```

use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    Ident, InTarget, ObjectNamePart, UnaryOperator, Value as SqlValue,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

/// Functions a `--where` expression may call: pure, cheap and without side effects.
pub const SAFE_FUNCTIONS: &[&str] = &[
    "now",
    "current_date",
    "current_timestamp",
    "localtimestamp",
    "lower",
    "upper",
    "length",
    "char_length",
    "octet_length",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "date_trunc",
    "date_part",
    "abs",
    "round",
    "trunc",
    "floor",
    "ceil",
    "ceiling",
    "mod",
    "btrim",
    "ltrim",
    "rtrim",
    "substr",
    "left",
    "right",
    "starts_with",
    "md5",
    "to_timestamp",
    "make_interval",
    "jsonb_typeof",
];

/// Type names a cast may target.
const SAFE_TYPES: &[&str] = &[
    "INT",
    "INTEGER",
    "BIGINT",
    "SMALLINT",
    "INT2",
    "INT4",
    "INT8",
    "NUMERIC",
    "DECIMAL",
    "REAL",
    "FLOAT",
    "FLOAT4",
    "FLOAT8",
    "DOUBLE PRECISION",
    "TEXT",
    "VARCHAR",
    "CHARACTER VARYING",
    "CHAR",
    "CHARACTER",
    "BOOLEAN",
    "BOOL",
    "DATE",
    "TIME",
    "TIMESTAMP",
    "TIMESTAMPTZ",
    "TIMESTAMP WITH TIME ZONE",
    "TIMESTAMP WITHOUT TIME ZONE",
    "UUID",
    "BYTEA",
    "JSON",
    "JSONB",
    "INTERVAL",
];

/// Columns every PostgreSQL table has but no one should filter on.
const SYSTEM_COLUMNS: &[&str] = &["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid", "oid"];

/// Checks a `--where` expression against the table's columns and returns the SQL to embed
/// (re-emitted from the parsed tree, columns quoted), or one sentence saying what is wrong,
/// quoting the offending part (it calls the expression "the filter"; callers add the option
/// and table, e.g. `--where: ... (table public.t)`).
pub fn validate_where(text: &str, columns: &[String]) -> Result<String, String> {
    let dialect = PostgreSqlDialect {};
    if text.trim().is_empty() {
        return Err("the filter is empty".into());
    }
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize()
        .map_err(|e| format!("the filter cannot be read: {}", e.message))?;
    for t in &tokens {
        match t {
            Token::SemiColon => {
                return Err("the filter must be one expression, without ';'".into());
            }
            Token::Whitespace(
                Whitespace::SingleLineComment { .. } | Whitespace::MultiLineComment(_),
            ) => {
                return Err("comments are not allowed in the filter".into());
            }
            Token::Placeholder(p) => {
                return Err(format!("parameter '{p}' is not allowed in the filter"));
            }
            _ => {}
        }
    }
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(64)
        .try_with_sql(text)
        .map_err(|e| format!("the filter cannot be parsed: {e}"))?;
    let mut expr = parser
        .parse_expr()
        .map_err(|e| format!("the filter cannot be parsed: {e}"))?;
    let rest = parser.peek_token();
    if rest.token != Token::EOF {
        return Err(format!(
            "the filter must be a single boolean expression, but continues at '{}'",
            rest.token
        ));
    }
    Checker { columns }.check(&mut expr)?;
    Ok(expr.to_string())
}

struct Checker<'a> {
    columns: &'a [String],
}

fn refuse(what: &str, e: &dyn std::fmt::Display) -> String {
    format!("{what} '{e}' is not allowed in the filter")
}

impl Checker<'_> {
    /// Resolves an identifier to a column name as the catalog stores it.
    fn column(&self, id: &Ident) -> Result<Ident, String> {
        let name = match id.quote_style {
            Some('"') => id.value.clone(),
            Some(_) => return Err(refuse("the identifier", id)),
            None => id.value.to_lowercase(),
        };
        if let Some(c) = self.columns.iter().find(|c| **c == name) {
            return Ok(Ident::with_quote('"', c.clone()));
        }
        if SYSTEM_COLUMNS.contains(&name.as_str()) {
            return Err(format!("system column '{id}' is not allowed in the filter"));
        }
        Err(format!("'{id}' is not a column of the table"))
    }

    fn check(&self, e: &mut Expr) -> Result<(), String> {
        match e {
            Expr::Identifier(id) => {
                *id = self.column(id)?;
                Ok(())
            }
            Expr::CompoundIdentifier(_) => Err(format!(
                "qualified name '{e}' is not allowed in the filter; name the column alone"
            )),
            Expr::Value(v) => match &mut v.value {
                SqlValue::Number(_, false) | SqlValue::Boolean(_) | SqlValue::Null => Ok(()),
                SqlValue::SingleQuotedString(_) => {
                    scs_proof(&mut v.value);
                    Ok(())
                }
                _ => Err(refuse("the literal", e)),
            },
            Expr::Nested(inner) => self.check(inner),
            Expr::IsNull(x)
            | Expr::IsNotNull(x)
            | Expr::IsTrue(x)
            | Expr::IsNotTrue(x)
            | Expr::IsFalse(x)
            | Expr::IsNotFalse(x)
            | Expr::IsUnknown(x)
            | Expr::IsNotUnknown(x) => {
                self.check(x)?;
                paren(x);
                Ok(())
            }
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.check(a)?;
                self.check(b)?;
                paren(a);
                paren(b);
                Ok(())
            }
            Expr::In { expr, target, .. } => {
                self.check(expr)?;
                paren(expr);
                match target {
                    InTarget::List(list) => list.iter_mut().try_for_each(|x| self.check(x)),
                    _ => Err(format!(
                        "'{e}' is not allowed in the filter; use IN with a list of values"
                    )),
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.check(expr)?;
                self.check(low)?;
                self.check(high)?;
                paren(expr);
                paren(low);
                paren(high);
                Ok(())
            }
            Expr::BinaryOp { left, op, right } => {
                use BinaryOperator::*;
                if !matches!(
                    op,
                    Plus | Minus
                        | Multiply
                        | Divide
                        | Modulo
                        | StringConcat
                        | Gt
                        | Lt
                        | GtEq
                        | LtEq
                        | Eq
                        | NotEq
                        | And
                        | Or
                        | Arrow
                        | LongArrow
                        | HashArrow
                        | HashLongArrow
                        | AtArrow
                        | ArrowAt
                        | Question
                ) {
                    return Err(format!("operator '{op}' is not allowed in the filter"));
                }
                self.check(left)?;
                self.check(right)?;
                paren(left);
                paren(right);
                Ok(())
            }
            Expr::Like {
                any,
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                any,
                expr,
                pattern,
                escape_char,
                ..
            } => {
                if *any {
                    return Err(refuse("the expression", e));
                }
                self.check(expr)?;
                self.check(pattern)?;
                paren(expr);
                paren(pattern);
                if let Some(esc) = escape_char {
                    self.check(esc)?;
                    paren(esc);
                }
                Ok(())
            }
            Expr::UnaryOp { op, expr } => {
                if !matches!(
                    op,
                    UnaryOperator::Not | UnaryOperator::Minus | UnaryOperator::Plus
                ) {
                    return Err(format!("operator '{op}' is not allowed in the filter"));
                }
                self.check(expr)?;
                paren(expr);
                Ok(())
            }
            Expr::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                if !matches!(kind, CastKind::Cast | CastKind::DoubleColon) || format.is_some() {
                    return Err(refuse("the cast", e));
                }
                check_type(data_type)?;
                self.check(expr)?;
                if matches!(kind, CastKind::DoubleColon) {
                    paren(expr);
                }
                Ok(())
            }
            Expr::TypedString(ts) => {
                check_type(&ts.data_type)?;
                if ts.uses_odbc_syntax || !matches!(ts.value.value, SqlValue::SingleQuotedString(_))
                {
                    return Err(refuse("the literal", e));
                }
                scs_proof(&mut ts.value.value);
                Ok(())
            }
            Expr::Interval(iv) => match iv.value.as_mut() {
                Expr::Value(v) if matches!(v.value, SqlValue::SingleQuotedString(_)) => {
                    scs_proof(&mut v.value);
                    Ok(())
                }
                _ => Err(refuse("the interval", e)),
            },
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                self.check(timestamp)?;
                self.check(time_zone)?;
                paren(timestamp);
                paren(time_zone);
                Ok(())
            }
            Expr::Extract { expr, .. } => self.check(expr),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(o) = operand {
                    self.check(o)?;
                }
                for c in conditions {
                    self.check(&mut c.condition)?;
                    self.check(&mut c.result)?;
                }
                if let Some(x) = else_result {
                    self.check(x)?;
                }
                Ok(())
            }
            Expr::Function(f) => {
                let shown = f.to_string();
                let name = match f.name.0.as_slice() {
                    [ObjectNamePart::Identifier(id)] if id.quote_style.is_none() => {
                        id.value.to_lowercase()
                    }
                    _ => return Err(format!("function '{shown}' is not allowed in the filter")),
                };
                if !SAFE_FUNCTIONS.contains(&name.as_str())
                    || f.uses_odbc_syntax
                    || !matches!(f.parameters, FunctionArguments::None)
                    || !f.within_group.is_empty()
                    || f.filter.is_some()
                    || f.null_treatment.is_some()
                    || f.over.is_some()
                {
                    return Err(format!(
                        "function '{shown}' is not allowed in the filter (allowed: {})",
                        SAFE_FUNCTIONS.join(", ")
                    ));
                }
                match &mut f.args {
                    FunctionArguments::None => Ok(()),
                    FunctionArguments::List(list) => {
                        if list.duplicate_treatment.is_some() || !list.clauses.is_empty() {
                            return Err(format!(
                                "function call '{shown}' is not allowed in the filter"
                            ));
                        }
                        for a in &mut list.args {
                            match a {
                                FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => self.check(x)?,
                                _ => {
                                    return Err(format!(
                                        "argument '{a}' of '{shown}' is not allowed in the filter"
                                    ));
                                }
                            }
                        }
                        Ok(())
                    }
                    FunctionArguments::Subquery(_) => Err(refuse("the subquery in", &shown)),
                }
            }
            Expr::Subquery(_) | Expr::Exists { .. } => Err(refuse("the subquery", e)),
            _ => Err(refuse("the expression", e)),
        }
    }
}

/// A string literal with a backslash is emitted as `E'...'` (backslashes doubled), which
/// means the same whatever the server's `standard_conforming_strings`; a plain `'...'`
/// would let a backslash escape the closing quote where that setting is off.
fn scs_proof(v: &mut SqlValue) {
    if let SqlValue::SingleQuotedString(s) = v
        && s.contains('\\')
    {
        *v = SqlValue::EscapedStringLiteral(std::mem::take(s));
    }
}

/// True for expressions that print as one self-delimited unit.
fn is_atom(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Identifier(_)
            | Expr::Value(_)
            | Expr::Nested(_)
            | Expr::Function(_)
            | Expr::TypedString(_)
            | Expr::Interval(_)
            | Expr::Case { .. }
            | Expr::Extract { .. }
            | Expr::Cast { .. }
    )
}

/// Puts parentheses around a compound operand, so that the emitted SQL means what the
/// parsed tree means whatever the precedence rules of the server.
fn paren(e: &mut Expr) {
    if !is_atom(e) {
        let inner = std::mem::replace(e, Expr::Value(SqlValue::Null.into()));
        *e = Expr::Nested(Box::new(inner));
    }
}

/// Accepts casts to simple built-in type names (with an optional length/precision).
fn check_type(t: &DataType) -> Result<(), String> {
    let shown = t.to_string();
    let base = match shown.find('(') {
        Some(i) => {
            let args = &shown[i..];
            if !args.trim_end().ends_with(')')
                || !args
                    .trim_matches(['(', ')'])
                    .split(',')
                    .all(|p| p.trim().bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(format!("cast to '{shown}' is not allowed in the filter"));
            }
            shown[..i].trim().to_string()
        }
        None => shown.clone(),
    };
    if SAFE_TYPES.iter().any(|s| s.eq_ignore_ascii_case(&base)) {
        Ok(())
    } else {
        Err(format!("cast to '{shown}' is not allowed in the filter"))
    }
}
