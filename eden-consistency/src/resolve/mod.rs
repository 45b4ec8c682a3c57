//! Conflict resolution: which version of a row wins across regions (pure, no I/O).
//!
//! For one key, every region's version of the row goes in (a [`Version`]: the row or its
//! absence, the commit timestamp, the region and its place in the tie-break order, and for
//! an absent row the deletion time its tombstone source remembers); a [`Decision`] comes
//! out: the winner (a version, a delete, or for `column_merge` a merged row), what each
//! region must do ([`Action`]), what decided (`decided_by`, `docs/replication_conflicts.md`) and whether a human
//! must decide. `fix` uses it for every difference it found; services embed the same
//! [`Resolver`] in their own write paths.
//!
//! # A service resolving in its write path
//!
//! ```
//! use eden_consistency::Resolution;
//! use eden_consistency::{datetime_to_micros, Action, Registry, Resolver, Row, Version, Winner};
//! use eden_consistency::Value;
//!
//! // Once, at startup: the table's rule (as in the config) and its columns.
//! let columns = ["id", "secret", "last_updated_at"].map(String::from);
//! let resolver = Resolver::new(
//!     &Resolution::LastWriteWins { tracking_column: Some("last_updated_at".into()) },
//!     None,
//!     &columns,
//!     &Registry::new(),
//! )?;
//!
//! // In the write path: the row this region holds and the one arriving from another region.
//! let at = |rfc3339: &str| {
//!     let t = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc();
//!     Value::TimestampTz(datetime_to_micros(t).unwrap())
//! };
//! let local = Version::present("us-east-1", 0, Row::from_pairs([
//!     ("id", Value::Int(42)),
//!     ("secret", Value::Text("old".into())),
//!     ("last_updated_at", at("2026-01-01T10:00:00Z")),
//! ]));
//! let incoming = Version::present("us-west-2", 1, Row::from_pairs([
//!     ("id", Value::Int(42)),
//!     ("secret", Value::Text("new".into())),
//!     ("last_updated_at", at("2026-01-01T10:00:05Z")),
//! ]));
//! let versions = [local, incoming];
//! let decision = resolver.resolve(&versions);
//!
//! match decision.action_for("us-east-1") {
//!     Some(Action::Update) | Some(Action::Insert) => {
//!         let row = decision.winning_row(&versions).expect("a row wins");
//!         // ... write `row` locally, keeping the old image (nothing is lost) ...
//!         assert_eq!(row.get("secret"), Some(&Value::Text("new".into())));
//!     }
//!     Some(Action::Delete) => { /* delete locally */ }
//!     Some(Action::Manual) => { /* record for a human, change nothing */ }
//!     Some(Action::None) | None => { /* keep the local row */ }
//! }
//! assert_eq!(decision.winner, Winner::Row(1));
//! assert_eq!(decision.winner_region(&versions), Some("us-west-2"));
//! assert_eq!(decision.decided_by, "last_updated_at");
//! # Ok::<(), eden_consistency::Error>(())
//! ```
//!
//! # A service registering its own resolver
//!
//! A [`CustomResolver`] registered in a [`Registry`] is used wherever the config says
//! `resolution: custom_rust` with its `name:`.
//!
//! ```
//! use std::cmp::Ordering;
//! use eden_consistency::Resolution;
//! use eden_consistency::{CustomResolver, Registry, Resolver, Row, Version, Winner};
//! use eden_consistency::Value;
//!
//! /// The version approved by more reviewers wins.
//! struct MostApprovals;
//!
//! impl CustomResolver for MostApprovals {
//!     fn name(&self) -> &str {
//!         "most_approvals"
//!     }
//!     fn compare(&self, a: &Version, b: &Version) -> Ordering {
//!         let approvals = |v: &Version| match v.get("approvals") {
//!             Some(Value::Int(n)) => *n,
//!             _ => 0,
//!         };
//!         approvals(a).cmp(&approvals(b)) // Equal: the tie-break order decides
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! registry.register(MostApprovals)?;
//! let rule = Resolution::CustomRust { name: "most_approvals".into() };
//! let resolver = Resolver::new(&rule, None, &[], &registry)?;
//!
//! let doc = |approvals: i64| Row::from_pairs([("id", Value::Int(1)), ("approvals", Value::Int(approvals))]);
//! let versions = [
//!     Version::present("us-east-1", 0, doc(2)),
//!     Version::present("us-west-2", 1, doc(5)),
//! ];
//! let decision = resolver.resolve(&versions);
//! assert_eq!(decision.winner, Winner::Row(1));
//! assert_eq!(decision.decided_by, "custom_rust:most_approvals");
//!
//! // A name nobody registered is refused when the resolver is built.
//! let unknown = Resolution::CustomRust { name: "nope".into() };
//! assert!(Resolver::new(&unknown, None, &[], &registry).unwrap_err().to_string().contains("`nope`"));
//! # Ok::<(), eden_consistency::Error>(())
//! ```
//!
//! # The order: rule, then commit timestamp, then region order, then digest
//!
//! Versions are ranked by a strict, deterministic total order that never depends on the order
//! in which regions answered:
//!
//! 1. **the rule's value** (below);
//! 2. **the commit timestamp** (`pg_xact_commit_timestamp(xmin)`): the newer wins, except
//!    under `first_write_wins` where the older wins; skipped when the rule's value already is
//!    the commit timestamp;
//! 3. **the region order**: the region earlier in the config (then in the `--region` flags)
//!    wins ([`Version::region_order`], then the region name);
//! 4. **the row digest**: the greater wins. Only two versions of the same region (as when
//!    repairs are folded two at a time) get this far; equal digests are equal data.
//!
//! A NULL tracking value and an unknown commit timestamp are **older than every value**.
//! Values compare as values ([`Value::compare`]); values of kinds with no common order (which a
//! single column never mixes) rank by a fixed order of kinds.
//!
//! `decided_by` names the step at which the winner beat the best version holding *different*
//! data: the rule's name for it (table below), or `tiebreak:commit_timestamp`,
//! `tiebreak:region_order`, `tiebreak:digest`. [`Decision::decided_by_for`] gives it per
//! region: `missing_row` for an insert into a region that simply lacked the row.
//!
//! | rule (`resolution:`) | the rule's value | `decided_by` |
//! |---|---|---|
//! | `last_write_wins` + `tracking_column` (timestamp, timestamptz, date, integer, bigint, numeric) | the column; greatest wins | the column's name |
//! | `last_write_wins` without `tracking_column` | the commit timestamp; newest wins | `commit_timestamp` |
//! | `first_write_wins` (+ `tracking_column`) | the same; smallest wins (NULL, being oldest, wins: the exact mirror) | the column's name / `commit_timestamp` |
//! | `region_priority` + `regions:` | position in the list; regions not listed come after all listed ones | `region_priority` |
//! | `highest_value` + `column:` | the column; greatest wins, NULL lowest | the column's name |
//! | `custom` + `expression:` | how many other versions it beats (below) | `expression` |
//! | `custom_rust` + `name:` | how many other versions it beats, by the registered [`CustomResolver`] | `custom_rust:<name>` |
//! | `column_merge` + `columns: {col: tracking_col}` (+ `tracking_column`) | per column group (below) | the deciding steps of the groups that differed, joined by `,` |
//! | `manual` | none: the tie-break order suggests a winner, nothing is changed, [`Decision::needs_human`] | `manual` |
//!
//! [`Resolver::check_column_types`] refuses a tracking column of another type once the
//! table's column types are known.
//!
//! # Missing rows and deletes
//!
//! The default loses nothing: a row present in some regions and absent from others is
//! copied to the others. A delete only wins when it is remembered, with its time, by the
//! table's tombstone source ([`Tombstone`]):
//!
//! * a **tombstone table** (key + deletion time): the caller reads it and passes the time as
//!   [`Version::tombstone`] of the region where the row is absent;
//! * a **soft-delete column** (e.g. `deleted_at`): the row is present with the column set;
//!   the column's value is the deletion time (a boolean `true` flag takes the row's own write
//!   time).
//!
//! A version's *write time*, compared with deletion times, is the rule's tracking column
//! when it holds a date or timestamp (or NULL), otherwise its commit timestamp (NULL when
//! unknown, older than every deletion). A delete **kills every version written before it**;
//! the rule then picks among the versions that survive; when none survive the newest delete
//! wins (ties by the tie-break order). A delete at the very time of a write does not kill
//! it. A deletion time that cannot be compared with a write time (an integer against a
//! timestamp) kills nothing.
//!
//! | regions hold | outcome | actions | `decided_by` |
//! |---|---|---|---|
//! | the same row everywhere | nothing to do | none | the rule's own step name (tracking column, `commit_timestamp`, ...) |
//! | different rows | the rule's winner | `update` where the row differs | the deciding step |
//! | a row in some, nothing (no tombstone) in others | the row (the rule's winner among present ones) | `insert` where absent | `missing_row` (or the deciding step if present rows also differ) |
//! | nothing anywhere (absent, maybe with tombstones) | nothing to do ([`Winner::Delete`]) | none | `missing_row`, or `tombstone` when a tombstone is remembered |
//! | a row written after the newest delete, a tombstone elsewhere | the row: the delete is undone | `insert` where absent | `tombstone` (or the deciding step if surviving rows differ) |
//! | rows all written before the newest delete (hard tombstone) | [`Winner::Delete`] | `delete` where present | `tombstone` |
//! | some rows before, some after the newest delete | the rule's winner among those written after | `update`/`insert` elsewhere | the deciding step, or `tombstone` |
//! | soft-deleted row whose `deleted_at` is newer than every live version's write | that soft-deleted row (of several, the newest `deleted_at`), copied as a row (never a hard delete) | `update`/`insert` elsewhere | `tombstone` |
//! | live row written after another region's `deleted_at` | the live row: the soft delete is undone | `update` of the soft-deleted row | the deciding step or `tombstone` |
//! | a hard tombstone newer than a soft-deleted row | [`Winner::Delete`] | `delete` of the soft-deleted row | `tombstone` |
//! | any of the above under `manual` | the suggestion above, applied nowhere | `manual` where it differs | `manual` |
//!
//! Soft deletes propagate as *updates* of the soft-delete column, so the application's own
//! view of deleted rows (and any later undelete) stays intact; only a remembered hard delete
//! deletes rows.
//!
//! # Column merge
//!
//! `column_merge` maps columns to their tracking columns (`columns: {price: price_updated_at}`).
//! Each tracking column and the columns it tracks travel together as a group: the group's
//! values come from the version whose tracking value is greatest (then the tie-break order).
//! All other columns, with `tracking_column`, come from the version that wins by
//! `tracking_column` (or the commit timestamp). When the result equals one version it is
//! [`Winner::Row`]; otherwise [`Winner::Merged`], with [`Decision::column_sources`] telling
//! where each column came from.
//!
//! # Custom expressions
//!
//! `resolution: custom` with `expression:` is a SQL boolean over two candidate versions `a`
//! and `b`, true when `a` beats `b` (see [`Expression`] for what is allowed). It is parsed with
//! sqlparser when the config is loaded ([`validate_rule_syntax`]), its columns are checked
//! against the table ([`validate_against_columns`]), and it is evaluated here, in Rust, with
//! SQL's three-valued logic: NULL is not true, so a version does not beat another by it.
//!
//! An expression need not be a strict order, so the winner never depends on the order of
//! comparisons: every version is compared with every other; the one that beats the most
//! others wins, ties broken by the tie-break order. For an expression that is a strict weak
//! order (e.g. `a.version > b.version` over non-NULL versions) this is simply its greatest
//! version. [`check_expression_order`] samples pairs and triples and warns when an expression
//! is not antisymmetric or not transitive (`eden-reconcile validate-config` reports these).
//!
//! # What is proven (`tests/it/resolve_props.rs`)
//!
//! For every rule, custom expressions and Rust resolvers: the decision is deterministic; it
//! does not depend on the order the versions are given in; resolving data that already
//! agrees changes nothing; the winner is one of the inputs (for a merge, every column comes
//! from some input); a tombstone newer than every version always wins, one older than every
//! version never does. Resolving N regions at once gives the same data as resolving them two
//! at a time in any grouping, for every rule whose ranking is a total order (all built-in
//! rules; custom expressions and resolvers that are strict weak orders; a column merge whose
//! tracking values do not tie), so regions converge whatever the order of repairs.
//!
//! With deletes, two-at-a-time convergence holds for the rules ordered by time
//! (`last_write_wins` on the commit timestamp or on a date/timestamp tracking column), and
//! **cannot** hold for the others, whatever the semantics: take `region_priority` with
//! versions `x` (preferred region, written at 1) and `y` (written at 100), and a delete at 50.
//! The delete must beat `x` alone (it is newer than every version there) and lose to `y`
//! alone (older than every version), while `x` beats `y`: no total order, so no repair order
//! can agree with every grouping. `fix` therefore decides each key once over all regions at
//! once, which is what [`Resolver::resolve`] does. (Repairs also rewrite commit timestamps,
//! another reason to decide over all regions in one pass.)

