//! Column values decoded so that they compare as values, whatever the session printing them.
//!
//! Rows are read with the binary protocol where the type is known here (see [`crate::pg::expr::select_expr`]),
//! and as PostgreSQL's canonical text (under the session's fixed `TimeZone=UTC`,
//! `DateStyle=ISO`, `IntervalStyle=postgres`, `extra_float_digits=3`, `bytea_output=hex`)
//! for every other type. The binary formats are the types' `send` functions, the same bytes
//! that `COPY ... (FORMAT binary)` produces, so [`crate::pg::decode::decode_binary`] serves both.
//!
//! # Which equality each type uses
//!
//! Equality here ([`PartialEq`] on [`Value`], and the row digests of [`crate::row::digest`]) is
//! *drift detection*: two values are equal when they are the same data, whatever session
//! printed them.
//!
//! The last column says whether the server's own hash opclass (what `hash_record_extended`
//! uses on the bare column) has the same equality, and what
//! [`pushdown_exprs`](crate::pg::expr::pushdown_exprs) hashes
//! instead where it does not.
//!
//! | type | equal when | the server's hash of the bare column | `pushdown_exprs` |
//! |---|---|---|---|
//! | `bool`, `int2/4/8`, `oid` | same integer | agrees | the column |
//! | `float4`, `float8` | same bits, except every NaN is one NaN and `-0 = 0` (PostgreSQL's float equality; one ulp is a difference) | agrees (`hashfloat8` does the same); but with seed 0 it hashes `0.0` like a NULL field | the column (use a nonzero seed) |
//! | `numeric` | same number: `1.0 = 1.00`, `-0 = 0`; `NaN = NaN`; `±Infinity` | agrees (`hash_numeric` ignores scale) | the column |
//! | `money` | read as `col::numeric`, so `lc_monetary` never matters | no hash opclass; `::text` depends on `lc_monetary` | `col::numeric` |
//! | `text`, `varchar`, `name` | same bytes (UTF-8) | agrees for deterministic collations; not for nondeterministic (ICU `deterministic=false`) ones, hashed by collation key | `col COLLATE "C"` |
//! | `char(n)` / `bpchar` | same bytes after trailing spaces are removed (PostgreSQL's `bpchar` semantics) | agrees (`hashbpchar` ignores trailing spaces) | `col COLLATE "C"` |
//! | `bytea`, `uuid` | same bytes | agrees | the column |
//! | `date`, `time`, `timestamp` | same stored value | agrees | the column |
//! | `timestamptz` | same instant (stored UTC microseconds), whatever `TimeZone` | agrees | the column |
//! | `interval` | same *stored* fields (months, days, microseconds): `'1 day' ≠ '24 hours'`, `'1 mon' ≠ '30 days'`. A deliberate choice: for drift detection these are different data (they add differently to timestamps across DST and month ends), although PostgreSQL's `=` calls them equal | **differs**: `interval_hash` hashes the normalized span | `col::text` (exact fields under `IntervalStyle=postgres`) |
//! | `jsonb`, `json` | same JSON value: key order and whitespace irrelevant, numbers by numeric value (`1.0 = 1`), duplicate keys in `json` keep the last (as the cast to `jsonb` does); JSON `null` ≠ SQL NULL | agrees for `jsonb`; `json` has no hash opclass | the column; `col::jsonb` for `json` |
//! | arrays of the above | same dimensions, lower bounds and elements (NULL elements included) | **differs**: `hash_array` ignores dimensions and lower bounds (`'{1,2}'`, `'{{1},{2}}'` and `'[0:1]={1,2}'` hash alike); elements as above | the column (with the element rules) and `array_dims(col)`; `interval[]` as `::text` |
//! | anything else (enums, domains over other types, composites, ranges, `timetz`, `citext`, `inet`, geometric, user types) | same canonical text under the fixed session settings, bytewise | **differs** in general: `numeric` scale inside a composite or range prints differently but hashes alike; `citext` hashes case-insensitively; some have no hash opclass | `col::text COLLATE "C"` |
//!
//! Domains are compared as their base type. With
//! [`pushdown_exprs`](crate::pg::expr::pushdown_exprs) and a nonzero seed, pushdown
//! and stream mode find exactly the same differing rows (tested per type against the server).
//!
//! [`Value::compare`] is a different thing: an *ordering* for resolution rules (newest
//! tracking value, highest value), where intervals order as PostgreSQL orders them.

use std::cmp::Ordering;
use std::fmt::Write as _;

use crate::row::decimal::cmp_decimal;

