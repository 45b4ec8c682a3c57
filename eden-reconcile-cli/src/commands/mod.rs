//! One module per subcommand (its `run`: load, call the library, print, pick the exit
//! code), and what they share: loading the config, connecting, writing options.

mod check;
mod conflicts;
mod fix;
mod init;
mod undo;
mod validate_config;

use std::process::ExitCode;

use anyhow::{Result, bail};
use eden_consistency::apply::ApplyOptions;
use eden_consistency::check::Checker;
use eden_consistency::config::Config;
use eden_consistency::connect::{self, ConnectOptions, Region};
use eden_consistency::ident::TableName;

use crate::cli::{Cli, Command, DbArg, GlobalOpts, ModeArg};

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
    if let Some(target) = crate::cache::redis_target(&cli)? {
        return crate::cache::run(cli, target).await;
    }
    let config = load_config(&cli.global)?;
    let format = cli.global.format;
    match cli.command {
        Command::Init(args) => init::run(&config, &args, format).await,
        Command::Conflicts(args) => conflicts::run(config, &args, format).await,
        Command::Check(args) => check::run(config, &args, format).await,
        Command::ValidateConfig(args) => validate_config::run(config, &args, format).await,
        Command::Fix(args) => fix::run(config, &args, format).await,
        Command::Undo(args) => undo::run(config, &args, format).await,
    }
}

/// The config file (from `--config` or `$EDEN_RECONCILE_CONFIG`) plus `--region` flags.
fn load_config(global: &GlobalOpts) -> Result<Config> {
    let mut config = match crate::cache::postgres_config_file(global)? {
        Some(path) => Config::load(&path)?,
        None => Config::default(),
    };
    for spec in &global.regions {
        config.apply_region_flag(spec)?;
    }
    Ok(config)
}

/// Connects to every region of `config` for `--db`.
async fn connect(config: &Config, db: &DbArg) -> Result<Vec<Region>> {
    Ok(connect::connect_all(config, db.db.as_deref(), &ConnectOptions::default()).await?)
}

/// Connects a [`Checker`] to every region; the report names `--db`, else the first
/// region's database.
async fn checker(config: Config, db: &DbArg) -> Result<Checker> {
    let regions = connect(&config, db).await?;
    let database = db
        .db
        .clone()
        .or_else(|| regions.first().map(|r| r.dbname.clone()))
        .unwrap_or_default();
    Ok(Checker::new(config, database, regions))
}

impl From<ModeArg> for eden_consistency::source::Mode {
    fn from(m: ModeArg) -> Self {
        use eden_consistency::source::Mode;
        match m {
            ModeArg::Auto => Mode::Auto,
            ModeArg::Pushdown => Mode::Pushdown,
            ModeArg::Stream => Mode::Stream,
        }
    }
}

/// Writing options shared by `fix` and `undo`.
fn apply_options(
    config: &Config,
    db: &DbArg,
    batch_size: Option<usize>,
    max_rps: Option<u64>,
    no_replicate: bool,
) -> Result<ApplyOptions> {
    let mut opts = ApplyOptions {
        conflicts_schema: conflicts_table(config, db).schema,
        no_replicate,
        progress: crate::print::progress::Bars::for_stderr(),
        ..ApplyOptions::default()
    };
    if let Some(n) = batch_size {
        if n == 0 {
            bail!("--batch-size must be at least 1");
        }
        opts.batch_size = n;
    }
    if let Some(n) = max_rps {
        if n == 0 {
            bail!("--max-rows-per-second must be at least 1");
        }
        opts.max_rows_per_second = Some(n as f64);
    }
    Ok(opts)
}

/// Where `replication_conflicts` lives for this database.
fn conflicts_table(config: &Config, db: &DbArg) -> TableName {
    let schema = db
        .db
        .as_deref()
        .and_then(|d| config.node_group(d))
        .and_then(|g| g.conflicts_schema.as_deref());
    eden_consistency::conflicts::table_name(schema)
}
