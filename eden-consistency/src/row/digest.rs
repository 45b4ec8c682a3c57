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
//! use eden_consistency::digest::{row_digest, ChunkDigest};
//! use eden_consistency::value::Value;
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

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, t: u8, b: &[u8]) {
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
            if crate::row::value::is_normalized_decimal(n) {
                put_bytes(out, tag::NUMERIC, n.as_bytes());
            } else {
                put_bytes(
                    out,
                    tag::NUMERIC,
                    crate::row::value::normalize_decimal(n).as_bytes(),
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

// ---------------------------------------------------------------------------------------
// Binary COPY: the stream mode's fast path.

/// The 11-byte signature that starts binary `COPY` output.
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// An incremental parser of `COPY (SELECT ...) TO STDOUT (FORMAT binary)` output: push the
/// chunks as they arrive (tuples may span chunks), take complete tuples out.
///
/// ```
/// use eden_consistency::digest::CopyBinaryParser;
/// let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
/// data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // flags, header extension length
/// data.extend_from_slice(&[0, 1, 0, 0, 0, 2, b'h', b'i']); // one tuple: one field "hi"
/// data.extend_from_slice(&[0xff, 0xff]); // trailer
/// let mut p = CopyBinaryParser::new();
/// p.push(&data[..5]);
/// assert!(p.next_tuple().unwrap().is_none()); // needs more bytes
/// p.push(&data[5..]);
/// let t = p.next_tuple().unwrap().unwrap();
/// assert_eq!(t.fields().collect::<Vec<_>>(), vec![Some(&b"hi"[..])]);
/// assert!(p.next_tuple().unwrap().is_none());
/// assert!(p.is_finished());
/// ```
#[derive(Debug, Default)]
pub struct CopyBinaryParser {
    buf: Vec<u8>,
    pos: usize,
    header_done: bool,
    finished: bool,
}

/// One tuple of binary `COPY` output, borrowed from the parser.
#[derive(Debug, Clone, Copy)]
pub struct CopyTuple<'a> {
    data: &'a [u8],
    nfields: usize,
}

impl<'a> CopyTuple<'a> {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.nfields
    }

    /// True for a tuple without fields.
    pub fn is_empty(&self) -> bool {
        self.nfields == 0
    }

    /// The fields' raw bytes in order (`None` for NULL), already checked to be complete.
    pub fn fields(&self) -> impl Iterator<Item = Option<&'a [u8]>> + 'a {
        let data = self.data;
        let mut pos = 0usize;
        (0..self.nfields).map(move |_| {
            let len = i32::from_be_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
            pos += 4;
            if len < 0 {
                None
            } else {
                let f = &data[pos..pos + len as usize];
                pos += len as usize;
                Some(f)
            }
        })
    }
}

impl CopyBinaryParser {
    /// A parser waiting for the header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the next chunk of `COPY` output.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 1 << 20 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(chunk);
    }

    /// True once the trailer has been read.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next complete tuple, `None` when more bytes are needed (or after the trailer).
    pub fn next_tuple(&mut self) -> Result<Option<CopyTuple<'_>>, String> {
        match self.scan()? {
            Some((start, end, n)) => Ok(Some(CopyTuple {
                data: &self.buf[start..end],
                nfields: n,
            })),
            None => Ok(None),
        }
    }

    /// Takes up to `max_rows` complete tuples out at once, as an owned batch that can be
    /// processed on other threads (e.g. [`CopyBatch::par_map`]); `None` when no complete
    /// tuple is buffered.
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<CopyBatch>, String> {
        let mut tuples = Vec::new();
        let mut first = None;
        while tuples.len() < max_rows {
            match self.scan()? {
                Some((start, end, n)) => {
                    let base = *first.get_or_insert(start - 2);
                    tuples.push((start - base, end - base, n));
                }
                None => break,
            }
        }
        let Some(base) = first else { return Ok(None) };
        let end = tuples.last().map_or(base, |t| base + t.1);
        Ok(Some(CopyBatch {
            data: self.buf[base..end].to_vec(),
            tuples,
        }))
    }

    /// Finds the next complete tuple: (start of its fields, end, field count), advancing.
    fn scan(&mut self) -> Result<Option<(usize, usize, usize)>, String> {
        if self.finished {
            return Ok(None);
        }
        if !self.header_done {
            let avail = &self.buf[self.pos..];
            if avail.len() < COPY_SIGNATURE.len() + 8 {
                return Ok(None);
            }
            if &avail[..COPY_SIGNATURE.len()] != COPY_SIGNATURE {
                return Err("COPY output does not start with the binary signature".into());
            }
            let ext = u32::from_be_bytes([avail[15], avail[16], avail[17], avail[18]]) as usize;
            if avail.len() < 19 + ext {
                return Ok(None);
            }
            self.pos += 19 + ext;
            self.header_done = true;
        }
        let avail = &self.buf[self.pos..];
        if avail.len() < 2 {
            return Ok(None);
        }
        let n = i16::from_be_bytes([avail[0], avail[1]]);
        if n == -1 {
            self.finished = true;
            self.pos += 2;
            return Ok(None);
        }
        if n < 0 {
            return Err(format!("COPY tuple has {n} fields"));
        }
        let mut p = 2usize;
        for _ in 0..n {
            let Some(l) = avail.get(p..p + 4) else {
                return Ok(None);
            };
            let len = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
            p += 4;
            if len >= 0 {
                p += len as usize;
                if p > avail.len() {
                    return Ok(None);
                }
            } else if len != -1 {
                return Err(format!("COPY field has length {len}"));
            }
        }
        let start = self.pos + 2;
        self.pos += p;
        Ok(Some((start, self.pos, n as usize)))
    }
}

