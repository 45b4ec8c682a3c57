//! Merkle comparison of chunk digests across any number of regions (pure, no I/O).
//!
//! Every region hashes the *same* key ranges (chunks), so chunk `i` of one region is
//! comparable with chunk `i` of every other. The chunk digests of one region are the leaves
//! of a tree of fan-out [`FANOUT`]; an inner node is the blake3 hash of its children. Trees
//! are compared from the root down, descending only into nodes whose hashes differ among
//! the regions, which yields the differing leaves (chunks) after touching
//! `O(d · FANOUT · log n)` nodes for `d` differing chunks.
//!
//! Inside a differing chunk, [`diff_rows`] merges the regions' sorted `(key, row digest)`
//! lists and returns exactly the keys that are missing somewhere or whose digests are not
//! all equal.

use std::cmp::Ordering;

/// Children per inner node.
pub const FANOUT: usize = 16;

/// The digest of one chunk in one region: how many rows it holds and a combined hash of
/// their row digests (order-independent, e.g. XOR of 64-bit row hashes, or a 128-bit
/// combination). Two regions' chunks are equal when both parts are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChunkSummary {
    /// Rows in the chunk.
    pub count: u64,
    /// Order-independent combination of the rows' digests.
    pub hash: u128,
}

impl ChunkSummary {
    /// The node hash of a leaf: blake3 of count and combined hash (an empty chunk is all
    /// zeros, so a region lacking a chunk's rows compares as empty).
    fn node_hash(&self) -> [u8; 16] {
        if self.count == 0 && self.hash == 0 {
            return [0; 16];
        }
        let mut h = blake3::Hasher::new();
        h.update(b"leaf");
        h.update(&self.count.to_le_bytes());
        h.update(&self.hash.to_le_bytes());
        truncate(h.finalize())
    }
}

fn truncate(h: blake3::Hash) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    out
}

/// A Merkle tree over one region's chunk summaries.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    /// `levels[0]` are the leaves' node hashes; the last level has one node (the root).
    levels: Vec<Vec<[u8; 16]>>,
}

impl MerkleTree {
    /// Builds the tree over `chunks` (chunk `i` is leaf `i`).
    pub fn build(chunks: &[ChunkSummary]) -> MerkleTree {
        let mut levels = vec![
            chunks
                .iter()
                .map(ChunkSummary::node_hash)
                .collect::<Vec<_>>(),
        ];
        while levels.last().map_or(0, Vec::len) > 1 {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let next = below
                .chunks(FANOUT)
                .map(|group| {
                    let mut h = blake3::Hasher::new();
                    h.update(b"node");
                    for c in group {
                        h.update(c);
                    }
                    truncate(h.finalize())
                })
                .collect();
            levels.push(next);
        }
        MerkleTree { levels }
    }

    /// The root hash (all zeros for no chunks).
    pub fn root(&self) -> [u8; 16] {
        self.levels
            .last()
            .and_then(|l| l.first().copied())
            .unwrap_or([0; 16])
    }

    /// Number of leaves.
    pub fn leaves(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    fn node(&self, level: usize, i: usize) -> [u8; 16] {
        self.levels
            .get(level)
            .and_then(|l| l.get(i).copied())
            .unwrap_or([0; 16])
    }
}

/// The indices of the chunks whose summaries are not equal in every region, found by
/// descending the regions' trees only where they differ. Regions may have different
/// numbers of chunks (missing chunks compare as empty). Returns indices in increasing order.
pub fn differing_chunks(regions: &[Vec<ChunkSummary>]) -> Vec<usize> {
    if regions.len() < 2 {
        return Vec::new();
    }
    let n = regions.iter().map(Vec::len).max().unwrap_or(0);
    if n == 0 {
        return Vec::new();
    }
    // Pad every region to the same leaf count so the trees have the same shape.
    let trees: Vec<MerkleTree> = regions
        .iter()
        .map(|r| {
            let mut leaves = r.clone();
            leaves.resize(n, ChunkSummary::default());
            MerkleTree::build(&leaves)
        })
        .collect();
    let top = trees[0].levels.len() - 1;
    let mut out = Vec::new();
    let mut stack = vec![(top, 0usize)];
    while let Some((level, i)) = stack.pop() {
        let first = trees[0].node(level, i);
        if trees[1..].iter().all(|t| t.node(level, i) == first) {
            continue;
        }
        if level == 0 {
            out.push(i);
            continue;
        }
        let width = trees[0].levels[level - 1].len();
        let lo = i * FANOUT;
        let hi = (lo + FANOUT).min(width);
        // Push in reverse so that children pop in increasing order.
        for c in (lo..hi).rev() {
            stack.push((level - 1, c));
        }
    }
    out
}

/// One key whose rows differ among the regions of a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDiff<K> {
    /// The key.
    pub key: K,
    /// Per region (in the order given): the row's digest there, `None` when absent.
    pub digests: Vec<Option<u128>>,
}

