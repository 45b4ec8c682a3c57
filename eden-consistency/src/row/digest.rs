//! Exact, typed, length-prefixed row encoding hashed with blake3.
//!
//! Every value is encoded as a one-byte type tag followed by a fixed-size payload or a
//! 32-bit length and the bytes, so the encoding of a row is self-delimiting: SQL NULL (a tag
//! with no payload) differs from `''` (a tag with length 0), `('a|b','c')` differs from
//! `('a','b|c')`, and `1::int` differs from `'1'::text`. Values are encoded in their
//! canonical form ([`crate::row::value`]): equal values give equal bytes.
//!
//! A row digest is the first 128 bits of the blake3 hash of the row's encoding. Chunks of
//! rows combine their row digests order-independently ([`ChunkDigest`]).
//!
//! ```
//! use eden_consistency::__private::digest::{row_digest, ChunkDigest};
//! use eden_consistency::Value;
//! let a = row_digest(&[Value::Int(1), Value::Text("x".into())]);
//! let b = row_digest(&[Value::Int(2), Value::Null]);
//! let mut c1 = ChunkDigest::default();
//! c1.add(&a);
//! c1.add(&b);
//! let mut c2 = ChunkDigest::default();
//! c2.add(&b);
//! c2.add(&a);
//! assert_eq!(c1, c2);
//! assert_ne!(row_digest(&[Value::Null]), row_digest(&[Value::Text(String::new())]));
//! ```

use std::cell::RefCell;

use rayon::prelude::*;

use crate::row::value::{Value, canonical_float};

/// 128 bits of a row's blake3 hash.
pub type RowDigest = [u8; 16];

/// Type tags of the encoding (one byte before each value).
#[allow(missing_docs)]
pub mod tag {
    pub const NULL: u8 = 0;
    pub const BOOL: u8 = 1;
    pub const INT: u8 = 2;
    pub const FLOAT: u8 = 3;
    pub const NUMERIC: u8 = 4;
    pub const TEXT: u8 = 5;
    pub const BYTES: u8 = 6;
    pub const UUID: u8 = 7;
    pub const DATE: u8 = 8;
    pub const TIME: u8 = 9;
    pub const TIMESTAMP: u8 = 10;
    pub const TIMESTAMPTZ: u8 = 11;
    pub const INTERVAL: u8 = 12;
    pub const JSON: u8 = 13;
    pub const ARRAY: u8 = 14;
    pub const BOUNDED_ARRAY: u8 = 15;
    pub const OTHER: u8 = 16;
}

pub(crate) fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, t: u8, b: &[u8]) {
    out.push(t);
    put_len(out, b.len());
    out.extend_from_slice(b);
}

/// Appends the canonical, self-delimiting encoding of one value.
pub fn encode_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(tag::NULL),
        Value::Bool(b) => out.extend_from_slice(&[tag::BOOL, *b as u8]),
        Value::Int(i) => {
            out.push(tag::INT);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            out.push(tag::FLOAT);
            out.extend_from_slice(&canonical_float(*f).to_bits().to_le_bytes());
        }
        Value::Numeric(n) => {
            // Decoded numerics are already normalized; others are normalized here.
            if crate::row::decimal::is_normalized_decimal(n) {
                put_bytes(out, tag::NUMERIC, n.as_bytes());
            } else {
                put_bytes(
                    out,
                    tag::NUMERIC,
                    crate::row::decimal::normalize_decimal(n).as_bytes(),
                );
            }
        }
        Value::Text(s) => put_bytes(out, tag::TEXT, s.as_bytes()),
        Value::Bytes(b) => put_bytes(out, tag::BYTES, b),
        Value::Uuid(u) => {
            out.push(tag::UUID);
            out.extend_from_slice(u.as_bytes());
        }
        Value::Date(d) => {
            out.push(tag::DATE);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Value::Time(t) => {
            out.push(tag::TIME);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Value::Timestamp(t) => {
            out.push(tag::TIMESTAMP);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Value::TimestampTz(t) => {
            out.push(tag::TIMESTAMPTZ);
            out.extend_from_slice(&t.to_le_bytes());
        }
        Value::Interval {
            months,
            days,
            micros,
        } => {
            out.push(tag::INTERVAL);
            out.extend_from_slice(&months.to_le_bytes());
            out.extend_from_slice(&days.to_le_bytes());
            out.extend_from_slice(&micros.to_le_bytes());
        }
        Value::Json(j) => put_bytes(out, tag::JSON, j.as_bytes()),
        Value::Array(elems) => encode_array(out, elems),
        Value::BoundedArray {
            lower_bounds,
            elements,
        } => {
            out.push(tag::BOUNDED_ARRAY);
            put_len(out, lower_bounds.len());
            for lb in lower_bounds {
                out.extend_from_slice(&lb.to_le_bytes());
            }
            encode_array(out, elements);
        }
        Value::Other(s) => put_bytes(out, tag::OTHER, s.as_bytes()),
    }
}

/// Hashing a [`Value`] hashes its canonical encoding ([`encode_value`]), consistent with `==`.
impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut buf = Vec::new();
        encode_value(&mut buf, self);
        state.write(&buf);
    }
}

