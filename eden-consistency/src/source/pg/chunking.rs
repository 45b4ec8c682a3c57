//! Aligned key ranges (chunks) and how many a table is cut into.

use super::*;

/// Aligned key ranges: `bounds.len() + 2` chunks (the last one for NULL keys).
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunking {
    /// Bounds (of the first key column) as PostgreSQL prints them (UTC session), sent as
    /// `text[]` and cast.
    pub bounds_text: Vec<String>,
    /// The same bounds as values, for placing streamed rows.
    pub bounds: Vec<Value>,
    /// Composite keys: every bound's whole key, as values (`tuples[i][col]`)...
    pub tuples: Vec<Vec<Value>>,
    /// ... and as text, one array per key column (`tuple_text[col][i]`).
    pub tuple_text: Vec<Vec<String>>,
    /// Integer keys whose bounds are evenly spaced, `bounds[i] = lo + i·width`:
    /// `(lo, width)`.
    pub arith: Option<(i64, i64)>,
}

impl Chunking {
    /// Number of chunks (including the NULL-key chunk).
    pub(crate) fn len(&self) -> usize {
        self.bounds.len() + 2
    }

    /// The chunk of a key (all its columns).
    pub(crate) fn chunk_of_key(&self, key: &[Value]) -> usize {
        if self.tuples.is_empty() || key.len() < 2 {
            return self.chunk_of(&key[0]);
        }
        if key.iter().any(Value::is_null) {
            return self.bounds.len() + 1;
        }
        // Number of bounds <= key, comparing column by column.
        self.tuples.partition_point(|b| {
            for (x, y) in b.iter().zip(key) {
                match x.compare(y) {
                    Some(std::cmp::Ordering::Equal) => continue,
                    Some(std::cmp::Ordering::Less) => return true,
                    _ => return false,
                }
            }
            true
        })
    }

    /// Every `m`-th bound (bounds `0, m, 2m, ...`): a coarser chunking (of the whole key
    /// when this one is), and for each of its chunks the half-open range of this chunking's chunks it
    /// covers (in order, together all of them; the NULL-key chunk maps to the NULL-key
    /// chunk). Evenly spaced bounds stay evenly spaced. Without bounds, or with `m <= 1`,
    /// the chunking itself and one chunk per range.
    pub(crate) fn coarsen(&self, m: usize) -> (Chunking, Vec<(usize, usize)>) {
        let n = self.bounds.len();
        if n == 0 || m <= 1 {
            return (self.clone(), (0..self.len()).map(|c| (c, c + 1)).collect());
        }
        let cuts: Vec<usize> = (0..n).step_by(m).collect();
        let coarse = Chunking {
            bounds_text: cuts.iter().map(|&i| self.bounds_text[i].clone()).collect(),
            bounds: cuts.iter().map(|&i| self.bounds[i].clone()).collect(),
            tuples: cuts
                .iter()
                .filter_map(|&i| self.tuples.get(i).cloned())
                .collect(),
            tuple_text: self
                .tuple_text
                .iter()
                .map(|col| cuts.iter().filter_map(|&i| col.get(i).cloned()).collect())
                .collect(),
            arith: self
                .arith
                .and_then(|(lo, w)| Some((lo, w.checked_mul(i64::try_from(m).ok()?)?))),
        };
        let mut groups = vec![(0, 1)];
        for pair in cuts.windows(2) {
            groups.push((pair[0] + 1, pair[1] + 1));
        }
        groups.push((cuts[cuts.len() - 1] + 1, n + 1));
        groups.push((n + 1, n + 2));
        (coarse, groups)
    }

    /// Restores [`Chunking::arith`] for integer bounds that are evenly spaced (stored
    /// bounds keep only their text).
    pub(crate) fn detect_arith(&mut self) {
        let ints: Vec<i64> = self
            .bounds
            .iter()
            .map_while(|b| {
                if let Value::Int(x) = b {
                    Some(*x)
                } else {
                    None
                }
            })
            .collect();
        if ints.len() < 2 || ints.len() != self.bounds.len() {
            return;
        }
        let w = ints[1].checked_sub(ints[0]).filter(|&w| w > 0);
        if let Some(w) = w {
            let even = ints.iter().enumerate().all(|(i, &b)| {
                (i as i64)
                    .checked_mul(w)
                    .and_then(|d| ints[0].checked_add(d))
                    == Some(b)
            });
            if even {
                self.arith = Some((ints[0], w));
            }
        }
    }

    /// The chunk of a first-key value.
    pub(crate) fn chunk_of(&self, k0: &Value) -> usize {
        if k0.is_null() {
            return self.bounds.len() + 1;
        }
        // Number of bounds <= k0.
        self.bounds.partition_point(|b| {
            matches!(
                b.compare(k0),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            )
        })
    }
}

