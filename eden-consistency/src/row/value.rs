//! Column values decoded so that they compare as values, whatever the session printing them.
//!
//! Rows are read with the binary protocol where the type is known here (see [`select_expr`]),
//! and as PostgreSQL's canonical text (under the session's fixed `TimeZone=UTC`,
//! `DateStyle=ISO`, `IntervalStyle=postgres`, `extra_float_digits=3`, `bytea_output=hex`)
//! for every other type. The binary formats are the types' `send` functions, the same bytes
//! that `COPY ... (FORMAT binary)` produces, so [`decode_binary`] serves both.
//!
//! # Which equality each type uses
//!
//! Equality here ([`PartialEq`] on [`Value`], and the row digests of [`crate::row::digest`]) is
//! *drift detection*: two values are equal when they are the same data, whatever session
//! printed them.
//!
//! The last column says whether the server's own hash opclass (what `hash_record_extended`
//! uses on the bare column) has the same equality, and what [`pushdown_exprs`] hashes
//! instead where it does not.
//!
//! | type | equal when | the server's hash of the bare column | [`pushdown_exprs`] |
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
//! Domains are compared as their base type. With [`pushdown_exprs`] and a nonzero seed, pushdown
//! and stream mode find exactly the same differing rows (tested per type against the server).
//!
//! [`Value::compare`] is a different thing: an *ordering* for resolution rules (newest
//! tracking value, highest value), where intervals order as PostgreSQL orders them.

use std::cmp::Ordering;
use std::fmt::Write as _;

use crate::pg::ident::quote_ident;

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
    /// `json`, `jsonb`, by value, as canonical JSON text (see [`canonical_json`]): compact,
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
    /// use eden_consistency::value::Value;
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
/// use eden_consistency::value::{key_json, Value};
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
// Column metadata and reading rows.

/// What [`select_expr`] and [`decode`] need to know about a column. Implemented by
/// [`crate::pg::schema::Column`] when it lands, and by the small [`ColumnSpec`].
pub trait ColumnType {
    /// The column's name, as in the catalog (unquoted).
    fn column_name(&self) -> &str;
    /// `pg_attribute.atttypid`.
    fn type_oid(&self) -> u32;
    /// For a domain, its base type's oid (`pg_type.typbasetype`, followed to the bottom);
    /// otherwise 0 or the type's own oid.
    fn base_type_oid(&self) -> u32;

    /// The oid whose wire format the column has: the base type for domains.
    fn effective_oid(&self) -> u32 {
        match self.base_type_oid() {
            0 => self.type_oid(),
            b => b,
        }
    }
}

/// A minimal column description: name and type oid(s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Column name (unquoted).
    pub name: String,
    /// Type oid.
    pub type_oid: u32,
    /// Base type oid for a domain, else 0.
    pub base_type_oid: u32,
}

impl ColumnSpec {
    /// A column of a non-domain type.
    pub fn new(name: impl Into<String>, type_oid: u32) -> Self {
        ColumnSpec {
            name: name.into(),
            type_oid,
            base_type_oid: 0,
        }
    }
}

impl ColumnType for ColumnSpec {
    fn column_name(&self) -> &str {
        &self.name
    }
    fn type_oid(&self) -> u32 {
        self.type_oid
    }
    fn base_type_oid(&self) -> u32 {
        self.base_type_oid
    }
}

impl<T: ColumnType + ?Sized> ColumnType for &T {
    fn column_name(&self) -> &str {
        (**self).column_name()
    }
    fn type_oid(&self) -> u32 {
        (**self).type_oid()
    }
    fn base_type_oid(&self) -> u32 {
        (**self).base_type_oid()
    }
}

impl ColumnType for crate::pg::schema::Column {
    fn column_name(&self) -> &str {
        &self.name
    }
    fn type_oid(&self) -> u32 {
        self.type_oid
    }
    fn base_type_oid(&self) -> u32 {
        self.base_type_oid
    }
}

/// Type oids decoded in binary here (built-in, stable across PostgreSQL versions).
#[allow(missing_docs)]
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const MONEY: u32 = 790;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const NUMERIC: u32 = 1700;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;

    pub const JSON_ARRAY: u32 = 199;
    pub const BOOL_ARRAY: u32 = 1000;
    pub const BYTEA_ARRAY: u32 = 1001;
    pub const NAME_ARRAY: u32 = 1003;
    pub const INT2_ARRAY: u32 = 1005;
    pub const INT4_ARRAY: u32 = 1007;
    pub const TEXT_ARRAY: u32 = 1009;
    pub const BPCHAR_ARRAY: u32 = 1014;
    pub const VARCHAR_ARRAY: u32 = 1015;
    pub const INT8_ARRAY: u32 = 1016;
    pub const FLOAT4_ARRAY: u32 = 1021;
    pub const FLOAT8_ARRAY: u32 = 1022;
    pub const OID_ARRAY: u32 = 1028;
    pub const MONEY_ARRAY: u32 = 791;
    pub const TIMESTAMP_ARRAY: u32 = 1115;
    pub const DATE_ARRAY: u32 = 1182;
    pub const TIME_ARRAY: u32 = 1183;
    pub const TIMESTAMPTZ_ARRAY: u32 = 1185;
    pub const INTERVAL_ARRAY: u32 = 1187;
    pub const NUMERIC_ARRAY: u32 = 1231;
    pub const UUID_ARRAY: u32 = 2951;
    pub const JSONB_ARRAY: u32 = 3807;
}

/// How a column of a given type travels: its own binary format, or cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// The type's binary format, decoded by [`decode_binary`] with this oid.
    Binary(u32),
    /// Cast to `numeric` (`money`) or `numeric[]` (`money[]`), then binary.
    Numeric {
        /// True for `money[]`.
        array: bool,
    },
    /// Cast to `text`, read as [`Value::Other`].
    Text,
}