/// Microseconds in a day.
const USECS_PER_DAY: i64 = 86_400_000_000;

/// PostgreSQL's epoch, 2000-01-01 00:00 UTC, in seconds since the Unix epoch: `date` counts
/// days and `timestamp`, `timestamptz` and commit timestamps count microseconds from it.
pub(crate) const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;
/// [`PG_EPOCH_UNIX_SECS`] in microseconds.
pub(crate) const PG_EPOCH_UNIX_MICROS: i64 = PG_EPOCH_UNIX_SECS * 1_000_000;

/// PostgreSQL's epoch as a date and time (UTC).
pub(crate) fn pg_epoch() -> chrono::NaiveDateTime {
    chrono::DateTime::from_timestamp(PG_EPOCH_UNIX_SECS, 0)
        .map(|d| d.naive_utc())
        .unwrap_or_default()
}

/// One column value.
#[derive(Debug, Clone)]
pub enum Value {
    /// SQL NULL (never equal to JSON `null` or an empty string).
    Null,
    /// `boolean`.
    Bool(bool),
    /// `smallint`, `integer`, `bigint`, `oid`.
    Int(i64),
    /// `real`, `double precision` (`real` widened exactly). Decoding makes every NaN the
    /// positive quiet NaN and `-0` zero, so equal floats have equal bits.
    Float(f64),
    /// `numeric` (and `money`), as normalized decimal text: no leading `+`, no trailing
    /// fractional zeros, no exponent, `0` for any zero; or `NaN`, `Infinity`, `-Infinity`.
    Numeric(String),
    /// `text`, `varchar`, `char` (trailing spaces removed), `name`.
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// `uuid`.
    Uuid(uuid::Uuid),
    /// `date`: days since 2000-01-01 (PostgreSQL's epoch); `i32::MIN`/`i32::MAX` are
    /// `-infinity`/`infinity`.
    Date(i32),
    /// `time`: microseconds since midnight.
    Time(i64),
    /// `timestamp` (without time zone): microseconds since 2000-01-01 00:00;
    /// `i64::MIN`/`i64::MAX` are `-infinity`/`infinity`.
    Timestamp(i64),
    /// `timestamptz`: microseconds since 2000-01-01 00:00 UTC; infinities as for `Timestamp`.
    TimestampTz(i64),
    /// `interval`, as stored (months, days, microseconds): `'1 day'` is not `'24 hours'`.
    Interval {
        /// Months.
        months: i32,
        /// Days.
        days: i32,
        /// Microseconds.
        micros: i64,
    },
    /// `json`, `jsonb`, by value, as canonical JSON text (see [`crate::row::json::canonical_json`]): compact,
    /// object keys sorted bytewise and unique, numbers as normalized decimals. JSON `null`
    /// is `Json("null")`, never [`Value::Null`].
    Json(String),
    /// An array whose lower bounds are all 1. A multi-dimensional array is an array of
    /// arrays (one level per dimension); elements may be [`Value::Null`].
    Array(Vec<Value>),
    /// An array with some lower bound other than 1 (e.g. `'[0:1]={a,b}'`): the bounds per
    /// dimension, and the elements as in [`Value::Array`].
    BoundedArray {
        /// Lower bound of each dimension.
        lower_bounds: Vec<i32>,
        /// The elements, nested per dimension like [`Value::Array`].
        elements: Vec<Value>,
    },
    /// Any other type, as PostgreSQL's canonical text for it.
    Other(String),
}

