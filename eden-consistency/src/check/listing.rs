//! The report's list of differences, with memory bounded by a run, not by the number of
//! differences.
//!
//! A [`Listing`] takes each difference as the engine confirms it, with its typed key.
//! Up to [`RUN`] of them stay in memory; beyond that each full run is sorted by key and
//! written to an unnamed temporary file (gone when the process ends, whatever happens).
//! [`Listing::finish`] merges the runs once, in key order, into a second unnamed file of
//! report lines, which [`Differences`] reads back as it is serialized or iterated. A table
//! with few differences never touches the disk.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use serde::Serialize;

use super::classify::cmp_keys;
use super::report::Difference;
use crate::row::digest::{decode_row, encode_row};
use crate::row::value::Value;

/// Differences held in memory before a sorted run goes to disk (each with its typed key in
/// the canonical row encoding of [`crate::row::digest`]).
const RUN: usize = 16_384;

/// A masking step applied to every listed difference as it is read (see
/// [`Differences::mask`]).
type Mask = Arc<dyn Fn(&mut Difference) + Send + Sync>;

/// The differences of one table's report, in key order: in memory, or (many of them) in
/// a temporary file read back as they are serialized or iterated.
#[derive(Clone, Default)]
pub struct Differences {
    mem: Vec<Difference>,
    file: Option<Arc<File>>,
    len: usize,
    masks: Vec<Mask>,
}

impl Differences {
    /// How many differences are listed.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when none is listed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The listed differences, in key order (read from disk when there are many: a read
    /// error ends the iteration early and is logged; serializing reports it instead).
    pub fn iter(&self) -> impl Iterator<Item = Cow<'_, Difference>> + '_ {
        let mut it = self.try_iter();
        std::iter::from_fn(move || match it.next()? {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!("reading the listed differences back: {e}");
                None
            }
        })
    }

    /// The listed differences, in key order, with any read error.
    pub fn try_iter(&self) -> impl Iterator<Item = io::Result<Cow<'_, Difference>>> + '_ {
        let masked = |mut d: Difference| {
            for m in &self.masks {
                m(&mut d);
            }
            d
        };
        let mem = self.mem.iter().map(move |d| {
            Ok(if self.masks.is_empty() {
                Cow::Borrowed(d)
            } else {
                Cow::Owned(masked(d.clone()))
            })
        });
        let file = self.file.iter().flat_map(move |f| {
            BufReader::with_capacity(64 * 1024, PositionalReader { file: f, at: 0 })
                .lines()
                .map(move |l| {
                    let d: Difference = serde_json::from_str(&l?).map_err(io::Error::other)?;
                    Ok(Cow::Owned(masked(d)))
                })
        });
        mem.chain(file)
    }

    /// Every listed difference in memory (for tests and small tables).
    pub fn to_vec(&self) -> Vec<Difference> {
        self.iter().map(Cow::into_owned).collect()
    }

    /// Applies `f` to every listed difference, now for those in memory and as they are
    /// read for the others (redaction of key values).
    pub fn mask(&mut self, f: impl Fn(&mut Difference) + Send + Sync + 'static) {
        for d in &mut self.mem {
            f(d);
        }
        if self.file.is_some() {
            self.masks.push(Arc::new(f));
        }
    }
}

impl From<Vec<Difference>> for Differences {
    fn from(mem: Vec<Difference>) -> Self {
        Differences {
            len: mem.len(),
            mem,
            file: None,
            masks: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Differences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.file.is_none() {
            f.debug_list().entries(&self.mem).finish()
        } else {
            write!(f, "[{} differences on disk]", self.len)
        }
    }
}

impl PartialEq for Differences {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Serialize for Differences {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeSeq};
        let mut seq = ser.serialize_seq(Some(self.len))?;
        for d in self.try_iter() {
            seq.serialize_element(&*d.map_err(|e| {
                S::Error::custom(format!("reading the listed differences back: {e}"))
            })?)?;
        }
        seq.end()
    }
}