/// Whether a scalar type oid is decoded in binary here.
pub fn is_binary_scalar(type_oid: u32) -> bool {
    use oid::*;
    matches!(
        type_oid,
        BOOL | BYTEA
            | NAME
            | INT8
            | INT2
            | INT4
            | TEXT
            | OID
            | JSON
            | FLOAT4
            | FLOAT8
            | BPCHAR
            | VARCHAR
            | DATE
            | TIME
            | TIMESTAMP
            | TIMESTAMPTZ
            | INTERVAL
            | NUMERIC
            | UUID
            | JSONB
    )
}

/// The element oid of a built-in array type decoded in binary here.
pub fn binary_array_elem(type_oid: u32) -> Option<u32> {
    use oid::*;
    Some(match type_oid {
        JSON_ARRAY => JSON,
        BOOL_ARRAY => BOOL,
        BYTEA_ARRAY => BYTEA,
        NAME_ARRAY => NAME,
        INT2_ARRAY => INT2,
        INT4_ARRAY => INT4,
        TEXT_ARRAY => TEXT,
        BPCHAR_ARRAY => BPCHAR,
        VARCHAR_ARRAY => VARCHAR,
        INT8_ARRAY => INT8,
        FLOAT4_ARRAY => FLOAT4,
        FLOAT8_ARRAY => FLOAT8,
        OID_ARRAY => OID,
        TIMESTAMP_ARRAY => TIMESTAMP,
        DATE_ARRAY => DATE,
        TIME_ARRAY => TIME,
        TIMESTAMPTZ_ARRAY => TIMESTAMPTZ,
        INTERVAL_ARRAY => INTERVAL,
        NUMERIC_ARRAY => NUMERIC,
        UUID_ARRAY => UUID,
        JSONB_ARRAY => JSONB,
        _ => return None,
    })
}

/// How a column of this (effective, i.e. domain-resolved) type oid is read.
pub fn wire_for(type_oid: u32) -> Wire {
    match type_oid {
        oid::MONEY => Wire::Numeric { array: false },
        oid::MONEY_ARRAY => Wire::Numeric { array: true },
        t if is_binary_scalar(t) || binary_array_elem(t).is_some() => Wire::Binary(t),
        _ => Wire::Text,
    }
}

/// The SQL select-list expression for one column such that [`decode`] can read it: the
/// quoted column itself for types decoded in binary here (bool, int2/4/8, oid, float4/8,
/// numeric, text/varchar/bpchar/name, bytea, uuid, date, time, timestamp, timestamptz,
/// interval, json, jsonb, arrays of these, and domains over them), `col::numeric` for
/// money, else `col::text`.
///
/// ```
/// use eden_consistency::value::{select_expr, ColumnSpec};
/// assert_eq!(select_expr(&ColumnSpec::new("id", 20), None), "\"id\"");
/// assert_eq!(select_expr(&ColumnSpec::new("Mood", 99999), Some("t")), "\"t\".\"Mood\"::text");
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
/// this module's equality (see the module table):
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
/// Requires the session settings of [`crate::pg::connect`] (`IntervalStyle=postgres`,
/// `TimeZone=UTC`, `DateStyle=ISO`, `extra_float_digits=3`, `bytea_output=hex`), like the
/// text fallback of [`select_expr`].
///
/// ```
/// use eden_consistency::value::{pushdown_exprs, ColumnSpec, oid};
/// assert_eq!(pushdown_exprs(&ColumnSpec::new("n", oid::NUMERIC), Some("t")), vec!["\"t\".\"n\""]);
/// assert_eq!(pushdown_exprs(&ColumnSpec::new("a", oid::INT4_ARRAY), None),
///            vec!["\"a\"", "array_dims(\"a\")"]);
/// assert_eq!(pushdown_exprs(&ColumnSpec::new("i", oid::INTERVAL), None), vec!["\"i\"::text"]);
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

/// A column's raw wire bytes, whatever its type (`None` for NULL).
struct Raw<'a>(&'a [u8]);

impl<'a> postgres_types::FromSql<'a> for Raw<'a> {
    fn from_sql(
        _ty: &postgres_types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw))
    }
    fn accepts(_ty: &postgres_types::Type) -> bool {
        true
    }
}

/// The raw binary bytes of column `idx` of a row (`None` for NULL).
pub fn raw_column(row: &tokio_postgres::Row, idx: usize) -> Result<Option<&[u8]>, String> {
    row.try_get::<_, Option<Raw<'_>>>(idx)
        .map(|r| r.map(|r| r.0))
        .map_err(|e| format!("cannot read result column {idx}: {e}"))
}

/// Decodes column `idx` of a row selected with [`select_expr`] for `col`.
pub fn decode<C: ColumnType + ?Sized>(
    row: &tokio_postgres::Row,
    idx: usize,
    col: &C,
) -> Result<Value, String> {
    let raw = raw_column(row, idx)?;
    decode_wire(raw, col.effective_oid()).map_err(|e| format!("column {}: {e}", col.column_name()))
}

/// Decodes the columns `start..start + cols.len()` of a row selected with [`select_expr`].
pub fn decode_row<C: ColumnType>(
    row: &tokio_postgres::Row,
    start: usize,
    cols: &[C],
) -> Result<Vec<Value>, String> {
    cols.iter()
        .enumerate()
        .map(|(i, c)| decode(row, start + i, c))
        .collect()
}

/// Decodes one value as it arrives for a column of (effective) type `type_oid` selected
/// with [`select_expr`]: binary formats, the `numeric` cast of money, or text. Also serves
/// binary `COPY` output of the same select list.
pub fn decode_wire(raw: Option<&[u8]>, type_oid: u32) -> Result<Value, String> {
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    match wire_for(type_oid) {
        Wire::Binary(t) => decode_binary(t, raw),
        Wire::Numeric { array: false } => decode_binary(oid::NUMERIC, raw),
        Wire::Numeric { array: true } => decode_binary(oid::NUMERIC_ARRAY, raw),
        Wire::Text => Ok(Value::Other(utf8(raw)?.to_string())),
    }
}