fn encode_array(out: &mut Vec<u8>, elems: &[Value]) {
    out.push(tag::ARRAY);
    put_len(out, elems.len());
    for e in elems {
        encode_value(out, e);
    }
}

/// The canonical encoding of a row (or key): the column count, then each value.
pub fn encode_row(out: &mut Vec<u8>, values: &[Value]) {
    put_len(out, values.len());
    for v in values {
        encode_value(out, v);
    }
}

/// The inverse of [`encode_row`]: the values back (canonical: `-0.0` comes back as `0`,
/// numerics normalized, i.e. equal to what was encoded), or `None` for bytes that are not
/// such an encoding. Used to keep keys in temporary files (`check`'s listing).
pub(crate) fn decode_row(r: &mut &[u8]) -> Option<Vec<Value>> {
    let n = take_len(r)?;
    (0..n).map(|_| decode_value(r)).collect()
}

fn take<'a>(r: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if r.len() < n {
        return None;
    }
    let (a, b) = r.split_at(n);
    *r = b;
    Some(a)
}

fn take_len(r: &mut &[u8]) -> Option<usize> {
    Some(u32::from_le_bytes(take(r, 4)?.try_into().ok()?) as usize)
}

fn take_i32(r: &mut &[u8]) -> Option<i32> {
    Some(i32::from_le_bytes(take(r, 4)?.try_into().ok()?))
}

fn take_i64(r: &mut &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(take(r, 8)?.try_into().ok()?))
}

fn take_string(r: &mut &[u8]) -> Option<String> {
    let n = take_len(r)?;
    String::from_utf8(take(r, n)?.to_vec()).ok()
}

fn decode_array(r: &mut &[u8]) -> Option<Vec<Value>> {
    (take(r, 1)?[0] == tag::ARRAY).then_some(())?;
    decode_row(r)
}

fn decode_value(r: &mut &[u8]) -> Option<Value> {
    Some(match take(r, 1)?[0] {
        tag::NULL => Value::Null,
        tag::BOOL => Value::Bool(take(r, 1)?[0] != 0),
        tag::INT => Value::Int(take_i64(r)?),
        tag::FLOAT => Value::Float(f64::from_bits(take_i64(r)? as u64)),
        tag::NUMERIC => Value::Numeric(take_string(r)?),
        tag::TEXT => Value::Text(take_string(r)?),
        tag::BYTES => {
            let n = take_len(r)?;
            Value::Bytes(take(r, n)?.to_vec())
        }
        tag::UUID => Value::Uuid(uuid::Uuid::from_slice(take(r, 16)?).ok()?),
        tag::DATE => Value::Date(take_i32(r)?),
        tag::TIME => Value::Time(take_i64(r)?),
        tag::TIMESTAMP => Value::Timestamp(take_i64(r)?),
        tag::TIMESTAMPTZ => Value::TimestampTz(take_i64(r)?),
        tag::INTERVAL => Value::Interval {
            months: take_i32(r)?,
            days: take_i32(r)?,
            micros: take_i64(r)?,
        },
        tag::JSON => Value::Json(take_string(r)?),
        tag::ARRAY => Value::Array(decode_row(r)?),
        tag::BOUNDED_ARRAY => {
            let n = take_len(r)?;
            let lower_bounds = (0..n).map(|_| take_i32(r)).collect::<Option<Vec<_>>>()?;
            Value::BoundedArray {
                lower_bounds,
                elements: decode_array(r)?,
            }
        }
        tag::OTHER => Value::Other(take_string(r)?),
        _ => return None,
    })
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The first 128 bits of a blake3 hash.
pub fn hash128(bytes: &[u8]) -> RowDigest {
    let h = blake3::hash(bytes);
    let mut d = [0u8; 16];
    d.copy_from_slice(&h.as_bytes()[..16]);
    d
}

/// The digest of one row: its values in a canonical column order chosen by the caller
/// (e.g. sorted by column name), so both sides must pass the same order.
pub fn row_digest(values: &[Value]) -> RowDigest {
    BUF.with(|b| {
        let mut buf = b.borrow_mut();
        buf.clear();
        encode_row(&mut buf, values);
        hash128(&buf)
    })
}

/// The canonical encoding of a key's values, usable as a map key (equal keys, equal
/// bytes; the encoding is self-delimiting, so different keys never share bytes).
pub fn key_bytes(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * values.len());
    encode_row(&mut out, values);
    out
}

