//! SQL identifiers: quoting, and schema-qualified table names.
//!
//! No SQL is ever built from unchecked text: every identifier that reaches a statement goes
//! through [`quote_ident`], and every value travels as a bind parameter.

use std::fmt;

/// Quotes an identifier for PostgreSQL: always double-quoted, inner quotes doubled.
///
/// A name holding control characters (a newline, ...) is written in the `U&"..."` form with
/// `\000a` escapes, so a statement is never split across lines by a name (a script fed to
/// psql cannot have a name start a line of its own, e.g. `\! cmd`).
///
/// ```
/// use eden_consistency::__private::ident::quote_ident;
/// assert_eq!(quote_ident("Weird \"name\""), "\"Weird \"\"name\"\"\"");
/// assert_eq!(quote_ident("a\n\\b"), r#"U&"a\000a\\b""#);
/// ```
pub fn quote_ident(name: &str) -> String {
    let unicode = name.chars().any(is_c0);
    let mut s = String::with_capacity(name.len() + 4);
    if unicode {
        s.push_str("U&");
    }
    s.push('"');
    for c in name.chars() {
        match c {
            '"' => s.push_str("\"\""),
            '\\' if unicode => s.push_str("\\\\"),
            c if is_c0(c) => s.push_str(&format!("\\{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// A SQL string literal that means the same whatever the server's
/// `standard_conforming_strings`: `'it''s'`, and `E'a\\b'` (backslashes doubled) when the
/// text holds a backslash, as libpq's `PQescapeLiteral` does. Every literal built from text
/// (names, ids, JSON payloads) goes through this one function.
///
/// ```
/// use eden_consistency::__private::ident::quote_literal;
/// assert_eq!(quote_literal("it's"), "'it''s'");
/// assert_eq!(quote_literal(r"a\b"), r"E'a\\b'");
/// ```
///
/// Control characters (newline, carriage return, escape, ...) are written as `E'\x0a'`
/// escapes, so a literal is always one line of a script.
pub fn quote_literal(text: &str) -> String {
    let escaped = text.chars().any(|c| c == '\\' || is_c0(c));
    let mut s = String::with_capacity(text.len() + 3);
    if escaped {
        s.push('E');
    }
    s.push('\'');
    for c in text.chars() {
        match c {
            '\'' => s.push_str("''"),
            '\\' => s.push_str("\\\\"),
            c if is_c0(c) => s.push_str(&format!("\\x{:02x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// ASCII control characters (C0 and DEL).
fn is_c0(c: char) -> bool {
    (c as u32) < 0x20 || c == '\x7f'
}

/// `text` with every control character written as a visible escape (`\n`, `\r`, `\t`,
/// `\x1b`, `\u{85}`), for one-line places: `--` comments of a SQL script, terminal output.
///
/// ```
/// use eden_consistency::__private::ident::escape_control;
/// assert_eq!(escape_control("a\n\\! rm"), "a\\n\\! rm");
/// ```
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut s = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if is_c0(c) => s.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => s.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => s.push(c),
        }
    }
    std::borrow::Cow::Owned(s)
}

/// A schema-qualified table name, as stored in the catalog (unquoted, case preserved).
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TableName {
    /// Schema, e.g. `public`.
    pub schema: String,
    /// Table name.
    pub name: String,
}

impl TableName {
    /// Builds a name from its two parts.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// The quoted form for SQL: `"schema"."name"`.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Parses what a user wrote (`table`, `schema.table`, with optional double quotes on
    /// either part, as in SQL). Unquoted parts are folded to lower case like PostgreSQL
    /// does; a missing schema is `None`.
    pub fn parse_user(text: &str) -> Result<(Option<String>, String), String> {
        let parts = split_ident_path(text)?;
        match parts.len() {
            1 => Ok((None, parts.into_iter().next().unwrap_or_default())),
            2 => {
                let mut it = parts.into_iter();
                let schema = it.next().unwrap_or_default();
                Ok((Some(schema), it.next().unwrap_or_default()))
            }
            _ => Err(format!(
                "'{text}' is not a table name (expected table or schema.table)"
            )),
        }
    }
}

impl fmt::Display for TableName {
    /// `schema.name`, the form used in reports and in `replication_conflicts.table_name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// Splits `a.b` / `"A"."b.c"` into identifier parts, applying SQL's folding rules.
fn split_ident_path(text: &str) -> Result<Vec<String>, String> {
    let bad = || format!("'{text}' is not a valid table name");
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(bad()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if c == '"' || c.is_whitespace() || c == ';' {
                    return Err(bad());
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err(bad());
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(_) => return Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a"), "\"a\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            TableName::new("My Schema", "t\"x").quoted(),
            "\"My Schema\".\"t\"\"x\""
        );
    }

    #[test]
    fn parse_user_names() {
        assert_eq!(TableName::parse_user("Foo").unwrap(), (None, "foo".into()));
        assert_eq!(
            TableName::parse_user("s.\"Foo.Bar\"").unwrap(),
            (Some("s".into()), "Foo.Bar".into())
        );
        assert_eq!(
            TableName::parse_user("\"a\"\"b\"").unwrap(),
            (None, "a\"b".into())
        );
        assert!(TableName::parse_user("x; drop table y").is_err());
        assert!(TableName::parse_user("a.b.c").is_err());
        assert!(TableName::parse_user("").is_err());
    }
}