/// Complete binary `COPY` tuples taken out of a [`CopyBinaryParser`], owned, so that they
/// can be hashed on rayon's pool while the next bytes arrive.
///
/// ```
/// use eden_consistency::digest::CopyBinaryParser;
/// let mut data = b"PGCOPY\n\xff\r\n\0".to_vec();
/// data.extend_from_slice(&[0; 8]);
/// for v in [1u8, 2, 3] {
///     data.extend_from_slice(&[0, 1, 0, 0, 0, 1, v]);
/// }
/// let mut p = CopyBinaryParser::new();
/// p.push(&data);
/// let batch = p.next_batch(2).unwrap().unwrap();
/// assert_eq!(batch.par_map(|t| t.fields().next().flatten().unwrap()[0]), vec![1, 2]);
/// assert_eq!(p.next_batch(10).unwrap().unwrap().len(), 1);
/// assert!(p.next_batch(10).unwrap().is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CopyBatch {
    data: Vec<u8>,
    /// (start, end, field count) of each tuple's fields in `data`.
    tuples: Vec<(usize, usize, usize)>,
}

impl CopyBatch {
    /// Number of tuples.
    pub fn len(&self) -> usize {
        self.tuples.len()
    }

    /// True when the batch holds no tuple.
    pub fn is_empty(&self) -> bool {
        self.tuples.is_empty()
    }

    /// Tuple `i`.
    pub fn tuple(&self, i: usize) -> CopyTuple<'_> {
        let (a, b, n) = self.tuples[i];
        CopyTuple {
            data: &self.data[a..b],
            nfields: n,
        }
    }

    /// Applies `f` to every tuple on rayon's pool; results in tuple order.
    pub fn par_map<T: Send>(&self, f: impl Fn(CopyTuple<'_>) -> T + Sync + Send) -> Vec<T> {
        (0..self.tuples.len())
            .into_par_iter()
            .with_min_len(512)
            .map(|i| f(self.tuple(i)))
            .collect()
    }
}

