//! Conflict resolution: which version of a row wins across regions (pure, no I/O).
//!
//! DOCS_PLACEHOLDER

mod custom;
mod expr;
mod order;
mod rules;
mod tombstone;

use std::sync::Arc;

pub use custom::{CustomResolver, Registry};
pub use expr::{Expression, check_expression_order, synthetic_samples};

use crate::config::{Resolution, Tombstone};
use crate::value::Value;

/// One row's values, by column name. Column names are shared (`Arc`) so that the rows of one
/// table cost one copy of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// A row from column names and values in the same order. Refuses lists of different
    /// lengths and duplicate column names.
    pub fn new(columns: Arc<[String]>, values: Vec<Value>) -> Result<Row, String> {
        if columns.len() != values.len() {
            return Err(format!("a row has {} column names but {} values", columns.len(), values.len()));
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(format!("a row names column `{c}` twice"));
            }
        }
        Ok(Row { columns, values })
    }

    /// A row from `(column, value)` pairs; a repeated column keeps its last value.
    ///
    /// ```
    /// use eden_consistency::resolve::Row;
    /// use eden_consistency::value::Value;
    /// let row = Row::from_pairs([("id", Value::Int(7)), ("name", Value::Text("x".into()))]);
    /// assert_eq!(row.get("id"), Some(&Value::Int(7)));
    /// assert_eq!(row.get("nope"), None);
    /// ```
    pub fn from_pairs<I, S>(pairs: I) -> Row
    where
        I: IntoIterator<Item = (S, Value)>,
        S: Into<String>,
    {
        let mut columns: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        for (c, v) in pairs {
            let c = c.into();
            match columns.iter().position(|x| *x == c) {
                Some(i) => values[i] = v,
                None => {
                    columns.push(c);
                    values.push(v);
                }
            }
        }
        Row { columns: columns.into(), values }
    }

    /// The value of `column`, `None` when the row has no such column.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.columns.iter().position(|c| c == column).map(|i| &self.values[i])
    }

    /// Column names, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The shared column-name list.
    pub fn shared_columns(&self) -> &Arc<[String]> {
        &self.columns
    }

    /// Values, in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// `(column, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.columns.iter().map(String::as_str).zip(self.values.iter())
    }

    /// True when both rows have the same columns with equal values (equality as
    /// [`Value`]'s `==`: the same data, whatever session printed it).
    pub fn same_values(&self, other: &Row) -> bool {
        if self.values.len() != other.values.len() {
            return false;
        }
        if Arc::ptr_eq(&self.columns, &other.columns) || self.columns == other.columns {
            return self.values == other.values;
        }
        self.iter().all(|(c, v)| other.get(c) == Some(v))
    }

    /// The row's 16-byte digest, as the checker computes it ([`crate::digest::row_digest`]
    /// over the values in column order).
    pub fn digest(&self) -> [u8; 16] {
        crate::digest::row_digest(&self.values)
    }
}

/// One region's version of one row (by key), with what the resolver needs to rank it.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// The region's name.
    pub region: String,
    /// The region's position in the tie-break order (config order, then `--region` flags);
    /// lower wins a tie.
    pub region_order: usize,
    /// The row, `None` when the region has no row for the key.
    pub row: Option<Row>,
    /// Commit time of the row's last write, microseconds since 2000-01-01 UTC (PostgreSQL's
    /// epoch), from `pg_xact_commit_timestamp(xmin)`; `None` when unknown (older than every
    /// known time).
    pub commit_ts: Option<i64>,
    /// Digest of the row ([`crate::digest::row_digest`]), the last tie-break (greater
    /// wins). [`Version::present`] fills it from [`Row::digest`]; all zeros for an absent
    /// row.
    pub digest: [u8; 16],
    /// For an absent row: when it was deleted, as remembered by the table's tombstone source
    /// (e.g. `Value::TimestampTz`). Ignored for a present row (a soft-delete column lives in
    /// the row itself).
    pub tombstone: Option<Value>,
}

impl Version {
    /// A region that has the row (digest computed from it; no commit timestamp yet).
    pub fn present(region: impl Into<String>, region_order: usize, row: Row) -> Version {
        let digest = row.digest();
        Version { region: region.into(), region_order, row: Some(row), commit_ts: None, digest, tombstone: None }
    }

