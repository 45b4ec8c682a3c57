//! Progress bars on stderr, drawn only when stderr is a terminal.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use eden_consistency::{Progress, ProgressSink};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One bar per piece of work in progress (a table being checked, a region being written).
#[derive(Debug)]
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars on stderr when it is a terminal; `None` (no progress at all) otherwise.
    pub fn for_stderr() -> ProgressSink {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Arc::new(Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }))
    }
}

impl Progress for Bars {
    fn start(&self, label: &str, total: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        let style = ProgressStyle::with_template(
            "{msg}: {human_pos}/{human_len} rows, {per_sec}, ETA {eta} {wide_bar}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(label.to_string());
        if let Ok(mut bars) = self.bars.lock() {
            if let Some(old) = bars.insert(label.to_string(), bar) {
                old.finish_and_clear();
            }
        }
    }

    fn update(&self, label: &str, done: u64) {
        if let Ok(bars) = self.bars.lock() {
            if let Some(bar) = bars.get(label) {
                if bar.length().is_some_and(|len| done > len) {
                    bar.set_length(done);
                }
                bar.set_position(done);
            }
        }
    }

    fn finish(&self, label: &str) {
        if let Ok(mut bars) = self.bars.lock() {
            if let Some(bar) = bars.remove(label) {
                bar.finish_and_clear();
            }
        }
    }
}
