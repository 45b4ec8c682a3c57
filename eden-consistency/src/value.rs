//! Column values decoded so that they compare as values, whatever the session printing them.
//!
//! Rows are read with the binary protocol where the type is known here, and as PostgreSQL's
//! canonical text (under the session's fixed `TimeZone=UTC`, `DateStyle=ISO`,
//! `IntervalStyle=postgres`, `extra_float_digits=3`) for every other type.

use std::cmp::Ordering;

/// One column value.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Value {
    /// SQL NULL (never equal to JSON `null` or an empty string).
    Null,
    /// `boolean`.
    Bool(bool),
    /// `smallint`, `integer`, `bigint`, `oid`.
    Int(i64),
    /// `real`, `double precision` (`real` widened exactly).
    Float(f64),
    /// `numeric`, as normalized decimal text: no leading `+`, no trailing fractional zeros,
    /// `0` for any zero; or `NaN`, `Infinity`, `-Infinity`.
    Numeric(String),
    /// `text`, `varchar`, `char`, `name`, `citext`.
    Text(String),
    /// `bytea`.
    Bytes(Vec<u8>),
    /// `uuid`.
    Uuid(uuid::Uuid),
    /// `date`: days since 2000-01-01 (PostgreSQL's epoch).
    Date(i32),
    /// `time`: microseconds since midnight.
    Time(i64),
    /// `timestamp` (without time zone): microseconds since 2000-01-01 00:00.
    Timestamp(i64),
    /// `timestamptz`: microseconds since 2000-01-01 00:00 UTC.
    TimestampTz(i64),
    /// `interval`, as stored (months, days, microseconds).
    Interval {
        /// Months.
        months: i32,
        /// Days.
        days: i32,
        /// Microseconds.
        micros: i64,
    },
    /// `json`, `jsonb`, by value (key order irrelevant; JSON `null` is not SQL NULL).
    Json(serde_json::Value),
    /// Arrays of any of the above.
    Array(Vec<Value>),
    /// Any other type, as PostgreSQL's canonical text for it.
    Other(String),
}

impl Value {
    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Orders two values of comparable kinds; `None` when they cannot be compared (different
    /// kinds that have no common order). NULL is lower than every value (a NULL tracking
    /// value is older than any value). Numbers of different kinds compare numerically.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        Some(match (self, other) {
            (Null, Null) => Ordering::Equal,
            (Null, _) => Ordering::Less,
            (_, Null) => Ordering::Greater,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Float(a), Float(b)) => a.total_cmp(b),
            (Int(a), Float(b)) => (*a as f64).total_cmp(b),
            (Float(a), Int(b)) => a.total_cmp(&(*b as f64)),
            (Numeric(a), Numeric(b)) => cmp_decimal(a, b),
            (Numeric(a), Int(b)) => cmp_decimal(a, &b.to_string()),
            (Int(a), Numeric(b)) => cmp_decimal(&a.to_string(), b),
            (Numeric(a), Float(b)) => parse_num(a).total_cmp(b),
            (Float(a), Numeric(b)) => a.total_cmp(&parse_num(b)),
            (Text(a), Text(b)) | (Other(a), Other(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Uuid(a), Uuid(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Time(a), Time(b)) | (Timestamp(a), Timestamp(b)) | (TimestampTz(a), TimestampTz(b)) => a.cmp(b),
            (Date(a), Timestamp(b)) | (Date(a), TimestampTz(b)) => (*a as i64 * 86_400_000_000).cmp(b),
            (Timestamp(a), Date(b)) | (TimestampTz(a), Date(b)) => a.cmp(&(*b as i64 * 86_400_000_000)),
            (Timestamp(a), TimestampTz(b)) | (TimestampTz(a), Timestamp(b)) => a.cmp(b),
            (Interval { .. }, Interval { .. }) => interval_value(self).cmp(&interval_value(other)),
            (Json(a), Json(b)) => a.to_string().cmp(&b.to_string()),
            (Array(a), Array(b)) => {
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
}

/// An interval's comparable value, as PostgreSQL orders intervals (30-day months, 24-hour days).
fn interval_value(v: &Value) -> i128 {
    match v {
        Value::Interval { months, days, micros } => {
            (*months as i128 * 30 + *days as i128) * 86_400_000_000 + *micros as i128
        }
        _ => 0,
    }
}

fn parse_num(s: &str) -> f64 {
    s.parse().unwrap_or(f64::NAN)
}

/// Normalizes decimal text: strips a leading `+`, leading integer zeros and trailing
/// fractional zeros; every zero becomes `0`. `NaN` and the infinities pass through.
///
/// ```
/// use eden_consistency::value::normalize_decimal;
/// assert_eq!(normalize_decimal("-001.2300"), "-1.23");
/// assert_eq!(normalize_decimal("-0.000"), "0");
/// assert_eq!(normalize_decimal("10"), "10");
/// ```
pub fn normalize_decimal(text: &str) -> String {
    let t = text.trim();
    if !t.bytes().any(|b| b.is_ascii_digit()) {
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
        (Some(x), None) => return if x > 0 { Ordering::Greater } else { Ordering::Less },
        (None, Some(y)) => return if y > 0 { Ordering::Less } else { Ordering::Greater },
        _ => {}
    }
    let (a, b) = (normalize_decimal(a), normalize_decimal(b));
    let (an, ab) = a.strip_prefix('-').map_or((false, a.as_str()), |r| (true, r));
    let (bn, bb) = b.strip_prefix('-').map_or((false, b.as_str()), |r| (true, r));
    if an != bn {
        return if an { Ordering::Less } else { Ordering::Greater };
    }
    let (ai, af) = ab.split_once('.').unwrap_or((ab, ""));
    let (bi, bf) = bb.split_once('.').unwrap_or((bb, ""));
    let mag = ai.len().cmp(&bi.len()).then_with(|| ai.cmp(bi)).then_with(|| {
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
        assert_eq!(cmp_decimal("123456789012345678901234567890", "9"), Ordering::Greater);
    }

    #[test]
    fn null_is_lowest() {
        assert_eq!(Value::Null.compare(&Value::Int(i64::MIN)), Some(Ordering::Less));
        assert_eq!(Value::Int(3).compare(&Value::Numeric("2.5".into())), Some(Ordering::Greater));
        assert_eq!(Value::Text("a".into()).compare(&Value::Int(1)), None);
    }
}