mod custom;
mod eval;
mod expr;
mod lint;
mod order;
mod rule;
mod rules;
mod tombstone;

use std::sync::Arc;

pub use custom::{CustomResolver, Registry};
pub use expr::Expression;
pub use lint::{check_expression_order, synthetic_samples};

use crate::row::value::Value;
pub use rule::{Resolution, Tombstone};

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
    pub fn new(columns: Arc<[String]>, values: Vec<Value>) -> crate::Result<Row> {
        if columns.len() != values.len() {
            return Err(crate::Error::Usage(format!(
                "a row has {} column names but {} values",
                columns.len(),
                values.len()
            )));
        }
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(crate::Error::Usage(format!(
                    "a row names column `{c}` twice"
                )));
            }
        }
        Ok(Row { columns, values })
    }

    /// A row from `(column, value)` pairs; a repeated column keeps its last value.
    ///
    /// ```
    /// use eden_consistency::Row;
    /// use eden_consistency::Value;
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
        Row {
            columns: columns.into(),
            values,
        }
    }

    /// The value of `column`, `None` when the row has no such column.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.columns
            .iter()
            .position(|c| c == column)
            .map(|i| &self.values[i])
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
        self.columns
            .iter()
            .map(String::as_str)
            .zip(self.values.iter())
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

    /// The row's 16-byte digest, as the checker computes it ([`crate::row::digest::row_digest`]
    /// over the values in column order).
    pub fn digest(&self) -> [u8; 16] {
        crate::row::digest::row_digest(&self.values)
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
    /// Digest of the row ([`crate::row::digest::row_digest`]), the last tie-break (greater
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
        Version {
            region: region.into(),
            region_order,
            row: Some(row),
            commit_ts: None,
            digest,
            tombstone: None,
        }
    }

    /// A region that has no row for the key.
    pub fn absent(region: impl Into<String>, region_order: usize) -> Version {
        Version {
            region: region.into(),
            region_order,
            row: None,
            commit_ts: None,
            digest: [0; 16],
            tombstone: None,
        }
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

/// A table's column names for a message: the first 12, then how many more.
pub(crate) fn list_columns(columns: &[String]) -> String {
    const SHOWN: usize = 12;
    let mut s = columns
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if columns.len() > SHOWN {
        s.push_str(&format!(" and {} more", columns.len() - SHOWN));
    }
    s
}

/// Converts microseconds since 2000-01-01 UTC to a `chrono` time.
pub fn micros_to_datetime(micros: i64) -> Option<chrono::DateTime<chrono::Utc>> {
    let epoch = chrono::DateTime::from_timestamp(crate::row::value::PG_EPOCH_UNIX_SECS, 0)?;
    epoch.checked_add_signed(chrono::TimeDelta::microseconds(micros))
}

/// Converts a `chrono` time to microseconds since 2000-01-01 UTC.
pub fn datetime_to_micros(t: chrono::DateTime<chrono::Utc>) -> Option<i64> {
    let epoch = chrono::DateTime::from_timestamp(crate::row::value::PG_EPOCH_UNIX_SECS, 0)?;
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
    /// What decided (see `docs/replication_conflicts.md`): the tracking column's name, `commit_timestamp`,
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
        self.actions
            .iter()
            .find(|(r, _)| r == region)
            .map(|(_, a)| *a)
    }

    /// `decided_by` for the action at `index` (of the input versions): `missing_row` for an
    /// insert into a region that lacked the row and remembered no delete, else
    /// [`Decision::decided_by`].
    pub fn decided_by_for(&self, index: usize, versions: &[Version]) -> &str {
        match (self.actions.get(index), versions.get(index)) {
            (Some((_, Action::Insert)), Some(v)) if v.row.is_none() && v.tombstone.is_none() => {
                "missing_row"
            }
            _ => &self.decided_by,
        }
    }

    /// The winning region's name, given the versions the decision was made from.
    pub fn winner_region<'a>(&self, versions: &'a [Version]) -> Option<&'a str> {
        self.winner_index
            .and_then(|i| versions.get(i))
            .map(|v| v.region.as_str())
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
/// literals, comparisons, AND/OR/NOT, arithmetic, IS \[NOT\] NULL, COALESCE, GREATEST, LEAST,
/// region() and commit_ts() are".
///
/// ```
/// use eden_consistency::Resolution;
/// use eden_consistency::validate_rule_syntax;
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
        f.debug_struct("Resolver")
            .field("rule", &self.name)
            .field("tombstone", &self.tombstone)
            .finish()
    }
}

