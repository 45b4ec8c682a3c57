//! Aligned key ranges (chunks) and how many a table is cut into.

use super::*;

/// The bounds of the first key column (chunk `i` holds the keys in `[bound(i-1), bound(i))`),
/// stored as compactly as their kind allows: a chunking of a 30M-row table has about a
/// million bounds, so what one bound costs is what the check's memory grows by.
#[derive(Debug, Clone)]
pub(super) enum Bounds {
    /// Evenly spaced integers `lo + i·width`, `i < n`: nothing stored per bound.
    Even { lo: i64, width: i64, n: usize },
    /// Integers (their text is their decimal form).
    Ints(Vec<i64>),
    /// Text values that are their own text (`text`, `varchar`, `name` keys): one string
    /// per bound, not a value and a copy of it.
    Texts(Vec<String>),
    /// Any other type: the values, and their texts as PostgreSQL prints them (UTC
    /// session), sent as `text[]` and cast.
    Listed {
        values: Vec<Value>,
        texts: Vec<String>,
    },
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds::Ints(Vec::new())
    }
}

/// Aligned key ranges: `bound_count() + 2` chunks (the last one for NULL keys).
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunking {
    pub(super) bounds: Bounds,
    /// Composite keys: every bound's whole key, as values (`tuples[i][col]`)...
    pub tuples: Vec<Vec<Value>>,
    /// ... and as text, one array per key column (`tuple_text[col][i]`).
    pub tuple_text: Vec<Vec<String>>,
}

impl Chunking {
    /// Evenly spaced integer bounds `lo + i·width`, `i < n`.
    pub(crate) fn even(lo: i64, width: i64, n: usize) -> Chunking {
        Chunking {
            bounds: Bounds::Even { lo, width, n },
            ..Chunking::default()
        }
    }

    /// Appends a bound (in increasing order): its value and its text as PostgreSQL
    /// prints it.
    pub(crate) fn push_bound(&mut self, value: Value, text: String) {
        match (&mut self.bounds, value) {
            (Bounds::Ints(ints), Value::Int(x)) => ints.push(x),
            (Bounds::Texts(texts), Value::Text(x)) if x == text => texts.push(text),
            (Bounds::Ints(ints), Value::Text(x)) if ints.is_empty() && x == text => {
                self.bounds = Bounds::Texts(vec![text])
            }
            (Bounds::Even { lo, width, n }, Value::Int(x))
                if (*n as i64)
                    .checked_mul(*width)
                    .and_then(|d| lo.checked_add(d))
                    == Some(x) =>
            {
                *n += 1
            }
            (Bounds::Even { .. }, Value::Int(x)) => {
                let mut ints = self.int_bounds().unwrap_or_default();
                ints.push(x);
                self.bounds = Bounds::Ints(ints);
            }
            (_, value) => {
                let (mut values, mut texts) = self.listed();
                values.push(value);
                texts.push(text);
                self.bounds = Bounds::Listed { values, texts };
            }
        }
    }

    /// The bounds as a listed pair of vectors (taken out of `self`).
    fn listed(&mut self) -> (Vec<Value>, Vec<String>) {
        match std::mem::take(&mut self.bounds) {
            Bounds::Listed { values, texts } => (values, texts),
            compact => {
                let ch = Chunking {
                    bounds: compact,
                    ..Chunking::default()
                };
                let values = (0..ch.bound_count()).map(|i| ch.bound(i)).collect();
                (values, ch.bound_texts())
            }
        }
    }

    /// Number of bounds.
    pub(crate) fn bound_count(&self) -> usize {
        match &self.bounds {
            Bounds::Even { n, .. } => *n,
            Bounds::Ints(v) => v.len(),
            Bounds::Texts(v) => v.len(),
            Bounds::Listed { values, .. } => values.len(),
        }
    }

    /// Bound `i` as an integer (integer bounds only).
    fn int_bound(&self, i: usize) -> Option<i64> {
        match &self.bounds {
            Bounds::Even { lo, width, .. } => Some(lo + i as i64 * width),
            Bounds::Ints(v) => v.get(i).copied(),
            Bounds::Texts(_) => None,
            Bounds::Listed { values, .. } => match values.get(i) {
                Some(Value::Int(x)) => Some(*x),
                _ => None,
            },
        }
    }

    /// Bound `i`.
    pub(crate) fn bound(&self, i: usize) -> Value {
        match &self.bounds {
            Bounds::Listed { values, .. } => values[i].clone(),
            Bounds::Texts(texts) => Value::Text(texts[i].clone()),
            _ => Value::Int(self.int_bound(i).unwrap_or_default()),
        }
    }

