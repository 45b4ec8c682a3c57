//! Progress of long work, reported to whoever embeds the library: the library itself never
//! writes to stdout or stderr.

use std::fmt::Debug;
use std::sync::Arc;

/// Receives progress reports. Work is named by a label (a table while it is checked, a
/// region while a fix writes to it); several labels may be in progress at once.
///
/// The `eden-reconcile` binary draws progress bars on a terminal; a service may log, export
/// a metric, or pass no sink at all.
pub trait Progress: Send + Sync + Debug {
    /// Work named `label` starts; `total` is its expected number of rows (0 when unknown).
    fn start(&self, label: &str, total: u64);
    /// `done` rows of the work named `label` are finished so far.
    fn update(&self, label: &str, done: u64);
    /// The work named `label` is over.
    fn finish(&self, label: &str);
}

/// An optional, shared progress sink, as held by the options of `check` and `fix`.
pub type ProgressSink = Option<Arc<dyn Progress>>;