impl PartialEq for Value {
    /// Exact equality of the same kind of value (see the module table); `Int(1)` is not
    /// `Float(1.0)` here (use [`Value::compare`] for cross-kind ordering).
    fn eq(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Null, Null) => true,
            (Bool(a), Bool(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (Float(a), Float(b)) => canonical_float(*a).to_bits() == canonical_float(*b).to_bits(),
            (Numeric(a), Numeric(b)) => a == b || cmp_decimal(a, b) == Ordering::Equal,
            (Text(a), Text(b)) | (Other(a), Other(b)) | (Json(a), Json(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Uuid(a), Uuid(b)) => a == b,
            (Date(a), Date(b)) => a == b,
            (Time(a), Time(b))
            | (Timestamp(a), Timestamp(b))
            | (TimestampTz(a), TimestampTz(b)) => a == b,
            (
                Interval {
                    months: m1,
                    days: d1,
                    micros: u1,
                },
                Interval {
                    months: m2,
                    days: d2,
                    micros: u2,
                },
            ) => m1 == m2 && d1 == d2 && u1 == u2,
            (Array(a), Array(b)) => a == b,
            (
                BoundedArray {
                    lower_bounds: l1,
                    elements: e1,
                },
                BoundedArray {
                    lower_bounds: l2,
                    elements: e2,
                },
            ) => l1 == l2 && e1 == e2,
            _ => false,
        }
    }
}

impl Eq for Value {}

/// Makes every NaN the positive quiet NaN and `-0.0` zero: PostgreSQL's float equality.
pub fn canonical_float(f: f64) -> f64 {
    if f.is_nan() {
        f64::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    }
}

impl Value {
    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Orders two values of comparable kinds; `None` when they cannot be compared (different
    /// kinds that have no common order). NULL is lower than every value (a NULL tracking
    /// value is older than any value). Numbers of different kinds compare numerically;
    /// floats as PostgreSQL orders them (NaN greatest, `-0 = 0`); intervals as PostgreSQL
    /// orders them (30-day months, 24-hour days), unlike `==`.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        let f = |x: &f64| canonical_float(*x);
        Some(match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Null, _) => Ordering::Less,
            (_, Null) => Ordering::Greater,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => f(a).total_cmp(&f(b)),
            (Int(a), Float(b)) => (*a as f64).total_cmp(&f(b)),
            (Float(a), Int(b)) => f(a).total_cmp(&(*b as f64)),
            (Numeric(a), Numeric(b)) => cmp_decimal(a, b),
            (Numeric(a), Int(b)) => cmp_decimal(a, &b.to_string()),
            (Int(a), Numeric(b)) => cmp_decimal(&a.to_string(), b),
            (Numeric(a), Float(b)) => parse_num(a).total_cmp(&f(b)),
            (Float(a), Numeric(b)) => f(a).total_cmp(&parse_num(b)),
            (Text(a), Text(b)) | (Other(a), Other(b)) | (Json(a), Json(b)) => {
                a.as_bytes().cmp(b.as_bytes())
            }
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Uuid(a), Uuid(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Time(a), Time(b))
            | (Timestamp(a), Timestamp(b))
            | (TimestampTz(a), TimestampTz(b)) => a.cmp(b),
            (Date(a), Timestamp(b)) | (Date(a), TimestampTz(b)) => date_micros(*a).cmp(b),
            (Timestamp(a), Date(b)) | (TimestampTz(a), Date(b)) => a.cmp(&date_micros(*b)),
            (Timestamp(a), TimestampTz(b)) | (TimestampTz(a), Timestamp(b)) => a.cmp(b),
            (Interval { .. }, Interval { .. }) => interval_value(self).cmp(&interval_value(other)),
            (Array(a), Array(b))
            | (BoundedArray { elements: a, .. }, BoundedArray { elements: b, .. })
            | (Array(a), BoundedArray { elements: b, .. })
            | (BoundedArray { elements: a, .. }, Array(b)) => {
                for (x, y) in a.iter().zip(b.iter()) {
                    match x.compare(y)? {
                        Ordering::Equal => continue,
                        o => return Some(o),
                    }
                }
                a.len().cmp(&b.len())
            }
            _ => return None,
        })
    }

    /// The text of `value::text` (booleans `true`/`false`) with `TimeZone=UTC`, `DateStyle=ISO`,
    /// `IntervalStyle=postgres`, `extra_float_digits` ≥ 1 and `bytea_output=hex`; `None`
    /// for SQL NULL.
    ///
    /// Exact for every kind except `Numeric` (printed normalized: PostgreSQL keeps the
    /// column's scale, `1.50`), `Json` (canonical key order and numbers), `Float` read from
    /// `real` (printed as the widened double), `Float` in rare boundary cases where
    /// PostgreSQL prints one more digit (the same double either way), and arrays of those. For report keys of such
    /// types select `k::text` and pass it to [`key_json`].
    ///
    /// ```
    /// use eden_consistency::Value;
    /// assert_eq!(Value::TimestampTz(0).pg_text().unwrap(), "2000-01-01 00:00:00+00");
    /// assert_eq!(Value::Interval { months: 14, days: 3, micros: 3_600_000_000 }.pg_text().unwrap(),
    ///            "1 year 2 mons 3 days 01:00:00");
    /// ```
    pub fn pg_text(&self) -> Option<String> {
        let mut s = String::new();
        match self {
            Value::Null => return None,
            Value::Array(elems) => write_array_text(&mut s, elems),
            Value::BoundedArray {
                lower_bounds,
                elements,
            } => {
                let mut dims = Vec::new();
                let mut level = elements;
                for lb in lower_bounds {
                    dims.push((*lb, level.len()));
                    level = match level.first() {
                        Some(Value::Array(inner)) => inner,
                        _ => &EMPTY,
                    };
                }
                for (lb, len) in dims {
                    let _ = write!(s, "[{}:{}]", lb, lb as i64 + len as i64 - 1);
                }
                s.push('=');
                write_array_text(&mut s, elements);
            }
            v => write_scalar_text(&mut s, v),
        }
        Some(s)
    }
}