    /// Bound `i` as PostgreSQL prints it.
    pub(crate) fn bound_text(&self, i: usize) -> std::borrow::Cow<'_, str> {
        match &self.bounds {
            Bounds::Listed { texts, .. } | Bounds::Texts(texts) => {
                std::borrow::Cow::Borrowed(texts[i].as_str())
            }
            _ => std::borrow::Cow::Owned(self.int_bound(i).unwrap_or_default().to_string()),
        }
    }

    /// Every bound as PostgreSQL prints it.
    pub(crate) fn bound_texts(&self) -> Vec<String> {
        (0..self.bound_count())
            .map(|i| self.bound_text(i).into_owned())
            .collect()
    }

    /// Every bound as an integer, when all of them are.
    pub(crate) fn int_bounds(&self) -> Option<Vec<i64>> {
        (0..self.bound_count()).map(|i| self.int_bound(i)).collect()
    }

    /// Integer keys whose bounds are evenly spaced, `bound(i) = lo + i·width`:
    /// `(lo, width)`.
    pub(crate) fn arith(&self) -> Option<(i64, i64)> {
        match self.bounds {
            Bounds::Even { lo, width, n } if n > 0 => Some((lo, width)),
            _ => None,
        }
    }

    /// The chunking of bounds `picked` (increasing indices) of this one; evenly spaced
    /// bounds stay evenly spaced only when `picked` is.
    pub(crate) fn select(&self, picked: &[usize]) -> Chunking {
        let bounds = match &self.bounds {
            Bounds::Listed { values, texts } => Bounds::Listed {
                values: picked.iter().map(|&i| values[i].clone()).collect(),
                texts: picked.iter().map(|&i| texts[i].clone()).collect(),
            },
            Bounds::Texts(texts) => {
                Bounds::Texts(picked.iter().map(|&i| texts[i].clone()).collect())
            }
            _ => Bounds::Ints(picked.iter().filter_map(|&i| self.int_bound(i)).collect()),
        };
        Chunking {
            bounds,
            tuples: picked
                .iter()
                .filter_map(|&i| self.tuples.get(i).cloned())
                .collect(),
            tuple_text: self
                .tuple_text
                .iter()
                .map(|col| picked.iter().filter_map(|&i| col.get(i).cloned()).collect())
                .collect(),
        }
    }

    /// Number of chunks (including the NULL-key chunk).
    pub(crate) fn len(&self) -> usize {
        self.bound_count() + 2
    }

    /// The chunk of a key (all its columns).
    pub(crate) fn chunk_of_key(&self, key: &[Value]) -> usize {
        if self.tuples.is_empty() || key.len() < 2 {
            return self.chunk_of(&key[0]);
        }
        if key.iter().any(Value::is_null) {
            return self.bound_count() + 1;
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
        let n = self.bound_count();
        if n == 0 || m <= 1 {
            return (self.clone(), (0..self.len()).map(|c| (c, c + 1)).collect());
        }
        let cuts: Vec<usize> = (0..n).step_by(m).collect();
        let coarse = match self.bounds {
            Bounds::Even { lo, width, .. } => match width.checked_mul(m as i64) {
                Some(w) => Chunking::even(lo, w, cuts.len()),
                None => self.select(&cuts),
            },
            _ => self.select(&cuts),
        };
        let mut groups = vec![(0, 1)];
        for pair in cuts.windows(2) {
            groups.push((pair[0] + 1, pair[1] + 1));
        }
        groups.push((cuts[cuts.len() - 1] + 1, n + 1));
        groups.push((n + 1, n + 2));
        (coarse, groups)
    }

    /// Evenly spaced integer bounds become [`Chunking::arith`] (bounds restored from
    /// their text are listed).
    pub(crate) fn detect_arith(&mut self) {
        let Some(ints) = self.int_bounds() else {
            return;
        };
        if ints.len() < 2 || !self.tuples.is_empty() || self.arith().is_some() {
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
                self.bounds = Bounds::Even {
                    lo: ints[0],
                    width: w,
                    n: ints.len(),
                };
            } else {
                self.bounds = Bounds::Ints(ints);
            }
        }
    }

    /// The chunk of a first-key value.
    pub(crate) fn chunk_of(&self, k0: &Value) -> usize {
        let n = self.bound_count();
        if k0.is_null() {
            return n + 1;
        }
        match (&self.bounds, k0) {
            (Bounds::Even { lo, width, .. }, Value::Int(k)) => {
                // Number of bounds <= k.
                if *k < *lo {
                    0
                } else {
                    let q = ((*k as i128 - *lo as i128) / *width as i128) as u128;
                    (q.saturating_add(1)).min(n as u128) as usize
                }
            }
            (Bounds::Ints(v), Value::Int(k)) => v.partition_point(|b| b <= k),
            // Text in byte order, as [`Value::compare`].
            (Bounds::Texts(v), Value::Text(k)) => {
                v.partition_point(|b| b.as_bytes() <= k.as_bytes())
            }
            (Bounds::Listed { values, .. }, _) => values.partition_point(|b| {
                matches!(
                    b.compare(k0),
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                )
            }),
            // A value of another type than the integer bounds: compared as values.
            _ => {
                let (mut lo, mut hi) = (0, n);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if matches!(
                        self.bound(mid).compare(k0),
                        Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                    ) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
        }
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
    Some(Chunking::even(lo as i64, width as i64, nb as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(bounds: &[i64]) -> Chunking {
        let mut ch = Chunking::default();
        for &b in bounds {
            ch.push_bound(Value::Int(b), b.to_string());
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

    /// Bounds keep their values and texts whatever the storage they move through.
    #[test]
    fn bounds_storage_keeps_values_and_texts() {
        let mut ch = Chunking::even(10, 5, 3);
        assert_eq!(ch.bound_texts(), vec!["10", "15", "20"]);
        ch.push_bound(Value::Int(25), "25".into());
        assert_eq!(ch.arith(), Some((10, 5)));
        ch.push_bound(Value::Int(27), "27".into());
        assert_eq!(ch.arith(), None);
        assert_eq!(ch.int_bounds(), Some(vec![10, 15, 20, 25, 27]));
        assert_eq!(ch.chunk_of(&Value::Int(26)), 4);
        assert_eq!(ch.chunk_of(&Value::Int(9)), 0);
        assert_eq!(ch.chunk_of(&Value::Int(i64::MAX)), 5);
        assert_eq!(ch.chunk_of(&Value::Null), 6);
        let mut t = Chunking::default();
        t.push_bound(Value::Text("b".into()), "b".into());
        t.push_bound(Value::Text("d".into()), "d".into());
        assert!(matches!(t.bounds, Bounds::Texts(_)));
        assert_eq!(t.chunk_of(&Value::Text("c".into())), 1);
        assert_eq!(t.chunk_of(&Value::Text("d".into())), 2);
        assert_eq!(t.bound_text(1), "d");
        assert_eq!(t.int_bounds(), None);
        assert_eq!(t.select(&[1]).bound(0), Value::Text("d".into()));
        // A value that is not its own text: listed, both kept.
        t.push_bound(
            Value::Uuid(uuid::Uuid::nil()),
            uuid::Uuid::nil().to_string(),
        );
        assert!(matches!(t.bounds, Bounds::Listed { .. }));
        assert_eq!(t.bound(1), Value::Text("d".into()));
        assert_eq!(t.bound(2), Value::Uuid(uuid::Uuid::nil()));
        assert_eq!(t.bound_text(2), "00000000-0000-0000-0000-000000000000");
        let picked = ch.select(&[1, 3]);
        assert_eq!(picked.bound_texts(), vec!["15", "25"]);
        let even = Chunking::even(-7, 3, 1000);
        assert_eq!(even.chunk_of(&Value::Int(i64::MIN)), 0);
        assert_eq!(even.chunk_of(&Value::Int(-7)), 1);
        assert_eq!(even.chunk_of(&Value::Int(i64::MAX)), 1000);
    }

    #[test]
    fn evenly_spaced_bounds_are_recognised_and_stay_even() {
        let mut even = ints(&[10, 15, 20, 25, 30, 35, 40]);
        even.detect_arith();
        assert_eq!(even.arith(), Some((10, 5)));
        let (coarse, _) = even.coarsen(3);
        assert_eq!(coarse.arith(), Some((10, 15)));
        assert_eq!(coarse.bound_texts(), vec!["10", "25", "40"]);
        let mut uneven = ints(&[10, 15, 21, 25]);
        uneven.detect_arith();
        assert_eq!(uneven.arith(), None);
        assert_eq!(uneven.bound_texts(), vec!["10", "15", "21", "25"]);
        let mut texts = Chunking::default();
        texts.push_bound(Value::Text("a".into()), "a".into());
        texts.detect_arith();
        assert_eq!(texts.arith(), None);
        assert_eq!(texts.bound(0), Value::Text("a".into()));
    }
}