/// How many chunks a table of `rows` rows is cut into: about `1.2 · rows / sqrt(1000)`,
/// i.e. ~26 rows per chunk. This balances what
/// crosses the network (one digest per chunk, plus every row of each differing chunk),
/// which at a drift of `d` rows is smallest near `sqrt(d · rows)` chunks; 0.1 % drift is
/// assumed. At most 4 million chunks.
pub(crate) fn target_chunks(rows: u64) -> usize {
    if rows < 64 {
        return 1;
    }
    (((rows as f64) * (rows as f64) / 1000.0).sqrt() * 1.2).clamp(2.0, 4_000_000.0) as usize
}

/// Evenly spaced bounds `lo + i·width` for integer keys whose sample (sorted, distinct,
/// with the true minimum and maximum at its ends) is spread evenly over its range: the
/// largest gap between the sample's distribution and the uniform one (Kolmogorov-Smirnov)
/// is under 0.2. The chunk is then plain arithmetic in the server instead of a binary
/// search over the bounds. `None` for skewed keys, too small samples, or a range too wide
/// for 64-bit arithmetic.
pub(crate) fn even_chunking(ints: &[i64], target: usize) -> Option<Chunking> {
    let m = ints.len();
    if m < 16 || target < 2 {
        return None;
    }
    let (lo, hi) = (ints[0] as i128, ints[m - 1] as i128);
    let span = hi - lo;
    if span <= 0 {
        return None;
    }
    let ks = ints
        .iter()
        .enumerate()
        .map(|(i, &x)| (i as f64 / (m - 1) as f64 - (x as i128 - lo) as f64 / span as f64).abs())
        .fold(0.0f64, f64::max);
    if ks >= 0.2 {
        return None;
    }
    let width = ((span + 1) + target as i128 - 1) / target as i128;
    let width = width.max(1);
    // Bounds lo, lo + w, ..., up to the first one above the maximum.
    let nb = span / width + 2;
    let last = lo + (nb - 1) * width;
    if last > i64::MAX as i128 || (nb - 1) * width > i64::MAX as i128 {
        return None;
    }
    let mut ch = Chunking {
        arith: Some((lo as i64, width as i64)),
        ..Chunking::default()
    };
    for j in 0..nb {
        let b = (lo + j * width) as i64;
        ch.bounds.push(Value::Int(b));
        ch.bounds_text.push(b.to_string());
    }
    Some(ch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(bounds: &[i64]) -> Chunking {
        let mut ch = Chunking::default();
        for &b in bounds {
            ch.bounds.push(Value::Int(b));
            ch.bounds_text.push(b.to_string());
        }
        ch
    }

    /// A key's coarse chunk is the range that holds its fine chunk, for every `m`.
    #[test]
    fn coarse_ranges_cover_the_fine_chunks() {
        let fine = ints(&[3, 7, 8, 20, 21, 40, 41, 42, 90, 100, 130]);
        for m in 1..14 {
            let (coarse, groups) = fine.coarsen(m);
            assert_eq!(groups.len(), coarse.len());
            assert_eq!(groups[0].0, 0);
            assert_eq!(groups[groups.len() - 1].1, fine.len());
            assert!(
                groups
                    .windows(2)
                    .all(|w| w[0].1 == w[1].0 && w[0].0 < w[0].1)
            );
            for k in -5..140 {
                let (f, c) = (
                    fine.chunk_of(&Value::Int(k)),
                    coarse.chunk_of(&Value::Int(k)),
                );
                assert!(groups[c].0 <= f && f < groups[c].1, "m {m} k {k}");
            }
            let null = Value::Null;
            assert_eq!(groups[coarse.chunk_of(&null)], (fine.len() - 1, fine.len()));
        }
    }

    #[test]
    fn evenly_spaced_bounds_are_recognised_and_stay_even() {
        let mut even = ints(&[10, 15, 20, 25, 30, 35, 40]);
        even.detect_arith();
        assert_eq!(even.arith, Some((10, 5)));
        let (coarse, _) = even.coarsen(3);
        assert_eq!(coarse.arith, Some((10, 15)));
        assert_eq!(coarse.bounds_text, vec!["10", "25", "40"]);
        let mut uneven = ints(&[10, 15, 21, 25]);
        uneven.detect_arith();
        assert_eq!(uneven.arith, None);
        let mut texts = Chunking::default();
        texts.bounds.push(Value::Text("a".into()));
        texts.bounds_text.push("a".into());
        texts.detect_arith();
        assert_eq!(texts.arith, None);
    }
}
