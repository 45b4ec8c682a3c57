//! `completions` and `man`: shell habits, generated from the command-line definitions.

use std::io::Write;

use anyhow::Result;

use super::Outcome;
use crate::cli::{CompletionsArgs, ManArgs};

/// `completions SHELL`: the completion script on stdout.
pub fn completions(args: &CompletionsArgs) -> Result<Outcome> {
    let mut text = Vec::new();
    crate::cli::write_completions(args.shell, &mut text);
    print_bytes(&text)
}

/// `man [--out-dir DIR]`: the main page on stdout, or every page into DIR.
pub fn man(args: &ManArgs) -> Result<Outcome> {
    let mut text = Vec::new();
    crate::cli::write_man(args.out_dir.as_deref(), &mut text).map_err(|e| match &args.out_dir {
        Some(d) => anyhow::anyhow!("{}: cannot write the manual pages: {e}", d.display()),
        None => anyhow::anyhow!("cannot render the manual page: {e}"),
    })?;
    print_bytes(&text)
}

/// Writes `bytes` to stdout; a reader that stops early (`| head`) is not an error.
fn print_bytes(bytes: &[u8]) -> Result<Outcome> {
    let mut out = crate::output::stdout();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(Outcome::Clean),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(Outcome::Clean),
        Err(e) => Err(anyhow::anyhow!("cannot write to stdout: {e}")),
    }
}
