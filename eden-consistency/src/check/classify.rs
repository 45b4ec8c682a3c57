//! Classifying a differing PostgreSQL key: which regions miss it, which columns
//! changed, whether it is still in flight (and the clock that tells: a row version's time);
//! and key order.

use crate::row::digest::encode_value;
use crate::row::value::{self, Value};
use crate::source::{FetchedRow, PgKey, PgSource, TableSpec};

use super::*;

/// Orders keys by value, column by column (incomparable values by their encoding).
pub(super) fn cmp_keys(a: &[Value], b: &[Value]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = x.compare(y).unwrap_or_else(|| {
            let (mut ea, mut eb) = (Vec::new(), Vec::new());
            encode_value(&mut ea, x);
            encode_value(&mut eb, y);
            ea.cmp(&eb)
        });
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// The key as in the report (`{"id": 42}`).
pub(super) fn key_map(spec: &TableSpec, f: &Found) -> serde_json::Map<String, serde_json::Value> {
    spec.key
        .iter()
        .zip(f.key.values.iter().zip(&f.key_text))
        .map(|(c, (v, t))| (c.name.clone(), value::key_json(v, t.as_deref())))
        .collect()
}

/// The report's row for a difference.
pub(super) fn report_row(spec: &TableSpec, f: &Found) -> super::report::Difference {
    super::report::Difference {
        key: key_map(spec, f),
        missing_in: f.missing_in.clone(),
        changed_columns: f.changed_columns.clone(),
        in_flight: f.in_flight,
    }
}

pub(super) fn engine_rounds(cls: &PgClassifier) -> bool {
    cls.window_us > 0 && cls.spec.version_time.is_some()
}

/// A confirmed difference.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub(super) key: PgKey,
    pub(super) key_text: Vec<Option<String>>,
    pub(super) missing_in: Vec<String>,
    pub(super) changed_columns: Vec<String>,
    pub(super) newest: Option<i64>,
    pub(super) in_flight: bool,
    /// Each region's compared columns (kept only for `--record`).
    pub(super) rows: Vec<Option<Vec<Value>>>,
}

/// How PostgreSQL rows differ: compared column by column as values, which names
/// `changed_columns` and drops any row whose hash differed while its values are equal; a
/// difference whose newest version is younger than the lag window is re-read once.
pub(crate) struct PgClassifier {
    pub(super) spec: Arc<TableSpec>,
    pub(super) names: Vec<String>,
    pub(super) window_us: i64,
    /// When the data was read (microseconds since 2000-01-01).
    pub(super) read_at: i64,
    pub(super) keep_rows: bool,
}

impl Classifier<PgSource<'_>> for PgClassifier {
    type Diff = Found;

    fn classify(&self, key: &PgKey, versions: &[Option<&FetchedRow>]) -> Option<Found> {
        let missing_in: Vec<String> = versions
            .iter()
            .zip(&self.names)
            .filter(|(v, _)| v.is_none())
            .map(|(_, n)| n.clone())
            .collect();
        let present: Vec<&FetchedRow> = versions.iter().flatten().copied().collect();
        if present.is_empty() {
            return None;
        }
        let mut changed = Vec::new();
        for (ci, c) in self.spec.columns.iter().enumerate() {
            let enc = |r: &FetchedRow| {
                let mut b = Vec::new();
                encode_value(&mut b, &r.values[ci]);
                b
            };
            let e0 = enc(present[0]);
            if present[1..].iter().any(|r| enc(r) != e0) {
                changed.push(c.name.clone());
            }
        }
        if missing_in.is_empty() && changed.is_empty() {
            return None;
        }
        Some(Found {
            key: key.clone(),
            key_text: present[0].key_text.clone(),
            missing_in,
            changed_columns: changed,
            newest: present.iter().filter_map(|r| r.version_time).max(),
            in_flight: false,
            rows: if self.keep_rows {
                versions
                    .iter()
                    .map(|v| v.map(|r| r.values.clone()))
                    .collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Age at the moment the data was read (the snapshot), not at the end of the scan: a
    /// change still replicating when the snapshot was taken is rechecked however long the
    /// scan took.
    fn needs_recheck(&self, f: &Found) -> bool {
        f.newest.is_some_and(|t| self.read_at - t < self.window_us)
    }

    fn reclassify(&self, old: Found, versions: &[Option<&FetchedRow>]) -> Option<Found> {
        let mut f = self.classify(&old.key, versions)?;
        f.in_flight = true;
        Some(f)
    }

    fn key<'d>(&self, f: &'d Found) -> &'d PgKey {
        &f.key
    }

    fn in_flight(&self, f: &Found) -> bool {
        f.in_flight
    }

    fn order(&self, a: &Found, b: &Found) -> std::cmp::Ordering {
        cmp_keys(&a.key.values, &b.key.values)
    }
}

impl Checker {
    /// The expression giving a row version's time: the commit timestamp when every region
    /// tracks it, else the rule's tracking column when it is a timestamp.
    pub(super) async fn version_time_expr(
        &self,
        conns: &[Client],
        resolution: Option<&Resolution>,
        first: &TableSchema,
    ) -> Option<String> {
        let mut all_on = true;
        for c in conns {
            let on = c
                .query_one(
                    "SELECT current_setting('track_commit_timestamp') = 'on'",
                    &[],
                )
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false);
            all_on &= on;
        }
        if all_on {
            return Some("pg_xact_commit_timestamp(t.xmin)".into());
        }
        let res = resolution
            .cloned()
            .unwrap_or_else(|| self.config.default_resolution());
        let col = match res {
            Resolution::LastWriteWins { tracking_column }
            | Resolution::FirstWriteWins { tracking_column } => tracking_column,
            Resolution::ColumnMerge {
                tracking_column, ..
            } => tracking_column,
            _ => None,
        }?;
        let c = first.column(&col)?;
        matches!(
            types::ColumnType::effective_oid(c),
            oid::TIMESTAMP | oid::TIMESTAMPTZ
        )
        .then(|| format!("t.{}::timestamptz", crate::pg::ident::quote_ident(&col)))
    }
}