/// Reads a shared file from an offset of its own (the file is shared by clones).
struct PositionalReader<'f> {
    file: &'f File,
    at: u64,
}

impl Read for PositionalReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// The runs file of a [`Listing`]: the file, each run's `(offset, records)`, the end.
type Spilled = (BufWriter<File>, Vec<(u64, usize)>, u64);

/// Collects one table's listed differences (see the module docs).
#[derive(Default)]
pub(crate) struct Listing {
    run: Vec<(Vec<Value>, Difference)>,
    /// The sorted runs on disk: the file, each run's `(offset, records)`, the end offset.
    spilled: Option<Spilled>,
    len: usize,
}

impl Listing {
    /// Adds a difference with its typed key.
    pub(crate) fn push(&mut self, key: Vec<Value>, d: Difference) -> io::Result<()> {
        self.run.push((key, d));
        self.len += 1;
        if self.run.len() >= RUN {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.spilled.is_none() {
            let f = tempfile::tempfile()?;
            self.spilled = Some((BufWriter::with_capacity(256 * 1024, f), Vec::new(), 0));
        }
        let (w, runs, end) = self.spilled.as_mut().expect("set above");
        self.run.sort_by(|a, b| cmp_keys(&a.0, &b.0));
        let start = *end;
        let n = self.run.len();
        let mut buf = Vec::new();
        for (k, d) in self.run.drain(..) {
            buf.clear();
            encode_row(&mut buf, &k);
            let json = serde_json::to_vec(&d).map_err(io::Error::other)?;
            let head = [
                (buf.len() as u32).to_le_bytes(),
                (json.len() as u32).to_le_bytes(),
            ];
            w.write_all(&head.concat())?;
            w.write_all(&buf)?;
            w.write_all(&json)?;
            *end += 8 + buf.len() as u64 + json.len() as u64;
        }
        runs.push((start, n));
        Ok(())
    }

    /// The listing in key order.
    pub(crate) fn finish(mut self) -> io::Result<Differences> {
        let Some(_) = &self.spilled else {
            self.run.sort_by(|a, b| cmp_keys(&a.0, &b.0));
            return Ok(self
                .run
                .into_iter()
                .map(|(_, d)| d)
                .collect::<Vec<_>>()
                .into());
        };
        if !self.run.is_empty() {
            self.spill()?;
        }
        let (w, runs, _) = self.spilled.take().expect("checked above");
        let runs_file = w.into_inner().map_err(|e| e.into_error())?;
        let mut heads: BinaryHeap<Head> = BinaryHeap::new();
        let mut readers: Vec<(BufReader<PositionalReader<'_>>, usize)> = runs
            .iter()
            .map(|&(at, n)| {
                let r = PositionalReader {
                    file: &runs_file,
                    at,
                };
                (BufReader::with_capacity(64 * 1024, r), n)
            })
            .collect();
        for (i, (r, left)) in readers.iter_mut().enumerate() {
            if let Some((key, json)) = read_record(r, left)? {
                heads.push(Head { key, json, run: i });
            }
        }
        let out = tempfile::tempfile()?;
        let mut w = BufWriter::with_capacity(256 * 1024, out);
        while let Some(h) = heads.pop() {
            w.write_all(&h.json)?;
            w.write_all(b"\n")?;
            let (r, left) = &mut readers[h.run];
            if let Some((key, json)) = read_record(r, left)? {
                heads.push(Head {
                    key,
                    json,
                    run: h.run,
                });
            }
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        Ok(Differences {
            mem: Vec::new(),
            file: Some(Arc::new(file)),
            len: self.len,
            masks: Vec::new(),
        })
    }
}

/// A run's next record in the merge (a min-heap by key, then by run for stability).
struct Head {
    key: Vec<Value>,
    json: Vec<u8>,
    run: usize,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_keys(&other.key, &self.key).then(other.run.cmp(&self.run))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Head {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Head {}

fn read_record(r: &mut impl Read, left: &mut usize) -> io::Result<Option<(Vec<Value>, Vec<u8>)>> {
    if *left == 0 {
        return Ok(None);
    }
    *left -= 1;
    let mut head = [0u8; 8];
    r.read_exact(&mut head)?;
    let kl = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
    let jl = u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) as usize;
    let mut kb = vec![0u8; kl];
    r.read_exact(&mut kb)?;
    let mut json = vec![0u8; jl];
    r.read_exact(&mut json)?;
    let key = decode_row(&mut &kb[..]).ok_or_else(|| io::Error::other("corrupt spill record"))?;
    Ok(Some((key, json)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn diff(i: i64) -> Difference {
        let mut key = serde_json::Map::new();
        key.insert("id".into(), serde_json::json!(i));
        Difference {
            key,
            missing_in: vec![],
            changed_columns: vec!["v".into()],
            in_flight: false,
        }
    }

    fn listed(keys: &[i64]) -> Differences {
        let mut l = Listing::default();
        for &k in keys {
            l.push(vec![Value::Int(k)], diff(k)).unwrap();
        }
        l.finish().unwrap()
    }

    #[test]
    fn many_differences_come_back_from_disk_in_key_order() {
        let keys: Vec<i64> = (0..(RUN as i64 * 3 + 17))
            .map(|i| (i * 7919) % 100_003)
            .collect();
        let d = listed(&keys);
        assert!(d.file.is_some());
        assert_eq!(d.len(), keys.len());
        let mut want = keys.clone();
        want.sort();
        let got: Vec<i64> = d.iter().map(|x| x.key["id"].as_i64().unwrap()).collect();
        assert_eq!(got, want);
        // Serialized straight from the file, twice (clones share it).
        let j1 = serde_json::to_value(&d).unwrap();
        let j2 = serde_json::to_value(d.clone()).unwrap();
        assert_eq!(j1, j2);
        assert_eq!(j1.as_array().unwrap().len(), keys.len());
        assert_eq!(d, d.clone());
    }

    #[test]
    fn masks_apply_to_what_is_read_back() {
        let keys: Vec<i64> = (0..(RUN as i64 + 5)).collect();
        let mut d = listed(&keys);
        d.mask(|x| {
            x.key.insert("id".into(), serde_json::json!("***"));
        });
        assert!(d.iter().all(|x| x.key["id"] == "***"));
    }

    proptest! {
        #[test]
        fn key_values_round_trip(vals in proptest::collection::vec(any_value(), 0..6)) {
            let mut b = Vec::new();
            encode_row(&mut b, &vals);
            let back = decode_row(&mut &b[..]).unwrap();
            prop_assert_eq!(cmp_keys(&back, &vals), Ordering::Equal);
            let mut again = Vec::new();
            encode_row(&mut again, &back);
            prop_assert_eq!(again, b);
        }
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            "[0-9]{1,5}(\\.[0-9]{1,3})?".prop_map(Value::Numeric),
            ".{0,8}".prop_map(Value::Text),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::Bytes),
            any::<[u8; 16]>().prop_map(|b| Value::Uuid(uuid::Uuid::from_bytes(b))),
            any::<i32>().prop_map(Value::Date),
            any::<i64>().prop_map(Value::TimestampTz),
            (any::<i32>(), any::<i32>(), any::<i64>()).prop_map(|(months, days, micros)| {
                Value::Interval {
                    months,
                    days,
                    micros,
                }
            }),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                (
                    proptest::collection::vec(any::<i32>(), 1..2),
                    proptest::collection::vec(inner, 0..3)
                )
                    .prop_map(|(lower_bounds, elements)| Value::BoundedArray {
                        lower_bounds,
                        elements
                    }),
            ]
        })
    }
}