/// Decodes a binary `COPY` tuple of columns selected with [`crate::row::value::select_expr`]
/// (effective type oids in `oids`).
pub fn decode_copy_tuple(t: &CopyTuple<'_>, oids: &[u32]) -> Result<Vec<Value>, String> {
    if t.len() != oids.len() {
        return Err(format!(
            "COPY tuple has {} fields, expected {}",
            t.len(),
            oids.len()
        ));
    }
    t.fields()
        .zip(oids)
        .map(|(f, &o)| crate::row::value::decode_wire(f, o))
        .collect()
}

/// The row digest of a binary `COPY` tuple, without building [`Value`]s for the common
/// fixed-size, text and bytea columns; equal to `row_digest(&decode_copy_tuple(t, oids)?)`.
/// `buf` is scratch space reused between calls.
pub fn digest_copy_tuple(
    t: &CopyTuple<'_>,
    oids: &[u32],
    buf: &mut Vec<u8>,
) -> Result<RowDigest, String> {
    use crate::row::value::{Wire, oid, wire_for};
    if t.len() != oids.len() {
        return Err(format!(
            "COPY tuple has {} fields, expected {}",
            t.len(),
            oids.len()
        ));
    }
    buf.clear();
    put_len(buf, oids.len());
    for (f, &o) in t.fields().zip(oids) {
        let Some(raw) = f else {
            buf.push(tag::NULL);
            continue;
        };
        let bad = || format!("a value of type oid {o} has {} bytes", raw.len());
        match wire_for(o) {
            Wire::Binary(oid::INT8)
            | Wire::Binary(oid::TIMESTAMP)
            | Wire::Binary(oid::TIMESTAMPTZ)
            | Wire::Binary(oid::TIME) => {
                let b: [u8; 8] = raw.try_into().map_err(|_| bad())?;
                buf.push(match o {
                    oid::INT8 => tag::INT,
                    oid::TIMESTAMP => tag::TIMESTAMP,
                    oid::TIMESTAMPTZ => tag::TIMESTAMPTZ,
                    _ => tag::TIME,
                });
                buf.extend_from_slice(&i64::from_be_bytes(b).to_le_bytes());
            }
            Wire::Binary(oid::INT4) => {
                let b: [u8; 4] = raw.try_into().map_err(|_| bad())?;
                buf.push(tag::INT);
                buf.extend_from_slice(&(i32::from_be_bytes(b) as i64).to_le_bytes());
            }
            Wire::Binary(oid::UUID) => {
                if raw.len() != 16 {
                    return Err(bad());
                }
                buf.push(tag::UUID);
                buf.extend_from_slice(raw);
            }
            Wire::Binary(oid::TEXT) | Wire::Binary(oid::VARCHAR) | Wire::Binary(oid::NAME) => {
                std::str::from_utf8(raw).map_err(|_| "value is not valid UTF-8".to_string())?;
                put_bytes(buf, tag::TEXT, raw);
            }
            Wire::Binary(oid::BYTEA) => put_bytes(buf, tag::BYTES, raw),
            Wire::Binary(oid::JSONB) | Wire::Binary(oid::JSON) => {
                let text = if o == oid::JSONB {
                    match raw.split_first() {
                        Some((1, t)) => t,
                        _ => return Err("unsupported jsonb binary version".into()),
                    }
                } else {
                    raw
                };
                let text = std::str::from_utf8(text)
                    .map_err(|_| "value is not valid UTF-8".to_string())?;
                buf.push(tag::JSON);
                let at = buf.len();
                buf.extend_from_slice(&[0; 4]);
                crate::row::value::canonical_json_into(text, buf)?;
                let n = (buf.len() - at - 4) as u32;
                buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
            }
            Wire::Text => {
                std::str::from_utf8(raw).map_err(|_| "value is not valid UTF-8".to_string())?;
                put_bytes(buf, tag::OTHER, raw);
            }
            _ => encode_value(buf, &crate::row::value::decode_wire(Some(raw), o)?),
        }
    }
    Ok(hash128(buf))
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
