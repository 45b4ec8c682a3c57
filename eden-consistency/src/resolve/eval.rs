//! Evaluation of a validated expression with SQL's three-valued logic, and the coercions and
//! arithmetic it needs.

use std::cmp::Ordering;

use chrono::{DateTime, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};

use super::Version;
use super::expr::{ArithOp, CmpOp, Ev, Func, Node, Side, is_decimal, number, show_value};
use crate::row::decimal::normalize_decimal;
use crate::row::value::Value;

fn epoch() -> NaiveDateTime {
    crate::row::value::pg_epoch()
}

pub(crate) fn date_of(days: i32) -> Option<NaiveDate> {
    epoch()
        .date()
        .checked_add_signed(TimeDelta::try_days(days as i64)?)
}

pub(crate) fn ts_of(micros: i64) -> Option<NaiveDateTime> {
    epoch().checked_add_signed(TimeDelta::microseconds(micros))
}

fn micros_of(t: NaiveDateTime) -> Option<i64> {
    (t - epoch()).num_microseconds()
}

pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn parse_naive_ts(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t);
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
}

fn parse_tstz(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return micros_of(t.naive_utc());
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M:%S%.f %#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return micros_of(t.naive_utc());
        }
    }
    let s = s
        .strip_suffix(" UTC")
        .or_else(|| s.strip_suffix('Z'))
        .unwrap_or(s);
    parse_naive_ts(s).and_then(micros_of)
}

