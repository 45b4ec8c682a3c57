//! Decoding PostgreSQL's binary formats (the types' `send` functions, as in binary `COPY`)
//! into [`Value`]s: scalars, arrays and `numeric`.

use std::fmt::Write as _;

use crate::pg::types::{ColumnType, Wire, binary_array_elem, is_binary_scalar, oid, wire_for};
use crate::row::json::canonical_json;
use crate::row::value::{Value, canonical_float};

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

/// Decodes column `idx` of a row selected with [`select_expr`](crate::pg::expr::select_expr) for `col`.
pub fn decode<C: ColumnType + ?Sized>(
    row: &tokio_postgres::Row,
    idx: usize,
    col: &C,
) -> Result<Value, String> {
    let raw = raw_column(row, idx)?;
    decode_wire(raw, col.effective_oid()).map_err(|e| format!("column {}: {e}", col.column_name()))
}

/// Decodes the columns `start..start + cols.len()` of a row selected with [`select_expr`](crate::pg::expr::select_expr).
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

#[cfg(test)]
mod tests {
    use super::*;

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
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn decode_binary_never_panics(raw in prop::collection::vec(any::<u8>(), 0..64), pick in 0usize..44) {
                use crate::pg::types::oid::*;
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
        }
    }
}
