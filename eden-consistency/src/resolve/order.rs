//! The strict, deterministic total order between versions of one row: the rule's value, then
//! the commit timestamp, then the region order, then the row digest.

use std::cmp::Ordering;

use super::Version;
use crate::row::value::Value;

/// A total order over values: [`Value::compare`] (NULL lowest), and for kinds that have no
/// common order a fixed rank of kinds, so that sorting never depends on input order.
pub(crate) fn total_cmp(a: &Value, b: &Value) -> Ordering {
    a.compare(b)
        .unwrap_or_else(|| kind_rank(a).cmp(&kind_rank(b)))
}

fn kind_rank(v: &Value) -> u8 {
    use Value::*;
    // `matches!` chains rather than one `match`, so that a kind added to `Value` later ranks
    // last instead of breaking the build.
    if matches!(v, Null) {
        0
    } else if matches!(v, Bool(_)) {
        1
    } else if matches!(v, Int(_) | Float(_) | Numeric(_)) {
        2
    } else if matches!(v, Text(_)) {
        3
    } else if matches!(v, Bytes(_)) {
        4
    } else if matches!(v, Uuid(_)) {
        5
    } else if matches!(v, Date(_) | Timestamp(_) | TimestampTz(_)) {
        6
    } else if matches!(v, Time(_)) {
        7
    } else if matches!(v, Interval { .. }) {
        8
    } else if matches!(v, Json(_)) {
        9
    } else if matches!(v, Array(_) | BoundedArray { .. }) {
        10
    } else if matches!(v, Other(_)) {
        11
    } else {
        12
    }
}

/// A commit timestamp as a value (`timestamptz`, NULL when unknown).
pub(crate) fn commit_value(v: &Version) -> Value {
    v.commit_ts.map_or(Value::Null, Value::TimestampTz)
}

/// The rule's own part of the order, per version index.
#[derive(Debug, Clone)]
pub(crate) enum Primary {
    /// The rule has no value of its own (`manual`): the tie-break order alone decides.
    None,
    /// A value per version (tracking column, compared column, commit timestamp).
    Values(Vec<Value>),
    /// A number per version, greater is better (region priority, expression score).
    Ranks(Vec<i64>),
}

/// How the commit timestamp breaks ties after the rule's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitStep {
    /// The rule's value is the commit timestamp already.
    Skip,
    /// The newer commit wins (every rule but `first_write_wins`).
    NewerWins,
    /// The older commit wins (`first_write_wins`).
    OlderWins,
}

/// The step of the order that told two versions apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Primary,
    Commit,
    Region,
    Digest,
    Same,
}

/// The full order for one rule over one set of versions.
pub(crate) struct Ranking<'v> {
    pub versions: &'v [Version],
    pub primary: Primary,
    /// For [`Primary::Values`]: the smaller value wins (`first_write_wins`).
    pub smaller_wins: bool,
    /// `decided_by` when the rule's value decides.
    pub name: String,
    pub commit: CommitStep,
}

impl<'v> Ranking<'v> {
    /// A ranking by the tie-break order alone (newer commit, region order, digest).
    pub(super) fn tiebreak_only(versions: &'v [Version]) -> Ranking<'v> {
        Ranking {
            versions,
            primary: Primary::None,
            smaller_wins: false,
            name: String::new(),
            commit: CommitStep::NewerWins,
        }
    }

    /// Compares versions `i` and `j`: `Greater` when `i` is better; with the deciding step.
    pub(super) fn cmp(&self, i: usize, j: usize) -> (Ordering, Step) {
        let p = match &self.primary {
            Primary::None => Ordering::Equal,
            Primary::Values(v) => {
                let o = total_cmp(&v[i], &v[j]);
                if self.smaller_wins { o.reverse() } else { o }
            }
            Primary::Ranks(r) => r[i].cmp(&r[j]),
        };
        if p != Ordering::Equal {
            return (p, Step::Primary);
        }
        let (a, b) = (&self.versions[i], &self.versions[j]);
        let c = match self.commit {
            CommitStep::Skip => Ordering::Equal,
            CommitStep::NewerWins => a.commit_ts.cmp(&b.commit_ts),
            CommitStep::OlderWins => b.commit_ts.cmp(&a.commit_ts),
        };
        if c != Ordering::Equal {
            return (c, Step::Commit);
        }
        let r = b
            .region_order
            .cmp(&a.region_order)
            .then_with(|| b.region.cmp(&a.region));
        if r != Ordering::Equal {
            return (r, Step::Region);
        }
        let d = a.digest.cmp(&b.digest);
        if d != Ordering::Equal {
            return (d, Step::Digest);
        }
        (Ordering::Equal, Step::Same)
    }

    /// The best of `candidates` (none when empty).
    pub(super) fn best(&self, candidates: &[usize]) -> Option<usize> {
        let mut best: Option<usize> = None;
        for &c in candidates {
            best = Some(match best {
                None => c,
                Some(b) => {
                    if self.cmp(c, b).0 == Ordering::Greater {
                        c
                    } else {
                        b
                    }
                }
            });
        }
        best
    }

    /// The name of the step that made `winner` beat the best of the `candidates` for which
    /// `differs` holds; `None` when there is no such rival.
    pub(super) fn decisive(
        &self,
        winner: usize,
        candidates: &[usize],
        differs: impl Fn(usize) -> bool,
    ) -> Option<String> {
        let rivals: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&j| j != winner && differs(j))
            .collect();
        let runner = self.best(&rivals)?;
        Some(self.step_name(self.cmp(winner, runner).1))
    }

    /// `decided_by` for a step.
    pub(super) fn step_name(&self, step: Step) -> String {
        match step {
            Step::Primary => self.name.clone(),
            Step::Commit => "tiebreak:commit_timestamp".into(),
            Step::Region => "tiebreak:region_order".into(),
            Step::Digest | Step::Same => "tiebreak:digest".into(),
        }
    }
}