impl<K> RowDiff<K> {
    /// Indices of the regions lacking the row.
    pub fn missing_in(&self) -> Vec<usize> {
        self.digests
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_none())
            .map(|(i, _)| i)
            .collect()
    }
}

/// Merges the regions' `(key, row digest)` lists of one chunk, each sorted by key with
/// unique keys, and returns every key that is absent from some region or whose digests are
/// not all equal, in key order.
pub fn diff_rows<K: Ord + Clone>(regions: &[Vec<(K, u128)>]) -> Vec<RowDiff<K>> {
    let mut pos = vec![0usize; regions.len()];
    let mut out = Vec::new();
    loop {
        // Smallest current key among the regions.
        let mut min: Option<&K> = None;
        for (r, rows) in regions.iter().enumerate() {
            if let Some((k, _)) = rows.get(pos[r]) {
                if min.is_none_or(|m| k.cmp(m) == Ordering::Less) {
                    min = Some(k);
                }
            }
        }
        let Some(min) = min.cloned() else { break };
        let mut digests = Vec::with_capacity(regions.len());
        for (r, rows) in regions.iter().enumerate() {
            match rows.get(pos[r]) {
                Some((k, d)) if *k == min => {
                    digests.push(Some(*d));
                    pos[r] += 1;
                }
                _ => digests.push(None),
            }
        }
        let first = digests[0];
        if first.is_none() || digests.iter().any(|d| *d != first) {
            out.push(RowDiff { key: min, digests });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn summary(rows: &BTreeMap<u32, u128>, lo: u32, hi: u32) -> ChunkSummary {
        let mut s = ChunkSummary::default();
        for (_, d) in rows.range(lo..hi) {
            s.count += 1;
            s.hash ^= *d;
        }
        s
    }

    #[test]
    fn empty_and_equal() {
        assert!(differing_chunks(&[vec![], vec![]]).is_empty());
        let a = vec![ChunkSummary { count: 1, hash: 5 }; 100];
        assert!(differing_chunks(&[a.clone(), a.clone(), a]).is_empty());
    }

    #[test]
    fn shorter_region_is_padded() {
        let a = vec![ChunkSummary { count: 1, hash: 5 }; 3];
        let b = vec![ChunkSummary { count: 1, hash: 5 }; 2];
        assert_eq!(differing_chunks(&[a, b]), vec![2]);
    }

    proptest! {
        #[test]
        fn tree_diff_matches_leaf_compare(
            base in proptest::collection::vec((0u64..3, 0u128..4), 0..300),
            edits in proptest::collection::vec((0usize..300, 0usize..3, 0u64..3, 0u128..4), 0..20),
        ) {
            let mut regions = vec![base.iter().map(|&(c, h)| ChunkSummary { count: c, hash: h }).collect::<Vec<_>>(); 3];
            for (i, r, c, h) in edits {
                if i < regions[r].len() {
                    regions[r][i] = ChunkSummary { count: c, hash: h };
                }
            }
            let expected: Vec<usize> = (0..base.len())
                .filter(|&i| regions[1..].iter().any(|r| r[i] != regions[0][i]))
                .collect();
            prop_assert_eq!(differing_chunks(&regions), expected);
        }

        #[test]
        fn end_to_end_exact_keys(
            base in proptest::collection::btree_map(0u32..2000, any::<u128>(), 0..400),
            deletes in proptest::collection::vec((0u32..2000, 0usize..3), 0..15),
            updates in proptest::collection::vec((0u32..2000, 0usize..3, any::<u128>()), 0..15),
            chunk in 1u32..200,
        ) {
            let mut regions = vec![base.clone(); 3];
            for (k, r) in deletes { regions[r].remove(&k); }
            for (k, r, d) in updates { regions[r].insert(k, d); }
            let bounds: Vec<u32> = (0..2000).step_by(chunk as usize).collect();
            let chunks: Vec<Vec<ChunkSummary>> = regions.iter().map(|rows| {
                bounds.iter().map(|&lo| summary(rows, lo, lo + chunk)).collect()
            }).collect();
            let mut found = Vec::new();
            for c in differing_chunks(&chunks) {
                let lo = bounds[c];
                let lists: Vec<Vec<(u32, u128)>> = regions.iter()
                    .map(|rows| rows.range(lo..lo + chunk).map(|(k, d)| (*k, *d)).collect())
                    .collect();
                found.extend(diff_rows(&lists).into_iter().map(|d| d.key));
            }
            let mut all: Vec<u32> = regions.iter().flat_map(|r| r.keys().copied()).collect();
            all.sort();
            all.dedup();
            let expected: Vec<u32> = all.into_iter()
                .filter(|k| { let v: Vec<_> = regions.iter().map(|r| r.get(k)).collect(); v.iter().any(|x| *x != v[0]) })
                .collect();
            prop_assert_eq!(found, expected);
        }
    }
}