/// Parses PostgreSQL-style interval text: `5 minutes`, `1 day 2 hours`, `-3 seconds`.
pub(crate) fn parse_interval(s: &str) -> Option<Value> {
    let toks: Vec<&str> = s.split_whitespace().collect();
    if toks.is_empty() || toks.len() % 2 != 0 {
        return None;
    }
    let (mut months, mut days, mut micros) = (0i64, 0i64, 0i64);
    for pair in toks.chunks(2) {
        let n: f64 = pair[0].parse().ok()?;
        let unit = pair[1].to_lowercase();
        let unit = unit.trim_end_matches('s');
        let whole = |x: f64| {
            if x.fract() == 0.0 {
                Some(x as i64)
            } else {
                None
            }
        };
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
    Some(Value::Interval {
        months: i32::try_from(months).ok()?,
        days: i32::try_from(days).ok()?,
        micros,
    })
}

/// Gives an untyped literal the kind of `like`.
pub(crate) fn coerce(s: &str, like: &Value) -> Option<Value> {
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
        Value::Json(_) => Value::Json(crate::row::json::canonical_json(s).ok()?),
        Value::Bytes(_) => {
            let hex = s.trim().strip_prefix("\\x")?;
            if hex.len() % 2 != 0 || !hex.is_ascii() {
                return None;
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()?;
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
            let a = coerce(&s, &b).ok_or_else(|| {
                format!(
                    "'{s}' is not a valid value to compare with {}",
                    show_value(&b)
                )
            })?;
            Ok((a, b))
        }
        (Ev::V(a), Ev::Unknown(s)) => {
            let b = coerce(&s, &a).ok_or_else(|| {
                format!(
                    "'{s}' is not a valid value to compare with {}",
                    show_value(&a)
                )
            })?;
            Ok((a, b))
        }
        (Ev::Unknown(a), Ev::Unknown(b)) => Ok((Value::Text(a), Value::Text(b))),
    }
}

pub(crate) fn column(v: &Version, name: &str) -> Value {
    v.row
        .as_ref()
        .and_then(|r| r.get(name))
        .cloned()
        .unwrap_or(Value::Null)
}

fn to_bool(e: Ev) -> Result<Option<bool>, String> {
    match e {
        Ev::V(Value::Bool(b)) => Ok(Some(b)),
        Ev::V(Value::Null) => Ok(None),
        Ev::Unknown(s) => parse_bool(&s)
            .map(Some)
            .ok_or_else(|| format!("'{s}' is not a boolean")),
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

pub(crate) fn eval(n: &Node, a: &Version, b: &Version) -> Result<Ev, String> {
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
                l.compare(&r).ok_or_else(|| {
                    format!("cannot compare {} with {}", show_value(&l), show_value(&r))
                })?
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
            Ev::Unknown(s) => Ev::V(negate(
                number(s.trim()).ok_or_else(|| format!("'{s}' is not a number"))?,
            )?),
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
                let vals = args
                    .iter()
                    .map(|x| eval(x, a, b))
                    .collect::<Result<Vec<_>, _>>()?;
                let like = vals.iter().find_map(|v| match v {
                    Ev::V(x) if !x.is_null() => Some(x.clone()),
                    _ => None,
                });
                let mut best: Option<Value> = None;
                for v in vals {
                    let v = match (v, &like) {
                        (Ev::V(x), _) => x,
                        (Ev::Unknown(s), Some(l)) => coerce(&s, l)
                            .ok_or_else(|| format!("'{s}' is not a valid value here"))?,
                        (Ev::Unknown(s), None) => Value::Text(s),
                    };
                    if v.is_null() {
                        continue;
                    }
                    best = Some(match best {
                        None => v,
                        Some(cur) => {
                            let o = v.compare(&cur).ok_or_else(|| {
                                format!(
                                    "cannot compare {} with {}",
                                    show_value(&v),
                                    show_value(&cur)
                                )
                            })?;
                            let take = if *f == Func::Greatest {
                                o == Ordering::Greater
                            } else {
                                o == Ordering::Less
                            };
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
            if matches!(
                v,
                Value::Timestamp(_) | Value::TimestampTz(_) | Value::Date(_)
            ) =>
        {
            let lit = parse_interval(s)
                .or_else(|| number(s.trim()))
                .ok_or_else(|| format!("'{s}' is not an interval or a number"))?;
            if matches!(x, Ev::Unknown(_)) {
                Ok((lit, v.clone()))
            } else {
                Ok((v.clone(), lit))
            }
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
        Value::Interval {
            months,
            days,
            micros,
        } => Value::Interval {
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
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
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
    let bad = |l: &Value, r: &Value| {
        format!(
            "cannot compute {} {} {}",
            show_value(l),
            op_sym(op),
            show_value(r)
        )
    };
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
        (Int(_) | Numeric(_), Int(_) | Numeric(_))
            if matches!(op, ArithOp::Add | ArithOp::Sub | ArithOp::Mul) =>
        {
            if let (Some((a, sa)), Some((b, sb))) = (dec(&l), dec(&r)) {
                let exact = match op {
                    ArithOp::Mul => a.checked_mul(b).map(|m| (m, sa + sb)),
                    _ => {
                        let s = sa.max(sb);
                        let a = 10i128.checked_pow(s - sa).and_then(|p| a.checked_mul(p));
                        let b = 10i128.checked_pow(s - sb).and_then(|p| b.checked_mul(p));
                        match (a, b) {
                            (Some(a), Some(b)) if op == ArithOp::Add => {
                                a.checked_add(b).map(|m| (m, s))
                            }
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
        (ArithOp::Sub, Timestamp(x), Timestamp(y))
        | (ArithOp::Sub, TimestampTz(x), TimestampTz(y)) => Ok(Interval {
            months: 0,
            days: 0,
            micros: x.checked_sub(*y).ok_or_else(oor)?,
        }),
        (ArithOp::Sub, Date(x), Date(y)) => Ok(Int(*x as i64 - *y as i64)),
        (ArithOp::Add | ArithOp::Sub, Date(d), Int(n)) => {
            let n = if op == ArithOp::Add {
                *n
            } else {
                n.checked_neg().ok_or_else(oor)?
            };
            Ok(Date(i32::try_from(*d as i64 + n).map_err(|_| oor())?))
        }
        (ArithOp::Add, Int(n), Date(d)) => {
            Ok(Date(i32::try_from(*d as i64 + n).map_err(|_| oor())?))
        }
        (ArithOp::Add | ArithOp::Sub, Timestamp(_) | TimestampTz(_) | Date(_), Interval { .. }) => {
            let iv = if op == ArithOp::Add {
                r.clone()
            } else {
                negate(r.clone())?
            };
            add_interval(&l, &iv).ok_or_else(oor)
        }
        (ArithOp::Add, Interval { .. }, Timestamp(_) | TimestampTz(_) | Date(_)) => {
            add_interval(&r, &l).ok_or_else(oor)
        }
        (
            ArithOp::Add | ArithOp::Sub,
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
        ) => {
            let add = op == ArithOp::Add;
            Ok(Interval {
                months: if add {
                    m1.checked_add(*m2)
                } else {
                    m1.checked_sub(*m2)
                }
                .ok_or_else(oor)?,
                days: if add {
                    d1.checked_add(*d2)
                } else {
                    d1.checked_sub(*d2)
                }
                .ok_or_else(oor)?,
                micros: if add {
                    u1.checked_add(*u2)
                } else {
                    u1.checked_sub(*u2)
                }
                .ok_or_else(oor)?,
            })
        }
        _ => Err(bad(&l, &r)),
    }
}

fn add_interval(t: &Value, iv: &Value) -> Option<Value> {
    let Value::Interval {
        months,
        days,
        micros,
    } = iv
    else {
        return None;
    };
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