fn utf8(raw: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(raw).map_err(|_| "value is not valid UTF-8".to_string())
}

fn fixed<const N: usize>(raw: &[u8], what: &str) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("{what} value has {} bytes, expected {N}", raw.len()))
}

/// Decodes a non-NULL value in the binary format of a type decoded here (see
/// [`is_binary_scalar`], [`binary_array_elem`]).
pub fn decode_binary(type_oid: u32, raw: &[u8]) -> Result<Value, String> {
    use oid::*;
    Ok(match type_oid {
        BOOL => Value::Bool(fixed::<1>(raw, "bool")?[0] != 0),
        INT2 => Value::Int(i16::from_be_bytes(fixed(raw, "int2")?) as i64),
        INT4 => Value::Int(i32::from_be_bytes(fixed(raw, "int4")?) as i64),
        INT8 => Value::Int(i64::from_be_bytes(fixed(raw, "int8")?)),
        OID => Value::Int(u32::from_be_bytes(fixed(raw, "oid")?) as i64),
        FLOAT4 => Value::Float(canonical_float(
            f32::from_be_bytes(fixed(raw, "float4")?) as f64
        )),
        FLOAT8 => Value::Float(canonical_float(f64::from_be_bytes(fixed(raw, "float8")?))),
        NUMERIC => Value::Numeric(decode_numeric(raw)?),
        TEXT | VARCHAR | NAME => Value::Text(utf8(raw)?.to_string()),
        BPCHAR => Value::Text(utf8(raw)?.trim_end_matches(' ').to_string()),
        BYTEA => Value::Bytes(raw.to_vec()),
        UUID => Value::Uuid(uuid::Uuid::from_bytes(fixed(raw, "uuid")?)),
        DATE => Value::Date(i32::from_be_bytes(fixed(raw, "date")?)),
        TIME => Value::Time(i64::from_be_bytes(fixed(raw, "time")?)),
        TIMESTAMP => Value::Timestamp(i64::from_be_bytes(fixed(raw, "timestamp")?)),
        TIMESTAMPTZ => Value::TimestampTz(i64::from_be_bytes(fixed(raw, "timestamptz")?)),
        INTERVAL => {
            let b: [u8; 16] = fixed(raw, "interval")?;
            Value::Interval {
                micros: i64::from_be_bytes(b[0..8].try_into().unwrap_or_default()),
                days: i32::from_be_bytes(b[8..12].try_into().unwrap_or_default()),
                months: i32::from_be_bytes(b[12..16].try_into().unwrap_or_default()),
            }
        }
        JSON => Value::Json(canonical_json(utf8(raw)?)?),
        JSONB => match raw.split_first() {
            Some((1, text)) => Value::Json(canonical_json(utf8(text)?)?),
            Some((v, _)) => return Err(format!("unsupported jsonb binary version {v}")),
            None => return Err("empty jsonb value".into()),
        },
        t => match binary_array_elem(t) {
            Some(_) => decode_array(raw)?,
            None => return Err(format!("type oid {t} is not decoded in binary here")),
        },
    })
}

/// Reads a big-endian i32 at `*pos`, advancing.
fn take_i32(raw: &[u8], pos: &mut usize) -> Result<i32, String> {
    let b = raw.get(*pos..*pos + 4).ok_or("array value is truncated")?;
    *pos += 4;
    Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// `array_send` format: ndim, has-null flag, element oid, (length, lower bound) per
/// dimension, then each element as a length (-1 for NULL) and its bytes.
fn decode_array(raw: &[u8]) -> Result<Value, String> {
    let mut pos = 0;
    let ndim = take_i32(raw, &mut pos)?;
    let _flags = take_i32(raw, &mut pos)?;
    let elem = take_i32(raw, &mut pos)? as u32;
    if !(0..=6).contains(&ndim) {
        return Err(format!("array has {ndim} dimensions"));
    }
    if !is_binary_scalar(elem) {
        return Err(format!(
            "array element type oid {elem} is not decoded in binary here"
        ));
    }
    let mut dims = Vec::with_capacity(ndim as usize);
    let mut lbs = Vec::with_capacity(ndim as usize);
    for _ in 0..ndim {
        let len = take_i32(raw, &mut pos)?;
        if len < 0 {
            return Err("array dimension is negative".into());
        }
        dims.push(len as usize);
        lbs.push(take_i32(raw, &mut pos)?);
    }
    let total = if dims.is_empty() {
        Some(0)
    } else {
        dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    };
    let total = match total {
        Some(t) if t <= raw.len() => t,
        _ => return Err("array value is truncated".into()),
    };
    let mut flat = Vec::with_capacity(total);
    for _ in 0..total {
        let len = take_i32(raw, &mut pos)?;
        if len < 0 {
            flat.push(Value::Null);
        } else {
            let b = raw
                .get(pos..pos + len as usize)
                .ok_or("array value is truncated")?;
            pos += len as usize;
            flat.push(decode_binary(elem, b)?);
        }
    }
    let elements = nest(flat, &dims);
    if lbs.iter().all(|&l| l == 1) {
        Ok(Value::Array(elements))
    } else {
        Ok(Value::BoundedArray {
            lower_bounds: lbs,
            elements,
        })
    }
}

/// Splits a flat element list into nested arrays along `dims` (outermost first).
fn nest(flat: Vec<Value>, dims: &[usize]) -> Vec<Value> {
    if dims.len() <= 1 {
        return flat;
    }
    let inner: usize = dims[1..].iter().product();
    let mut out = Vec::with_capacity(dims[0]);
    let mut it = flat.into_iter();
    for _ in 0..dims[0] {
        let chunk: Vec<Value> = it.by_ref().take(inner).collect();
        out.push(Value::Array(nest(chunk, &dims[1..])));
    }
    out
}

/// Decodes `numeric_send` format into normalized decimal text: ndigits, weight, sign,
/// dscale (all 16-bit), then ndigits base-10000 digits; the value is
/// Σ `digit[i]` · 10000^(weight − i). The display scale is ignored (`1.0 = 1.00`).
pub fn decode_numeric(raw: &[u8]) -> Result<String, String> {
    let h = |i: usize| -> Result<u16, String> {
        raw.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "numeric value is truncated".to_string())
    };
    let ndigits = h(0)? as usize;
    let weight = h(2)? as i16 as i64;
    let sign = h(4)?;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        0x0000 | 0x4000 => {}
        s => return Err(format!("numeric value has unknown sign {s:#x}")),
    }
    if raw.len() != 8 + 2 * ndigits {
        return Err("numeric value has the wrong length".into());
    }
    let digits: Vec<u16> = (0..ndigits)
        .map(|i| h(8 + 2 * i))
        .collect::<Result<_, _>>()?;
    if digits.iter().any(|&d| d >= 10000) {
        return Err("numeric value has a digit out of range".into());
    }
    // Drop leading and trailing zero groups (leading ones shift the weight).
    let first = digits.iter().position(|&d| d != 0);
    let Some(first) = first else {
        return Ok("0".into());
    };
    let last = digits.iter().rposition(|&d| d != 0).unwrap_or(first);
    let digits = &digits[first..=last];
    let weight = weight - first as i64;
    let mut int = String::new();
    let mut frac = String::new();
    if weight >= 0 {
        for i in 0..=weight {
            let d = digits.get(i as usize).copied().unwrap_or(0);
            if int.is_empty() {
                if d != 0 {
                    let _ = write!(int, "{d}");
                }
            } else {
                let _ = write!(int, "{d:04}");
            }
        }
        for &d in digits.iter().skip(weight as usize + 1) {
            let _ = write!(frac, "{d:04}");
        }
    } else {
        for _ in 0..(-weight - 1) {
            frac.push_str("0000");
        }
        for &d in digits {
            let _ = write!(frac, "{d:04}");
        }
    }
    let frac = frac.trim_end_matches('0');
    let mut s = String::with_capacity(int.len() + frac.len() + 2);
    if sign == 0x4000 {
        s.push('-');
    }
    s.push_str(if int.is_empty() { "0" } else { &int });
    if !frac.is_empty() {
        s.push('.');
        s.push_str(frac);
    }
    Ok(s)
}

