//! The one list of session settings every session of the tool runs with, whether it reads
//! (check), writes (fix, undo, import) or is a `--sql-out` script run with psql.
//!
//! They fix how the server prints and parses values, so that rows read in two regions
//! compare as values whatever each server's defaults are (see `docs/commands.md`, "check"),
//! and so that string literals mean the same everywhere (`standard_conforming_strings`).
//! Sessions the tool opens get them as startup options ([`startup_options`]); sessions a
//! caller hands in get them with `SET` ([`apply`]), and scripts start with [`set_script`].

use std::time::Duration;

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::ident::quote_literal;

/// The fixed settings, `(name, value)`, in the order they are applied.
pub(crate) const SETTINGS: &[(&str, &str)] = &[
    ("TimeZone", "UTC"),
    ("DateStyle", "ISO"),
    ("IntervalStyle", "postgres"),
    ("extra_float_digits", "3"),
    ("bytea_output", "hex"),
    ("standard_conforming_strings", "on"),
];

/// The startup `options` of a session the tool opens: every setting of [`SETTINGS`], then
/// `statement_timeout` (`None` or zero: no limit) and `lock_timeout`, in milliseconds.
pub(crate) fn startup_options(
    statement_timeout: Option<Duration>,
    lock_timeout: Duration,
) -> String {
    let ms = |d: Duration| d.as_millis().min(i32::MAX as u128);
    SETTINGS
        .iter()
        .map(|(name, value)| format!("-c {name}={value}"))
        .chain([
            format!(
                "-c statement_timeout={}",
                statement_timeout.map(ms).unwrap_or(0)
            ),
            format!("-c lock_timeout={}", ms(lock_timeout)),
        ])
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `SET name = 'value';` statement per setting of [`SETTINGS`], each followed by `sep`
/// (a space for one batch, a newline for a script).
fn set_statements(sep: &str) -> String {
    SETTINGS
        .iter()
        .map(|(name, value)| format!("SET {name} = {};{sep}", quote_literal(value)))
        .collect()
}

/// The settings as `SET` statements, one per line, for the top of a `--sql-out` script.
pub(crate) fn set_script() -> String {
    set_statements("\n")
}

/// Applies [`SETTINGS`] to a session that was not opened with [`startup_options`] (or whose
/// settings may have been changed since).
pub(crate) async fn apply(client: &Client, region: &str) -> Result<()> {
    client
        .batch_execute(set_statements(" ").trim_end())
        .await
        .map_err(|e| Error::query(region, "setting up the session", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_as_options_and_statements() {
        assert_eq!(
            startup_options(Some(Duration::from_secs(30)), Duration::from_secs(10)),
            "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3 \
             -c bytea_output=hex -c standard_conforming_strings=on -c statement_timeout=30000 \
             -c lock_timeout=10000"
        );
        assert_eq!(
            set_script(),
            "SET TimeZone = 'UTC';\nSET DateStyle = 'ISO';\nSET IntervalStyle = 'postgres';\n\
             SET extra_float_digits = '3';\nSET bytea_output = 'hex';\n\
             SET standard_conforming_strings = 'on';\n"
        );
    }
}