static EMPTY: Vec<Value> = Vec::new();

fn write_scalar_text(s: &mut String, v: &Value) {
    match v {
        Value::Null => s.push_str("NULL"),
        Value::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(s, "{i}");
        }
        Value::Float(f) => s.push_str(&float_text(*f)),
        Value::Numeric(n) | Value::Text(n) | Value::Other(n) | Value::Json(n) => s.push_str(n),
        Value::Bytes(b) => {
            s.push_str("\\x");
            for x in b {
                let _ = write!(s, "{x:02x}");
            }
        }
        Value::Uuid(u) => {
            let _ = write!(s, "{}", u.hyphenated());
        }
        Value::Date(d) => write_date(s, *d),
        Value::Time(t) => write_time(s, *t),
        Value::Timestamp(t) => write_timestamp(s, *t, false),
        Value::TimestampTz(t) => write_timestamp(s, *t, true),
        Value::Interval {
            months,
            days,
            micros,
        } => write_interval(s, *months, *days, *micros),
        Value::Array(_) | Value::BoundedArray { .. } => {
            if let Some(t) = v.pg_text() {
                s.push_str(&t)
            }
        }
    }
}

/// Array literal text as `array_out` prints it (elements quoted when needed).
fn write_array_text(s: &mut String, elems: &[Value]) {
    s.push('{');
    for (i, e) in elems.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        match e {
            Value::Array(inner) => write_array_text(s, inner),
            Value::Null => s.push_str("NULL"),
            Value::Bool(b) => s.push(if *b { 't' } else { 'f' }),
            v => {
                let mut t = String::new();
                write_scalar_text(&mut t, v);
                let needs_quotes = t.is_empty()
                    || t.eq_ignore_ascii_case("null")
                    || t.chars().any(|c| {
                        matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace()
                    });
                if needs_quotes {
                    s.push('"');
                    for c in t.chars() {
                        if c == '"' || c == '\\' {
                            s.push('\\');
                        }
                        s.push(c);
                    }
                    s.push('"');
                } else {
                    s.push_str(&t);
                }
            }
        }
    }
    s.push('}');
}

