//! One module per subcommand (its `run`: load, call the library, print, pick the exit
//! code), and what they share: loading the config, connecting, writing options.

mod check;
mod conflicts;
mod fix;
mod import;
mod init;
mod merge_reports;
mod shell;
mod status;
mod undo;
mod validate_config;

use anyhow::{Result, bail};
use eden_consistency::ApplyOptions;
use eden_consistency::Checker;
use eden_consistency::Config;
use eden_consistency::TableName;
use eden_consistency::lock::DbLock;
use eden_consistency::metrics::RunMetrics;
use eden_consistency::redact::Redactor;
use eden_consistency::{ConnectOptions, Region};

use crate::cli::{Cli, Command, ConflictsAction, DbArg, GlobalOpts, ModeArg};
use crate::summary::Summary;

/// What a command found, for the exit code.
pub enum Outcome {
    /// All consistent / all done: exit 0.
    Clean,
    /// Differences found or conflicts left unresolved: exit 1.
    Differences,
}

impl Outcome {
    /// The contract's exit code.
    pub fn code(&self) -> i32 {
        match self {
            Outcome::Clean => 0,
            Outcome::Differences => 1,
        }
    }
}

/// Runs the parsed command line; what it finds goes into `metrics` too.
pub async fn run(cli: Cli, metrics: &mut RunMetrics, summary: &mut Summary) -> Result<Outcome> {
    // Shell helpers need no config or database.
    match &cli.command {
        Command::Completions(args) => return shell::completions(args),
        Command::Man(args) => return shell::man(args),
        Command::MergeReports(args) => return merge_reports::run(args, cli.global.format),
        _ => {}
    }
    if let Some(target) = crate::cache::redis_target(&cli)? {
        return crate::cache::run(cli, target, metrics).await;
    }
    let config = load_config(&cli.global)?;
    let format = cli.global.format;
    let g = &cli.global;
    match cli.command {
        Command::Init(args) => init::run(&config, &args, format).await,
        Command::Conflicts(args) => match &args.action {
            Some(ConflictsAction::Resolve(r)) => conflicts::resolve(config, r, format).await,
            Some(ConflictsAction::Import(i)) => import::run(config, i, format).await,
            None => {
                let r = redactor(&config, &args.db, g.show_values);
                conflicts::run(config, &args, format, &r, summary).await
            }
        },
        Command::Check(args) => {
            let r = redactor(&config, &args.db, g.show_values);
            check::run(config, &args, format, g, metrics, &r, summary).await
        }
        Command::ValidateConfig(args) => validate_config::run(config, &args, format).await,
        Command::Fix(args) => {
            let r = redactor(&config, &args.db, g.show_values);
            fix::run(config, &args, format, g, metrics, &r, summary).await
        }
        Command::Undo(args) => {
            let r = redactor(&config, &args.db, g.show_values);
            undo::run(config, &args, format, g, &r, summary).await
        }
        Command::Status(args) => status::run(&config, &args, format, metrics).await,
        Command::Completions(_) | Command::Man(_) | Command::MergeReports(_) => Ok(Outcome::Clean),
    }
}

/// The config file (from `--config` or `$EDEN_RECONCILE_CONFIG`) plus `--region` flags.
fn load_config(global: &GlobalOpts) -> Result<Config> {
    let mut config = match crate::cache::postgres_config_file(global)? {
        Some(path) => Config::load(&path)?,
        None => Config::default(),
    };
    config.apply_region_flags(&global.regions)?;
    Ok(config)
}

/// Connects to every region of `config` for `--db`.
///
/// With a config that has node groups, `--db` (or, without it, the database every region
/// connected to) must name one of them, unless `--no-rules`: otherwise every table rule
/// would silently be dropped.
async fn connect(config: &Config, db: &DbArg) -> Result<Vec<Region>> {
    if db.db.is_some() && !db.no_rules {
        config.require_node_group(db.db.as_deref())?;
    }
    let regions =
        eden_consistency::connect_all(config, db.db.as_deref(), &ConnectOptions::default()).await?;
    if db.db.is_none() && !db.no_rules {
        let first = regions.first().map(|r| r.dbname.as_str());
        let common = first.filter(|f| regions.iter().all(|r| r.dbname == *f));
        config.require_node_group(common)?;
    }
    Ok(regions)
}

/// Connects a [`Checker`] to every region. Table rules come from the node group of `--db`,
/// else of the regions' database; the report names what the regions connected to. With
/// `lock_for` (a writing run), takes the database's run lock first.
async fn checker(
    mut config: Config,
    db: &DbArg,
    lock_for: Option<(&GlobalOpts, &str)>,
) -> Result<(Checker, Option<DbLock>)> {
    if db.no_rules {
        config.drop_table_rules();
    }
    let regions = connect(&config, db).await?;
    // Connection problems first (they are more specific); then a comparison needs two.
    config.require_two_regions()?;
    let lock = match lock_for {
        Some((g, command)) => Some(crate::unattended::take_lock(g, &regions, command).await?),
        None => None,
    };
    let database = db
        .db
        .clone()
        .unwrap_or_else(|| eden_consistency::describe_databases(&regions));
    Ok((Checker::new(config, database, regions), lock))
}

impl From<ModeArg> for eden_consistency::Mode {
    fn from(m: ModeArg) -> Self {
        use eden_consistency::Mode;
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

/// The columns masked in outputs (`redact_columns`), or none with `--show-values`.
fn redactor(config: &Config, db: &DbArg, show_values: bool) -> Redactor {
    if show_values {
        Redactor::none()
    } else {
        Redactor::from_config(config, db.db.as_deref())
    }
}