// ---------------------------------------------------------------------------------------
// Canonical JSON.

/// Canonical JSON text of a `json`/`jsonb` document: compact, object keys unique (the last
/// duplicate wins, as in `jsonb`) and in `jsonb`'s order (shorter keys first, then bytewise),
/// strings re-escaped minimally (as `jsonb` prints them), numbers as normalized decimals
/// without exponent (`1.0` and `1E0` become `1`, `-0` becomes `0`). Two documents are equal
/// as `jsonb` exactly when their canonical texts are equal.
///
/// `jsonb` output (already in key order, unique keys) takes a single-pass path without
/// building a tree, at any nesting depth; other documents (e.g. `json` with keys out of
/// order, or keys with escapes) are parsed into a tree, which refuses nesting deeper than 256.
///
/// ```
/// use eden_consistency::value::canonical_json;
/// assert_eq!(canonical_json(r#"{"bb": [1.50, null], "a": "x\u0041", "c": 1, "c": 2}"#).unwrap(),
///            r#"{"a":"xA","c":2,"bb":[1.5,null]}"#);
/// assert_eq!(canonical_json("1e3").unwrap(), "1000");
/// ```
pub fn canonical_json(text: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(text.len());
    canonical_json_into(text, &mut out)?;
    String::from_utf8(out).map_err(|_| "invalid JSON: not UTF-8".to_string())
}

/// Appends the canonical JSON text of `text` (see [`canonical_json`]) to `out`.
pub fn canonical_json_into(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    let mut fast = FastJson {
        s: text.as_bytes(),
        pos: 0,
        out,
    };
    if fast.value().is_some() {
        fast.ws();
        if fast.pos == fast.s.len() {
            return Ok(());
        }
    }
    out.truncate(start);
    let mut p = JsonParser {
        s: text.as_bytes(),
        pos: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(format!("invalid JSON: unexpected text at byte {}", p.pos));
    }
    let mut s = String::with_capacity(text.len());
    v.write(&mut s);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// `jsonb`'s order of object keys: shorter first, then bytewise.
pub fn json_key_order(a: &[u8], b: &[u8]) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Sorts object entries by [`json_key_order`], keeping the last of duplicate keys.
fn sort_object(mut entries: Vec<(String, Json)>) -> Vec<(String, Json)> {
    entries.sort_by(|a, b| json_key_order(a.0.as_bytes(), b.0.as_bytes())); // stable
    let mut out: Vec<(String, Json)> = Vec::with_capacity(entries.len());
    for e in entries {
        match out.last_mut() {
            Some(last) if last.0 == e.0 => *last = e,
            _ => out.push(e),
        }
    }
    out
}

/// Single-pass canonicalization of JSON that is already in canonical key order (as `jsonb`
/// prints it); gives up (`None`) on anything else, for the tree path to handle.
struct FastJson<'a> {
    s: &'a [u8],
    pos: usize,
    out: &'a mut Vec<u8>,
}

