//! Binary `COPY` output: an incremental parser, and decoding or hashing its tuples (the
//! stream mode's fast path).

use rayon::prelude::*;

use crate::pg::decode::decode_wire;
use crate::pg::types::{Wire, oid, wire_for};
use crate::row::digest::{RowDigest, encode_value, hash128, put_bytes, put_len, tag};
use crate::row::json::canonical_json_into;
use crate::row::value::Value;

/// The 11-byte signature that starts binary `COPY` output.
const COPY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// An incremental parser of `COPY (SELECT ...) TO STDOUT (FORMAT binary)` output: push the
/// chunks as they arrive (tuples may span chunks), take complete tuples out.
///
/// ```
/// use eden_consistency::__private::copy::CopyBinaryParser;
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
/// use eden_consistency::__private::copy::CopyBinaryParser;
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

/// Decodes a binary `COPY` tuple of columns selected with [`crate::pg::expr::select_expr`]
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
        .map(|(f, &o)| decode_wire(f, o))
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
                canonical_json_into(text, buf)?;
                let n = (buf.len() - at - 4) as u32;
                buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
            }
            Wire::Text => {
                std::str::from_utf8(raw).map_err(|_| "value is not valid UTF-8".to_string())?;
                put_bytes(buf, tag::OTHER, raw);
            }
            _ => encode_value(buf, &decode_wire(Some(raw), o)?),
        }
    }
    Ok(hash128(buf))
}

#[cfg(test)]
mod tests {
    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn copy_parser_never_panics(raw in prop::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
                let mut data = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
                data.extend_from_slice(&raw);
                let mut p = CopyBinaryParser::new();
                let cut = cut.min(data.len());
                p.push(&data[..cut]);
                let mut buf = Vec::new();
                for _ in 0..2 {
                    while let Ok(Some(t)) = p.next_tuple() {
                        let oids = vec![oid::TEXT; t.len()];
                        let _ = digest_copy_tuple(&t, &oids, &mut buf);
                        let _ = decode_copy_tuple(&t, &oids);
                    }
                    p.push(&data[cut..]);
                }
            }
        }
    }
}