impl Resolver {
    /// Builds the resolver for a table: its rule, its tombstone source, its columns (empty:
    /// not known, column checks skipped) and the registry of Rust resolvers (for
    /// `custom_rust`). `Err` is one sentence naming the offending setting.
    pub fn new(
        rule: &Resolution,
        tombstone: Option<&Tombstone>,
        columns: &[String],
        registry: &Registry,
    ) -> crate::Result<Resolver> {
        let compiled = rules::Rule::compile(rule, registry).map_err(crate::Error::Usage)?;
        if !columns.is_empty() {
            compiled
                .check_columns(columns)
                .map_err(crate::Error::Usage)?;
            if let Some(Tombstone::Column { column }) = tombstone {
                if !columns.iter().any(|c| c == column) {
                    return Err(crate::Error::Usage(format!(
                        "the soft-delete column `{column}` is not a compared column of the table (missing or excluded)"
                    )));
                }
            }
        }
        Ok(Resolver {
            rule: compiled,
            name: rule.name().to_string(),
            tombstone: tombstone.cloned(),
        })
    }

    /// The rule's name as in the config (`last_write_wins`, ...).
    pub fn rule_name(&self) -> &str {
        &self.name
    }

    /// Checks the column types the rule relies on, given `(column, PostgreSQL type name)`
    /// pairs as `format_type` prints them: tracking columns must be timestamp, timestamptz,
    /// date, smallint, integer, bigint or numeric; a `highest_value` column must not be
    /// json; a soft-delete column must be a date, timestamp, timestamptz or boolean.
    pub fn check_column_types(&self, types: &[(String, String)]) -> crate::Result<()> {
        self.rule
            .check_types(types, self.tombstone.as_ref())
            .map_err(crate::Error::Usage)
    }

    /// Decides, for one key, what wins among `versions` (one per region) and what each region
    /// must do. Deterministic, and independent of the order of `versions`.
    pub fn resolve(&self, versions: &[Version]) -> Decision {
        rules::resolve(&self.rule, self.tombstone.as_ref(), versions)
    }
}