/// `float8out` with `extra_float_digits` > 0: shortest exact digits, exponent form outside
/// 1e-4 ..= 1e15.
fn float_text(f: f64) -> String {
    let f = canonical_float(f);
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if f == 0.0 {
        return "0".into();
    }
    let sci = format!("{f:e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..15).contains(&exp) {
        format!("{f}")
    } else {
        format!("{mant}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

fn date_micros(d: i32) -> i64 {
    match d {
        i32::MIN => i64::MIN,
        i32::MAX => i64::MAX,
        d => d as i64 * USECS_PER_DAY,
    }
}

fn write_date(s: &mut String, d: i32) {
    match d {
        i32::MAX => s.push_str("infinity"),
        i32::MIN => s.push_str("-infinity"),
        d => {
            let epoch = pg_epoch().date();
            match epoch.checked_add_signed(chrono::Duration::days(d as i64)) {
                Some(date) => {
                    use chrono::Datelike;
                    let y = date.year();
                    if y <= 0 {
                        let _ = write!(s, "{:04}-{:02}-{:02} BC", 1 - y, date.month(), date.day());
                    } else {
                        let _ = write!(s, "{:04}-{:02}-{:02}", y, date.month(), date.day());
                    }
                }
                None => {
                    let _ = write!(s, "{d} days after 2000-01-01");
                }
            }
        }
    }
}

fn write_hms(s: &mut String, micros: u64) {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let _ = write!(
        s,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
}

fn write_time(s: &mut String, t: i64) {
    write_hms(s, t.max(0) as u64);
}

fn write_timestamp(s: &mut String, t: i64, tz: bool) {
    match t {
        i64::MAX => s.push_str("infinity"),
        i64::MIN => s.push_str("-infinity"),
        t => {
            let days = t.div_euclid(USECS_PER_DAY);
            let tod = t.rem_euclid(USECS_PER_DAY);
            let mut date = String::new();
            write_date(&mut date, days as i32);
            let (date, bc) = match date.strip_suffix(" BC") {
                Some(d) => (d.to_string(), true),
                None => (date, false),
            };
            s.push_str(&date);
            s.push(' ');
            write_hms(s, tod as u64);
            if tz {
                s.push_str("+00");
            }
            if bc {
                s.push_str(" BC");
            }
        }
    }
}

/// `interval_out` with `IntervalStyle=postgres`.
fn write_interval(s: &mut String, months: i32, days: i32, micros: i64) {
    let mut is_before = false;
    let mut is_zero = true;
    let mut part = |s: &mut String, v: i64, unit: &str| {
        if v == 0 {
            return;
        }
        if !s.is_empty() {
            s.push(' ');
        }
        let plus = if is_before && v > 0 { "+" } else { "" };
        let _ = write!(s, "{plus}{v} {unit}{}", if v != 1 { "s" } else { "" });
        is_before = v < 0;
        is_zero = false;
    };
    part(s, months as i64 / 12, "year");
    part(s, months as i64 % 12, "mon");
    part(s, days as i64, "day");
    if is_zero || micros != 0 {
        if !s.is_empty() {
            s.push(' ');
        }
        if micros < 0 {
            s.push('-');
        } else if is_before {
            s.push('+');
        }
        write_hms(s, micros.unsigned_abs());
    }
}

impl serde::Serialize for Value {
    /// A JSON rendering for display and reports: numbers as numbers (non-finite floats and
    /// numerics as strings), `json`/`jsonb` as their JSON, arrays as arrays, SQL NULL as
    /// `null`, everything else as [`Value::pg_text`].
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self {
            Value::Null => ser.serialize_unit(),
            Value::Bool(b) => ser.serialize_bool(*b),
            Value::Int(i) => ser.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => ser.serialize_f64(canonical_float(*f)),
            Value::Json(j) => match serde_json::from_str::<serde_json::Value>(j) {
                Ok(v) => v.serialize(ser),
                Err(_) => ser.serialize_str(j),
            },
            Value::Array(elems) => {
                let mut seq = ser.serialize_seq(Some(elems.len()))?;
                for e in elems {
                    seq.serialize_element(e)?;
                }
                seq.end()
            }
            v => ser.serialize_str(&v.pg_text().unwrap_or_default()),
        }
    }
}

/// A key value's JSON form for reports (see `docs/reports.md`): integers as JSON numbers, everything
/// else as the string PostgreSQL prints for it with `TimeZone=UTC`. Pass `pg_text` (the
/// server's `k::text`) when you have it; without it the text comes from
/// [`Value::pg_text`], which is exact for all but numeric scale, `real` and json (see there).
/// SQL NULL (impossible in a primary key) gives JSON `null`.
///
/// ```
/// use eden_consistency::Value;
/// use eden_consistency::__private::value::key_json;
/// assert_eq!(key_json(&Value::Int(42), None), serde_json::json!(42));
/// assert_eq!(key_json(&Value::Numeric("1.5".into()), Some("1.50")), serde_json::json!("1.50"));
/// assert_eq!(key_json(&Value::Text("a".into()), None), serde_json::json!("a"));
/// ```
pub fn key_json(v: &Value, pg_text: Option<&str>) -> serde_json::Value {
    match (v, pg_text) {
        (Value::Null, _) => serde_json::Value::Null,
        (Value::Int(i), _) => serde_json::Value::from(*i),
        // As the output function prints it (`t`/`f`), not the `true` of a `::text` cast.
        (Value::Bool(b), _) => serde_json::Value::String(if *b { "t" } else { "f" }.into()),
        (_, Some(t)) => serde_json::Value::String(t.to_string()),
        (v, None) => serde_json::Value::String(v.pg_text().unwrap_or_default()),
    }
}

// ---------------------------------------------------------------------------------------
// Ordering helpers.

/// An interval's comparable value, as PostgreSQL orders intervals (30-day months, 24-hour days).
fn interval_value(v: &Value) -> i128 {
    match v {
        Value::Interval {
            months,
            days,
            micros,
        } => (*months as i128 * 30 + *days as i128) * 86_400_000_000 + *micros as i128,
        _ => 0,
    }
}

fn parse_num(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_is_lowest() {
        assert_eq!(
            Value::Null.compare(&Value::Int(i64::MIN)),
            Some(Ordering::Less)
        );
        assert_eq!(
            Value::Int(3).compare(&Value::Numeric("2.5".into())),
            Some(Ordering::Greater)
        );
        assert_eq!(Value::Text("a".into()).compare(&Value::Int(1)), None);
    }
}
