//! Deletes: when a version counts as deleted, when it was deleted, and when a row was last
//! written (to decide whether a delete is newer than it).

use std::cmp::Ordering;

use super::Tombstone;
use super::Version;
use super::order::{commit_value, total_cmp};
use crate::row::value::Value;

/// True for the kinds that are points in time.
pub(crate) fn is_time(v: &Value) -> bool {
    matches!(
        v,
        Value::Date(_) | Value::Timestamp(_) | Value::TimestampTz(_)
    )
}

/// When a present row was last written, for comparing with deletion times: the rule's
/// tracking column when it holds a date/timestamp (or NULL, older than every time), else the
/// commit timestamp (NULL when unknown).
pub(crate) fn row_time(v: &Version, time_column: Option<&str>) -> Value {
    if let (Some(c), Some(row)) = (time_column, &v.row) {
        match row.get(c) {
            Some(x) if x.is_null() || is_time(x) => return x.clone(),
            _ => {}
        }
    }
    commit_value(v)
}

/// The deletion time of a version that counts as deleted, `None` for a live row or a row
/// simply missing.
///
/// * absent with [`Version::tombstone`] set: that time;
/// * present, with a soft-delete column that is non-NULL and not `false`: the column's value,
///   or for a boolean `true` the row's own time ([`row_time`]).
pub(crate) fn deletion_time(
    v: &Version,
    tombstone: Option<&Tombstone>,
    time_column: Option<&str>,
) -> Option<Value> {
    match &v.row {
        None => v.tombstone.clone(),
        Some(row) => {
            let Some(Tombstone::Column { column }) = tombstone else {
                return None;
            };
            match row.get(column)? {
                Value::Null | Value::Bool(false) => None,
                Value::Bool(true) => Some(row_time(v, time_column)),
                other => Some(other.clone()),
            }
        }
    }
}

/// True when a delete at `deleted` is newer than a row written at `written` (and so kills
/// it). A NULL write time is older than every deletion time; times that cannot be compared
/// (say an integer against a timestamp) never delete.
pub(crate) fn kills(deleted: &Value, written: &Value) -> bool {
    deleted.compare(written) == Some(Ordering::Greater)
}

/// The newest of deletion times.
pub(crate) fn newest<'a>(times: impl Iterator<Item = &'a Value>) -> Option<&'a Value> {
    times.max_by(|a, b| total_cmp(a, b))
}
