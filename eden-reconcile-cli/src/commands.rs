//! One function per subcommand: load, call the library, print, pick the exit code.

use std::process::ExitCode;

use anyhow::Result;
use eden_consistency::config::Config;

use crate::cli::{Cli, Command, GlobalOpts};

/// What a command found, for the exit code.
pub enum Outcome {
    /// All consistent / all done: exit 0.
    Clean,
    /// Differences found or conflicts left unresolved: exit 1.
    Differences,
}

impl Outcome {
    /// The contract's exit code.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Outcome::Clean => ExitCode::SUCCESS,
            Outcome::Differences => ExitCode::from(1),
        }
    }
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<Outcome> {
    let config = load_config(&cli.global)?;
    match cli.command {
        Command::Check(_) | Command::Fix(_) | Command::Init(_) | Command::Conflicts(_) | Command::Undo(_) | Command::ValidateConfig(_) => {
            let _ = config;
            anyhow::bail!("this command is not available yet")
        }
    }
}

/// The config file (from `--config` or `$EDEN_RECONCILE_CONFIG`) plus `--region` flags.
fn load_config(global: &GlobalOpts) -> Result<Config> {
    let mut config = match &global.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    for spec in &global.regions {
        config.apply_region_flag(spec)?;
    }
    Ok(config)
}