/// The digests of many rows, computed in parallel on rayon's pool, in input order.
pub fn digest_rows_parallel(rows: &[Vec<Value>]) -> Vec<RowDigest> {
    rows.par_iter()
        .with_min_len(256)
        .map(|r| row_digest(r))
        .collect()
}

/// An order-independent summary of a set of rows: how many, and the sum (mod 2^128) of
/// their row digests read as little-endian 128-bit integers.
///
/// Order independence lets chunks be hashed in parallel and merged in any order. Addition
/// (not XOR) is used so that two identical rows do not cancel out; and since every row
/// digest covers the row's key, and keys are unique within a table, a chunk never holds two
/// identical digests anyway. Two different row sets collide only if their digest sums are
/// equal mod 2^128 with the same count, which for blake3 outputs has probability about
/// 2^-128 per comparison.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ChunkDigest {
    /// Number of rows added.
    pub count: u64,
    /// Sum of the row digests (little-endian u128, wrapping).
    pub acc: [u8; 16],
}

impl ChunkDigest {
    /// Adds one row.
    pub fn add(&mut self, d: &RowDigest) {
        self.count += 1;
        let s = u128::from_le_bytes(self.acc).wrapping_add(u128::from_le_bytes(*d));
        self.acc = s.to_le_bytes();
    }

    /// Merges another chunk's rows into this one.
    pub fn combine(&mut self, other: &ChunkDigest) {
        self.count += other.count;
        let s = u128::from_le_bytes(self.acc).wrapping_add(u128::from_le_bytes(other.acc));
        self.acc = s.to_le_bytes();
    }

    /// The summary of a set of row digests.
    pub fn of(digests: &[RowDigest]) -> ChunkDigest {
        let mut c = ChunkDigest::default();
        for d in digests {
            c.add(d);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_and_types() {
        let t = |s: &str| Value::Text(s.into());
        assert_ne!(
            row_digest(&[t("a|b"), t("c")]),
            row_digest(&[t("a"), t("b|c")])
        );
        assert_ne!(row_digest(&[t("ab"), t("")]), row_digest(&[t("a"), t("b")]));
        assert_ne!(row_digest(&[Value::Int(1)]), row_digest(&[t("1")]));
        assert_ne!(row_digest(&[Value::Null]), row_digest(&[t("")]));
        assert_ne!(
            row_digest(&[Value::Null]),
            row_digest(&[Value::Json("null".into())])
        );
        assert_ne!(row_digest(&[]), row_digest(&[Value::Null]));
        assert_ne!(
            row_digest(&[Value::Array(vec![Value::Int(1), Value::Int(2)])]),
            row_digest(&[Value::Array(vec![Value::Array(vec![
                Value::Int(1),
                Value::Int(2)
            ])])])
        );
        assert_eq!(
            row_digest(&[Value::Float(-0.0)]),
            row_digest(&[Value::Float(0.0)])
        );
        assert_eq!(
            row_digest(&[Value::Float(f64::NAN)]),
            row_digest(&[Value::Float(-f64::NAN)])
        );
        assert_ne!(
            row_digest(&[Value::Float(1.0)]),
            row_digest(&[Value::Float(f64::from_bits(1.0f64.to_bits() + 1))])
        );
        assert_eq!(
            row_digest(&[Value::Numeric("1.0".into())]),
            row_digest(&[Value::Numeric("1".into())])
        );
    }

    #[test]
    fn chunk_is_order_independent_and_combines() {
        let ds: Vec<RowDigest> = (0..100).map(|i| row_digest(&[Value::Int(i)])).collect();
        let mut rev = ds.clone();
        rev.reverse();
        assert_eq!(ChunkDigest::of(&ds), ChunkDigest::of(&rev));
        let mut a = ChunkDigest::of(&ds[..30]);
        a.combine(&ChunkDigest::of(&ds[30..]));
        assert_eq!(a, ChunkDigest::of(&ds));
        assert_eq!(a.count, 100);
    }

    #[test]
    fn parallel_matches_serial() {
        let rows: Vec<Vec<Value>> = (0..2000)
            .map(|i| vec![Value::Int(i), Value::Text(i.to_string())])
            .collect();
        let par = digest_rows_parallel(&rows);
        let ser: Vec<_> = rows.iter().map(|r| row_digest(r)).collect();
        assert_eq!(par, ser);
    }
}
