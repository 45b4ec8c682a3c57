//! The SQL expressions that read a column: what to select so that [`crate::pg::decode`] can
//! decode it, and what pushdown mode hashes in the server.

use crate::pg::ident::quote_ident;
use crate::pg::types::{ColumnType, Wire, binary_array_elem, is_binary_scalar, oid, wire_for};

/// The SQL select-list expression for one column such that [`decode`](crate::pg::decode::decode)
/// can read it: the
/// quoted column itself for types decoded in binary here (bool, int2/4/8, oid, float4/8,
/// numeric, text/varchar/bpchar/name, bytea, uuid, date, time, timestamp, timestamptz,
/// interval, json, jsonb, arrays of these, and domains over them), `col::numeric` for
/// money, else `col::text`.
///
/// ```
/// use eden_consistency::__private::expr::select_expr;
/// use eden_consistency::Column;
/// assert_eq!(select_expr(&Column::new("id", 20), None), "\"id\"");
/// assert_eq!(select_expr(&Column::new("Mood", 99999), Some("t")), "\"t\".\"Mood\"::text");
/// ```
pub fn select_expr<C: ColumnType + ?Sized>(col: &C, table_alias: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(a) = table_alias {
        s.push_str(&quote_ident(a));
        s.push('.');
    }
    s.push_str(&quote_ident(col.column_name()));
    match wire_for(col.effective_oid()) {
        Wire::Binary(_) => {}
        Wire::Numeric { array: false } => s.push_str("::numeric"),
        Wire::Numeric { array: true } => s.push_str("::numeric[]"),
        Wire::Text => s.push_str("::text"),
    }
    s
}

/// The expressions to put into the `ROW(...)` that pushdown mode hashes in the server
/// (`hash_record_extended`) for this column, chosen so that the server's hash equality is
/// the equality of [`Value`](crate::row::value::Value) (see the table in [`crate::row::value`]):
///
/// * `text`-like columns (and arrays of them) get `COLLATE "C"` (bytewise even under a
///   nondeterministic collation);
/// * `interval` and `interval[]` are hashed as `::text` (the stored fields, as printed with
///   `IntervalStyle=postgres`), since `interval_hash` equates `'1 day'` and `'24 hours'`;
/// * `json` becomes `::jsonb`, `money` `::numeric` (arrays alike);
/// * arrays also hash `array_dims(col)`, since `hash_array` ignores dimensions and lower
///   bounds;
/// * types read as text here (enums, composites, ranges, ...) are hashed as
///   `::text COLLATE "C"`, exactly what stream mode compares.
///
/// Hash with a **nonzero seed** (`hash_record_extended(ROW(...), 1)`): with seed 0,
/// `hashfloat8` returns 0 for `0.0`, which is also what a NULL field contributes, so a float
/// column that is 0 in one region and NULL in another would look equal.
///
/// Requires the session settings of `pg::session` (`IntervalStyle=postgres`,
/// `TimeZone=UTC`, `DateStyle=ISO`, `extra_float_digits=3`, `bytea_output=hex`), like the
/// text fallback of [`select_expr`].
///
/// ```
/// use eden_consistency::__private::expr::pushdown_exprs;
/// use eden_consistency::Column;
/// use eden_consistency::__private::types::oid;
/// assert_eq!(pushdown_exprs(&Column::new("n", oid::NUMERIC), Some("t")), vec!["\"t\".\"n\""]);
/// assert_eq!(pushdown_exprs(&Column::new("a", oid::INT4_ARRAY), None),
///            vec!["\"a\"", "array_dims(\"a\")"]);
/// assert_eq!(pushdown_exprs(&Column::new("i", oid::INTERVAL), None), vec!["\"i\"::text"]);
/// ```
pub fn pushdown_exprs<C: ColumnType + ?Sized>(col: &C, table_alias: Option<&str>) -> Vec<String> {
    use oid::*;
    let mut r = String::new();
    if let Some(a) = table_alias {
        r.push_str(&quote_ident(a));
        r.push('.');
    }
    r.push_str(&quote_ident(col.column_name()));
    let dims = format!("array_dims({r})");
    match col.effective_oid() {
        JSON => vec![format!("{r}::jsonb")],
        JSON_ARRAY => vec![format!("{r}::jsonb[]"), dims],
        MONEY => vec![format!("{r}::numeric")],
        MONEY_ARRAY => vec![format!("{r}::numeric[]"), dims],
        INTERVAL | INTERVAL_ARRAY => vec![format!("{r}::text")],
        TEXT | VARCHAR | BPCHAR | NAME => vec![format!("{r} COLLATE \"C\"")],
        TEXT_ARRAY | VARCHAR_ARRAY | BPCHAR_ARRAY | NAME_ARRAY => {
            vec![format!("{r} COLLATE \"C\""), dims]
        }
        t if is_binary_scalar(t) => vec![r],
        t if binary_array_elem(t).is_some() => vec![r, dims],
        _ => vec![format!("{r}::text COLLATE \"C\"")],
    }
}