    /// A region that has no row for the key.
    pub fn absent(region: impl Into<String>, region_order: usize) -> Version {
        Version { region: region.into(), region_order, row: None, commit_ts: None, digest: [0; 16], tombstone: None }
    }

    /// Sets the commit timestamp (µs since 2000-01-01 UTC).
    pub fn with_commit_ts(mut self, micros: i64) -> Version {
        self.commit_ts = Some(micros);
        self
    }

    /// Sets the deletion time remembered for an absent row.
    pub fn with_tombstone(mut self, deleted_at: Value) -> Version {
        self.tombstone = Some(deleted_at);
        self
    }

    /// Sets the digest (e.g. the one the checker computed).
    pub fn with_digest(mut self, digest: [u8; 16]) -> Version {
        self.digest = digest;
        self
    }

    /// The value of `column`; `None` when the row is absent or has no such column.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.row.as_ref()?.get(column)
    }
}

/// Converts microseconds since 2000-01-01 UTC to a `chrono` time.
pub fn micros_to_datetime(micros: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    let epoch = chrono::DateTime::from_timestamp(946_684_800, 0)?;
    epoch.checked_add_signed(chrono::TimeDelta::microseconds(micros))
}

/// Converts a `chrono` time to microseconds since 2000-01-01 UTC.
pub fn datetime_to_micros(t: chrono::DateTime<chrono::Utc>) -> Option<i64> {
    let epoch = chrono::DateTime::from_timestamp(946_684_800, 0)?;
    (t - epoch).num_microseconds()
}

/// What wins.
#[derive(Debug, Clone, PartialEq)]
pub enum Winner {
    /// The version at this index of the input (its row, or for a soft-deleted row that won as
    /// a delete, that row with its soft-delete column set).
    Row(usize),
    /// The row must not exist anywhere (a tombstone won), or exists nowhere.
    Delete,
    /// `column_merge`: a row assembled column by column from several versions (see
    /// [`Decision::column_sources`]).
    Merged(Row),
}

/// What to do in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// The region already holds the winner.
    None,
    /// The region lacks the row: insert the winner.
    Insert,
    /// The region holds another version: overwrite it with the winner.
    Update,
    /// The region holds a row that a newer delete removes.
    Delete,
    /// The region differs, but the rule is `manual`: record only, a human decides.
    Manual,
}

impl Action {
    /// The name used in reports (`none`, `insert`, `update`, `delete`, `manual`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::None => "none",
            Action::Insert => "insert",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Manual => "manual",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of resolving one key.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The winning version, a delete, or a merged row.
    pub winner: Winner,
    /// The input version that won: the row's version, the version whose tombstone or
    /// soft-deleted row won a delete, or for a merge the version the untracked columns came
    /// from. `None` when no version has anything (all absent without tombstone).
    pub winner_index: Option<usize>,
    /// One entry per input version, in input order: its region and what to do there.
    pub actions: Vec<(String, Action)>,
    /// What decided (CONTRACT §4): the tracking column's name, `commit_timestamp`,
    /// `region_priority`, the `highest_value` column, `expression`, `custom_rust:<name>`,
    /// `missing_row`, `tombstone`, `tiebreak:commit_timestamp`, `tiebreak:region_order`,
    /// `tiebreak:digest`, `manual`; for a genuine column merge, the deciding steps of the
    /// merged column groups joined by `,`.
    pub decided_by: String,
    /// True when a human must decide (`manual` rule with a difference).
    pub needs_human: bool,
    /// For [`Winner::Merged`]: each column of the merged row and the index of the version it
    /// came from. Empty otherwise.
    pub column_sources: Vec<(String, usize)>,
}

impl Decision {
    /// True when no region needs any change.
    pub fn is_noop(&self) -> bool {
        self.actions.iter().all(|(_, a)| *a == Action::None)
    }

    /// The action for `region`.
    pub fn action_for(&self, region: &str) -> Option<Action> {
        self.actions.iter().find(|(r, _)| r == region).map(|(_, a)| *a)
    }