impl FastJson<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    /// A string without escapes or control characters: its bytes between the quotes.
    fn plain_string(&mut self) -> Option<(usize, usize)> {
        if self.s.get(self.pos) != Some(&b'"') {
            return None;
        }
        let start = self.pos + 1;
        let mut i = start;
        loop {
            match *self.s.get(i)? {
                b'"' => break,
                b'\\' => return None,
                b if b < 0x20 => return None,
                _ => i += 1,
            }
        }
        self.pos = i + 1;
        Some((start, i))
    }

    /// One complete JSON value, iteratively (any nesting depth).
    fn value(&mut self) -> Option<()> {
        // Open containers: `Some(previous key)` for objects, `None` for arrays.
        let mut stack: Vec<Option<Option<(usize, usize)>>> = Vec::new();
        loop {
            // Parse one value (a scalar, or the start of a container).
            self.ws();
            match *self.s.get(self.pos)? {
                b'{' => {
                    self.pos += 1;
                    self.out.push(b'{');
                    self.ws();
                    if self.s.get(self.pos) == Some(&b'}') {
                        self.pos += 1;
                        self.out.push(b'}');
                    } else {
                        stack.push(Some(None));
                        self.key(&mut stack)?;
                        continue;
                    }
                }
                b'[' => {
                    self.pos += 1;
                    self.out.push(b'[');
                    self.ws();
                    if self.s.get(self.pos) == Some(&b']') {
                        self.pos += 1;
                        self.out.push(b']');
                    } else {
                        stack.push(None);
                        continue;
                    }
                }
                b'"' => match self.plain_string() {
                    Some((a, b)) => {
                        self.out.push(b'"');
                        self.out.extend_from_slice(&self.s[a..b]);
                        self.out.push(b'"');
                    }
                    None => {
                        // Escapes: decode and re-escape canonically.
                        let mut p = JsonParser {
                            s: self.s,
                            pos: self.pos,
                            depth: 0,
                        };
                        let text = p.string().ok()?;
                        self.pos = p.pos;
                        let mut esc = String::with_capacity(text.len() + 2);
                        write_json_string(&mut esc, &text);
                        self.out.extend_from_slice(esc.as_bytes());
                    }
                },
                b't' => self.lit(b"true")?,
                b'f' => self.lit(b"false")?,
                b'n' => self.lit(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(top) = stack.last() else {
                    return Some(());
                };
                let is_obj = top.is_some();
                self.ws();
                match *self.s.get(self.pos)? {
                    b',' => {
                        self.pos += 1;
                        self.out.push(b',');
                        if is_obj {
                            self.key(&mut stack)?;
                        }
                        break;
                    }
                    b'}' if is_obj => {
                        self.pos += 1;
                        self.out.push(b'}');
                        stack.pop();
                    }
                    b']' if !is_obj => {
                        self.pos += 1;
                        self.out.push(b']');
                        stack.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// An object key and its colon, checking it comes after the previous key.
    fn key(&mut self, stack: &mut [Option<Option<(usize, usize)>>]) -> Option<()> {
        self.ws();
        let (a, b) = self.plain_string()?;
        let prev = stack.last_mut()?.as_mut()?;
        if let Some((pa, pb)) = *prev
            && json_key_order(&self.s[pa..pb], &self.s[a..b]) != Ordering::Less
        {
            return None;
        }
        *prev = Some((a, b));
        self.out.push(b'"');
        self.out.extend_from_slice(&self.s[a..b]);
        self.out.extend_from_slice(b"\":");
        self.ws();
        if self.s.get(self.pos) != Some(&b':') {
            return None;
        }
        self.pos += 1;
        Some(())
    }

    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.s.get(self.pos) {
            self.pos += 1;
        }
        let t = &self.s[start..self.pos];
        let digits = t.strip_prefix(b"-").unwrap_or(t);
        let simple = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || (digits.len() == 1 && t.len() == 1));
        if simple {
            self.out.extend_from_slice(t);
        } else {
            let n = normalize_json_number(std::str::from_utf8(t).ok()?)?;
            self.out.extend_from_slice(n.as_bytes());
        }
        Some(())
    }

    fn lit(&mut self, l: &[u8]) -> Option<()> {
        if self.s[self.pos..].starts_with(l) {
            self.pos += l.len();
            self.out.extend_from_slice(l);
            Some(())
        } else {
            None
        }
    }
}

enum Json {
    Lit(&'static str),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    /// Entries sorted by [`json_key_order`], keys unique.
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Lit(l) => out.push_str(l),
            Json::Num(n) => out.push_str(n),
            Json::Str(s) => write_json_string(out, s),
            Json::Arr(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(o) => {
                out.push('{');
                for (i, (k, v)) in o.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_string(out, k);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

struct JsonParser<'a> {
    s: &'a [u8],
    pos: usize,
    depth: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.pos) {
            self.pos += 1;
        }
    }

    fn err(&self, what: &str) -> String {
        format!("invalid JSON: {what} at byte {}", self.pos)
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.pos) {
            None => Err(self.err("unexpected end")),
            Some(b'{') => {
                self.enter()?;
                self.pos += 1;
                let mut map: Vec<(String, Json)> = Vec::new();
                self.ws();
                if self.s.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Json::Obj(sort_object(map)));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if self.s.get(self.pos) != Some(&b':') {
                        return Err(self.err("expected ':'"));
                    }
                    self.pos += 1;
                    let v = self.value()?;
                    map.push((k, v));
                    self.ws();
                    match self.s.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            self.depth -= 1;
                            return Ok(Json::Obj(sort_object(map)));
                        }
                        _ => return Err(self.err("expected ',' or '}'")),
                    }
                }
            }
            Some(b'[') => {
                self.enter()?;
                self.pos += 1;
                let mut arr = Vec::new();
                self.ws();
                if self.s.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(Json::Arr(arr));
                }
                loop {
                    arr.push(self.value()?);
                    self.ws();
                    match self.s.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            self.depth -= 1;
                            return Ok(Json::Arr(arr));
                        }
                        _ => return Err(self.err("expected ',' or ']'")),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.lit("true"),
            Some(b'f') => self.lit("false"),
            Some(b'n') => self.lit("null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > 256 {
            return Err(self.err("nesting too deep"));
        }
        Ok(())
    }

    fn lit(&mut self, l: &'static str) -> Result<Json, String> {
        if self.s[self.pos..].starts_with(l.as_bytes()) {
            self.pos += l.len();
            Ok(Json::Lit(l))
        } else {
            Err(self.err("unexpected word"))
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.s.get(self.pos) {
            self.pos += 1;
        }
        let t =
            std::str::from_utf8(&self.s[start..self.pos]).map_err(|_| self.err("bad number"))?;
        normalize_json_number(t)
            .map(Json::Num)
            .ok_or_else(|| self.err("bad number"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("short \\u escape"))?;
        let h = std::str::from_utf8(h).map_err(|_| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.pos) != Some(&b'"') {
            return Err(self.err("expected a string"));
        }
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.pos) else {
                return Err(self.err("unterminated string"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.pos) else {
                        return Err(self.err("bad escape"));
                    };
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{08}',
                        b'f' => '\u{0c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi)
                                && self.s.get(self.pos..self.pos + 2) == Some(b"\\u")
                            {
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("bad surrogate pair"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(cp).ok_or_else(|| self.err("bad \\u escape"))?
                        }
                        _ => return Err(self.err("bad escape")),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                b => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8 in string"))
    }
}

/// A JSON number as normalized decimal text (no exponent, see [`normalize_decimal`]);
/// exponents beyond ±100000 keep a canonical scientific form `d.ddde±n`.
fn normalize_json_number(t: &str) -> Option<String> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i64>().ok()?),
        None => (body, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // All digits, and the position of the decimal point within them after the exponent.
    let digits: String = format!("{int}{frac}");
    let lead = digits.len() - digits.trim_start_matches('0').len();
    let digits = digits.trim_start_matches('0').trim_end_matches('0');
    if digits.is_empty() {
        return Some("0".into());
    }
    let point = int.len() as i64 - lead as i64 + exp; // digits before the point
    let sign = if neg { "-" } else { "" };
    if !(-100_000..=100_000).contains(&point) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() { "" } else { "." };
        return Some(format!("{sign}{first}{dot}{rest}e{}", point - 1));
    }
    let mut s = String::from(sign);
    if point <= 0 {
        s.push_str("0.");
        s.extend(std::iter::repeat_n('0', (-point) as usize));
        s.push_str(digits);
    } else if point as usize >= digits.len() {
        s.push_str(digits);
        s.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        s.push_str(&digits[..point as usize]);
        s.push('.');
        s.push_str(&digits[point as usize..]);
    }
    Some(s)
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

/// True when `t` is already what [`normalize_decimal`] returns for a number (the common
/// case for decoded values, checked without allocating).
pub(crate) fn is_normalized_decimal(t: &str) -> bool {
    if matches!(t, "NaN" | "Infinity" | "-Infinity" | "0") {
        return true;
    }
    let body = t.strip_prefix('-').unwrap_or(t).as_bytes();
    let (int, frac) = match body.iter().position(|&b| b == b'.') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let int_ok =
        !int.is_empty() && int.iter().all(u8::is_ascii_digit) && (int[0] != b'0' || int.len() == 1);
    let frac_ok = match frac {
        None => int != b"0",
        Some(f) => !f.is_empty() && f.iter().all(u8::is_ascii_digit) && f.last() != Some(&b'0'),
    };
    int_ok && frac_ok
}

/// Normalizes decimal text: strips a leading `+`, leading integer zeros and trailing
/// fractional zeros, applies an exponent (`1.5e3` → `1500`); every zero becomes `0`. `NaN`
/// and the infinities (any case, as PostgreSQL accepts them) become `NaN`, `Infinity`,
/// `-Infinity`; other text without digits passes through.
///
/// ```
/// use eden_consistency::value::normalize_decimal;
/// assert_eq!(normalize_decimal("-001.2300"), "-1.23");
/// assert_eq!(normalize_decimal("-0.000"), "0");
/// assert_eq!(normalize_decimal("10"), "10");
/// assert_eq!(normalize_decimal("+1.25E2"), "125");
/// assert_eq!(normalize_decimal("-inf"), "-Infinity");
/// ```
pub fn normalize_decimal(text: &str) -> String {
    let t = text.trim();
    if is_normalized_decimal(t) {
        return t.to_string();
    }
    if !t.bytes().any(|b| b.is_ascii_digit()) {
        let lower = t.to_ascii_lowercase();
        return match lower.as_str() {
            "nan" => "NaN".into(),
            "infinity" | "+infinity" | "inf" | "+inf" => "Infinity".into(),
            "-infinity" | "-inf" => "-Infinity".into(),
            _ => t.to_string(),
        };
    }
    if t.bytes().any(|b| b == b'e' || b == b'E') {
        let body = t.strip_prefix('+').unwrap_or(t);
        if let Some(n) = normalize_json_number(body) {
            return n;
        }
        return t.to_string();
    }
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    if int == "0" && frac.is_empty() {
        return "0".into();
    }
    let mut s = String::with_capacity(t.len());
    if neg {
        s.push('-');
    }
    s.push_str(int);
    if !frac.is_empty() {
        s.push('.');
        s.push_str(frac);
    }
    s
}

/// Compares two decimal texts exactly (any length), with `NaN` greatest as in PostgreSQL.
fn cmp_decimal(a: &str, b: &str) -> Ordering {
    fn special(s: &str) -> Option<i8> {
        match s {
            "NaN" => Some(2),
            "Infinity" => Some(1),
            "-Infinity" => Some(-1),
            _ => None,
        }
    }
    match (special(a), special(b)) {
        (Some(x), Some(y)) => return x.cmp(&y),
        (Some(x), None) => {
            return if x > 0 {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        (None, Some(y)) => {
            return if y > 0 {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        _ => {}
    }
    let (a, b) = (normalize_decimal(a), normalize_decimal(b));
    let (an, ab) = a
        .strip_prefix('-')
        .map_or((false, a.as_str()), |r| (true, r));
    let (bn, bb) = b
        .strip_prefix('-')
        .map_or((false, b.as_str()), |r| (true, r));
    if an != bn {
        return if an {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    let (ai, af) = ab.split_once('.').unwrap_or((ab, ""));
    let (bi, bf) = bb.split_once('.').unwrap_or((bb, ""));
    let mag = ai
        .len()
        .cmp(&bi.len())
        .then_with(|| ai.cmp(bi))
        .then_with(|| {
            let n = af.len().max(bf.len());
            let pa = format!("{af:0<n$}");
            let pb = format!("{bf:0<n$}");
            pa.cmp(&pb)
        });
    if an { mag.reverse() } else { mag }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(cmp_decimal("1.0", "1.00"), Ordering::Equal);
        assert_eq!(cmp_decimal("-2", "-10"), Ordering::Greater);
        assert_eq!(cmp_decimal("0.5", "0.45"), Ordering::Greater);
        assert_eq!(cmp_decimal("NaN", "1e9"), Ordering::Greater);
        assert_eq!(
            cmp_decimal("123456789012345678901234567890", "9"),
            Ordering::Greater
        );
    }

    fn slow_canonical(text: &str) -> Result<String, String> {
        let mut p = JsonParser {
            s: text.as_bytes(),
            pos: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        assert_eq!(p.pos, p.s.len());
        let mut s = String::new();
        v.write(&mut s);
        Ok(s)
    }

    #[test]
    fn json_canonical_forms() {
        let c = |t: &str| canonical_json(t).unwrap();
        assert_eq!(c(r#"{"b":1,"a":2}"#), c(r#"{ "a" : 2 , "b" : 1 }"#));
        assert_eq!(c(r#"{"aa":1,"b":2}"#), r#"{"b":2,"aa":1}"#);
        assert_eq!(
            c("[1.0, 1e0, 10E-1, -0, 0.0, 100e-2, 0.001e3]"),
            "[1,1,1,0,0,1,1]"
        );
        assert_eq!(c("-12.3400e1"), "-123.4");
        assert_eq!(c("1e-3"), "0.001");
        assert_eq!(c(r#""\u00e9\n\/""#), "\"é\\n/\"");
        assert_eq!(c(r#""\ud83d\ude00""#), "\"😀\"");
        assert_eq!(c(r#"{"a":1,"a":{"x":1}}"#), r#"{"a":{"x":1}}"#);
        assert_eq!(c("null"), "null");
        assert_ne!(c("null"), c(r#""null""#));
        assert!(canonical_json("[1,]").is_err());
        assert!(canonical_json("01").is_err() || c("01") == "1");
        assert!(canonical_json("{\"a\" 1}").is_err());
        assert!(canonical_json("nul").is_err());
        assert!(canonical_json("\"abc").is_err());
        let deep = "[{\"a\":".repeat(5000) + "1" + &"}]".repeat(5000);
        assert_eq!(canonical_json(&deep).unwrap(), deep);
        let deep_unordered = "[{\"b\":1,\"a\":".repeat(5000) + "1" + &"}]".repeat(5000);
        assert!(canonical_json(&deep_unordered).is_err());
        assert!(canonical_json(&("[".repeat(5000) + "]")).is_err());
    }

    #[test]
    fn numeric_binary() {
        // 1234567.000089: ndigits 4, weight 1, digits 123 4567 0000 8900.
        let mut raw = vec![0, 4, 0, 1, 0, 0, 0, 6];
        for d in [123u16, 4567, 0, 8900] {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        assert_eq!(decode_numeric(&raw).unwrap(), "1234567.000089");
        // 0.00000012: weight -2, digit 12 (0.0000 0012).
        let raw = [0, 1, 0xff, 0xfe, 0x40, 0, 0, 8, 0, 12];
        assert_eq!(decode_numeric(&raw).unwrap(), "-0.00000012");
        // Zero with a scale.
        assert_eq!(decode_numeric(&[0, 0, 0, 0, 0, 0, 0, 3]).unwrap(), "0");
        assert!(decode_numeric(&[0, 1, 0, 0, 0, 0, 0, 0]).is_err());
    }

    mod props {
        use super::super::*;
        use super::slow_canonical;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum J {
            Null,
            Bool(bool),
            Num(i64, u8),
            Str(String),
            Arr(Vec<J>),
            Obj(Vec<(String, J)>),
        }

        fn j() -> impl Strategy<Value = J> {
            let leaf = prop_oneof![
                Just(J::Null),
                any::<bool>().prop_map(J::Bool),
                (any::<i64>(), 0u8..6).prop_map(|(n, s)| J::Num(n, s)),
                "[a-c\"\\\\ é\n\u{1}]{0,4}".prop_map(J::Str),
            ];
            leaf.prop_recursive(4, 40, 5, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..5).prop_map(J::Arr),
                    prop::collection::vec(("[a-c]{0,3}", inner), 0..5).prop_map(J::Obj),
                ]
            })
        }

        /// Renders with the given whitespace, number style and key order.
        fn render(v: &J, ws: &str, alt_num: bool, reverse: bool, out: &mut String) {
            match v {
                J::Null => out.push_str("null"),
                J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                J::Num(n, scale) => {
                    if alt_num {
                        // Same value, other spelling: trailing zeros or an exponent.
                        if n % 2 == 0 {
                            out.push_str(&format!("{n}.{}", "0".repeat(*scale as usize + 1)));
                        } else {
                            out.push_str(&format!("{n}0e-1"));
                        }
                    } else {
                        out.push_str(&n.to_string());
                    }
                }
                J::Str(s) => {
                    out.push('"');
                    for c in s.chars() {
                        match c {
                            '"' => out.push_str("\\\""),
                            '\\' => out.push_str("\\\\"),
                            '\n' => out.push_str("\\n"),
                            c if (c as u32) < 0x20 || (alt_num && c == 'a') => {
                                out.push_str(&format!("\\u{:04x}", c as u32))
                            }
                            c => out.push(c),
                        }
                    }
                    out.push('"');
                }
                J::Arr(a) => {
                    out.push('[');
                    for (i, x) in a.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                            out.push_str(ws);
                        }
                        render(x, ws, alt_num, reverse, out);
                    }
                    out.push(']');
                }
                J::Obj(o) => {
                    // Unique keys, last wins: keep the last occurrence of each.
                    let mut entries: Vec<&(String, J)> = Vec::new();
                    for e in o {
                        entries.retain(|x| x.0 != e.0);
                        entries.push(e);
                    }
                    if reverse {
                        entries.reverse();
                    }
                    out.push('{');
                    for (i, (k, x)) in entries.iter().map(|e| (&e.0, &e.1)).enumerate() {
                        if i > 0 {
                            out.push(',');
                            out.push_str(ws);
                        }
                        out.push_str(&format!("\"{k}\":{ws}"));
                        render(x, ws, alt_num, reverse, out);
                    }
                    out.push('}');
                }
            }
        }

        proptest! {
            #[test]
            fn canonical_json_ignores_spelling(v in j()) {
                let mut a = String::new();
                render(&v, "", false, false, &mut a);
                let mut b = String::new();
                render(&v, " \n ", true, true, &mut b);
                let ca = canonical_json(&a).unwrap();
                prop_assert_eq!(&ca, &canonical_json(&b).unwrap());
                prop_assert_eq!(&ca, &slow_canonical(&a).unwrap());
                prop_assert_eq!(&ca, &slow_canonical(&b).unwrap());
                // Canonical text is a fixed point.
                prop_assert_eq!(&canonical_json(&ca).unwrap(), &ca);
            }

            #[test]
            fn decode_binary_never_panics(raw in prop::collection::vec(any::<u8>(), 0..64), pick in 0usize..44) {
                use oid::*;
                let oids = [BOOL, BYTEA, NAME, INT8, INT2, INT4, TEXT, OID, JSON, FLOAT4, FLOAT8, BPCHAR, VARCHAR,
                    DATE, TIME, TIMESTAMP, TIMESTAMPTZ, INTERVAL, NUMERIC, UUID, JSONB, JSON_ARRAY, BOOL_ARRAY,
                    BYTEA_ARRAY, NAME_ARRAY, INT2_ARRAY, INT4_ARRAY, TEXT_ARRAY, BPCHAR_ARRAY, VARCHAR_ARRAY,
                    INT8_ARRAY, FLOAT4_ARRAY, FLOAT8_ARRAY, OID_ARRAY, TIMESTAMP_ARRAY, DATE_ARRAY, TIME_ARRAY,
                    TIMESTAMPTZ_ARRAY, INTERVAL_ARRAY, NUMERIC_ARRAY, UUID_ARRAY, JSONB_ARRAY, MONEY, 12345];
                let o = oids[pick % oids.len()];
                if let Ok(v) = decode_wire(Some(&raw), o) {
                    let _ = v.pg_text();
                    let mut buf = Vec::new();
                    crate::row::digest::encode_value(&mut buf, &v);
                }
                // Arrays with a plausible header and random elements.
                let mut arr = vec![0, 0, 0, 1, 0, 0, 0, 0];
                arr.extend_from_slice(&INT4.to_be_bytes());
                arr.extend_from_slice(&[0, 0, 0, (raw.len() % 5) as u8, 0, 0, 0, 1]);
                arr.extend_from_slice(&raw);
                let _ = decode_binary(INT4_ARRAY, &arr);
            }

            #[test]
            fn copy_parser_never_panics(raw in prop::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
                let mut data = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
                data.extend_from_slice(&raw);
                let mut p = crate::row::digest::CopyBinaryParser::new();
                let cut = cut.min(data.len());
                p.push(&data[..cut]);
                let mut buf = Vec::new();
                for _ in 0..2 {
                    while let Ok(Some(t)) = p.next_tuple() {
                        let oids = vec![oid::TEXT; t.len()];
                        let _ = crate::row::digest::digest_copy_tuple(&t, &oids, &mut buf);
                        let _ = crate::row::digest::decode_copy_tuple(&t, &oids);
                    }
                    p.push(&data[cut..]);
                }
            }

            #[test]
            fn normalize_decimal_is_idempotent(sign in "[-+]?", int in "[0-9]{0,6}", frac in "(\\.[0-9]{0,6})?",
                                               exp in "([eE][-+]?[0-9]{1,2})?") {
                let text = format!("{sign}{int}{frac}{exp}");
                prop_assume!(int.bytes().chain(frac.bytes()).any(|b| b.is_ascii_digit()));
                let n = normalize_decimal(&text);
                prop_assert!(is_normalized_decimal(&n), "{} -> {}", text, n);
                prop_assert_eq!(normalize_decimal(&n), n.clone());
                prop_assert_eq!(cmp_decimal(&text, &n), Ordering::Equal);
                if exp.is_empty() {
                    let f: f64 = text.parse().unwrap_or(0.0);
                    let g: f64 = n.parse().unwrap();
                    prop_assert!((f - g).abs() <= f.abs() * 1e-12);
                }
            }

            #[test]
            fn json_number_normalization_matches_decimal(int in "-?[0-9]{1,12}", frac in "[0-9]{0,8}", exp in -30i64..30) {
                let text = if frac.is_empty() { format!("{int}e{exp}") } else { format!("{int}.{frac}e{exp}") };
                let n = normalize_json_number(&text).unwrap();
                // Shifting the point back by `exp` gives the plain decimal of the input.
                let plain = if frac.is_empty() { int.clone() } else { format!("{int}.{frac}") };
                let back = normalize_json_number(&format!("{n}e{}", -exp)).unwrap();
                prop_assert_eq!(back, normalize_decimal(&plain));
                prop_assert_eq!(normalize_json_number(&n).unwrap(), n.clone());
            }
        }
    }

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