    /// The winning region's name, given the versions the decision was made from.
    pub fn winner_region<'a>(&self, versions: &'a [Version]) -> Option<&'a str> {
        self.winner_index.and_then(|i| versions.get(i)).map(|v| v.region.as_str())
    }

    /// The row every region must end up with (`None` for a delete).
    pub fn winning_row<'a>(&'a self, versions: &'a [Version]) -> Option<&'a Row> {
        match &self.winner {
            Winner::Row(i) => versions.get(*i).and_then(|v| v.row.as_ref()),
            Winner::Merged(r) => Some(r),
            Winner::Delete => None,
        }
    }
}

/// Syntax-level validation of a rule at config load. For `custom` the expression is parsed
/// (PostgreSQL dialect) and checked to use only the allowed constructs; the other rules get
/// their settings checked for emptiness and contradictions. `Err` is one sentence quoting the
/// offending part, e.g. "expression uses `pg_sleep(1)`, which is not allowed: only a.col/b.col,
/// literals, comparisons, AND/OR/NOT, arithmetic, IS [NOT] NULL, COALESCE, GREATEST, LEAST,
/// region() and commit_ts() are".
///
/// ```
/// use eden_consistency::config::Resolution;
/// use eden_consistency::resolve::validate_rule_syntax;
/// let ok = Resolution::Custom { expression: "a.version > b.version".into() };
/// assert!(validate_rule_syntax(&ok).is_ok());
/// let bad = Resolution::Custom { expression: "a.version > pg_sleep(1)".into() };
/// assert!(validate_rule_syntax(&bad).unwrap_err().contains("`pg_sleep(1)`"));
/// ```
pub fn validate_rule_syntax(rule: &Resolution) -> Result<(), String> {
    rules::Rule::compile_syntax(rule).map(|_| ())
}

/// Validates a rule against the table's columns: tracking, compared, merged and
/// expression-referenced columns must exist. (Syntax is checked too.)
pub fn validate_against_columns(rule: &Resolution, columns: &[String]) -> Result<(), String> {
    rules::Rule::compile_syntax(rule)?.check_columns(columns)
}

/// Resolves the versions of one key by one table's rule.
#[derive(Clone)]
pub struct Resolver {
    rule: rules::Rule,
    name: String,
    tombstone: Option<Tombstone>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").field("rule", &self.name).field("tombstone", &self.tombstone).finish()
    }
}

impl Resolver {
    /// Builds the resolver for a table: its rule, its tombstone source, its columns (empty:
    /// not known, column checks skipped) and the registry of Rust resolvers (for
    /// `custom_rust`). `Err` is one sentence naming the offending setting.
    pub fn new(rule: &Resolution, tombstone: Option<&Tombstone>, columns: &[String], registry: &Registry) -> Result<Resolver, String> {
        let compiled = rules::Rule::compile(rule, registry)?;
        if !columns.is_empty() {
            compiled.check_columns(columns)?;
            if let Some(Tombstone::Column { column }) = tombstone {
                if !columns.iter().any(|c| c == column) {
                    return Err(format!("the soft-delete column `{column}` does not exist in the table"));
                }
            }
        }
        Ok(Resolver { rule: compiled, name: rule.name().to_string(), tombstone: tombstone.cloned() })
    }

    /// The rule's name as in the config (`last_write_wins`, ...).
    pub fn rule_name(&self) -> &str {
        &self.name
    }

    /// Checks the column types the rule relies on, given `(column, PostgreSQL type name)`
    /// pairs as `format_type` prints them: tracking columns must be timestamp, timestamptz,
    /// date, smallint, integer, bigint or numeric; a `highest_value` column must not be
    /// json; a soft-delete column must be a date, timestamp, timestamptz or boolean.
    pub fn check_column_types(&self, types: &[(String, String)]) -> Result<(), String> {
        self.rule.check_types(types, self.tombstone.as_ref())
    }

    /// Decides, for one key, what wins among `versions` (one per region) and what each region
    /// must do. Deterministic, and independent of the order of `versions`.
    pub fn resolve(&self, versions: &[Version]) -> Decision {
        rules::resolve(&self.rule, self.tombstone.as_ref(), versions)
    }
}
