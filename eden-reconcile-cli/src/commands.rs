//! One function per subcommand: load, call the library, print, pick the exit code.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Result, bail};
use eden_consistency::apply::{ApplyOptions, FixRun, run_fix};
use eden_consistency::check::{CheckOptions, Checker};
use eden_consistency::config::Config;
use eden_consistency::conflicts;
use eden_consistency::connect::{self, ConnectOptions, Region};
use eden_consistency::ident::TableName;
use eden_consistency::undo::{UndoOptions, undo_run};

use crate::cli::{
    CheckArgs, Cli, Command, ConflictsArgs, DbArg, FixArgs, Format, GlobalOpts, ModeArg, UndoArgs,
    ValidateArgs,
};

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
        Command::Init(args) => init(&config, &args, format).await,
        Command::Conflicts(args) => list_conflicts(config, &args, format).await,
        Command::Check(args) => check(config, &args, format).await,
        Command::ValidateConfig(args) => validate_config(config, &args, format).await,
        Command::Fix(args) => fix(config, &args, format).await,
        Command::Undo(args) => undo(config, &args, format).await,
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

/// True when progress may be drawn on stderr.
pub(crate) fn stderr_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// `check`: compare tables across regions; exit 1 when anything is not consistent.
async fn check(config: Config, args: &CheckArgs, format: Format) -> Result<Outcome> {
    let checker = checker(config, &args.db).await?;
    let opts = CheckOptions {
        tables: args.select.tables.clone(),
        exclude_tables: args.select.exclude_tables.clone(),
        filter: args.where_clause.clone(),
        max_differences: args.max_differences,
        jobs: args.jobs.unwrap_or(1).max(1),
        mode: args.select.mode.into(),
        record: args.record,
        progress: stderr_is_terminal(),
        ..CheckOptions::default()
    };
    let report = checker.run(&opts).await?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report.to_json())?)?,
        Format::Human => {
            use std::io::IsTerminal;
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            report.print_human(&mut out, color)?;
        }
    }
    drop(out);
    // The report is printed in full; a table that could not be checked also makes the run
    // an error (exit 2), since its regions were not verified.
    if let Some(t) = report.first_error() {
        bail!(
            "table {}: {}",
            t.table,
            t.message.as_deref().unwrap_or("could not be checked")
        );
    }
    Ok(if report.consistent {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
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
        progress: stderr_is_terminal(),
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

/// `fix`: check, resolve, then print the plan (`--dry-run`), write scripts (`--sql-out`) or
/// apply and re-check. Exit 0 only when every region agrees afterwards.
async fn fix(config: Config, args: &FixArgs, format: Format) -> Result<Outcome> {
    let apply = apply_options(
        &config,
        &args.db,
        args.batch_size,
        args.max_rows_per_second,
        args.no_replicate,
    )?;
    let checker = checker(config, &args.db).await?;
    let check = CheckOptions {
        tables: args.select.tables.clone(),
        exclude_tables: args.select.exclude_tables.clone(),
        mode: args.select.mode.into(),
        progress: stderr_is_terminal(),
        ..CheckOptions::default()
    };
    let run = FixRun {
        dry_run: args.dry_run,
        sql_out: args.sql_out.clone(),
        apply,
        ..FixRun::default()
    };
    let report = run_fix(&checker, &check, &run).await?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Human => report.print_human(&mut out)?,
    }
    drop(out);
    let errors: Vec<&String> = report.tables.iter().flat_map(|t| &t.errors).collect();
    if let Some(first) = errors.first() {
        let more = if errors.len() > 1 {
            format!(
                " (and {} more failed batch(es), see the report)",
                errors.len() - 1
            )
        } else {
            String::new()
        };
        bail!("{first}; that batch was rolled back, nothing was lost{more}");
    }
    Ok(if report.exit_code() == 0 {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
}

/// `undo --run ID`: restore what a fix run changed, from the archive.
async fn undo(config: Config, args: &UndoArgs, format: Format) -> Result<Outcome> {
    let apply = apply_options(&config, &args.db, None, None, false)?;
    let regions = connect(&config, &args.db).await?;
    let opts = UndoOptions {
        run_id: args.run.clone(),
        dry_run: args.dry_run,
        apply,
    };
    let report = undo_run(&regions, &opts).await?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
        Format::Human => report.print_human(&mut out)?,
    }
    drop(out);
    if let Some(first) = report.errors.first() {
        bail!(
            "undo of run {} could not restore everything: {first}",
            args.run
        );
    }
    Ok(if report.exit_code() == 0 {
        Outcome::Clean
    } else {
        Outcome::Differences
    })
}

/// Where `replication_conflicts` lives for this database.
fn conflicts_table(config: &Config, db: &DbArg) -> TableName {
    let schema = db
        .db
        .as_deref()
        .and_then(|d| config.node_group(d))
        .and_then(|g| g.conflicts_schema.as_deref());
    conflicts::table_name(schema)
}

/// `init`: create `replication_conflicts` in every region.
async fn init(config: &Config, args: &DbArg, format: Format) -> Result<Outcome> {
    let regions = connect(config, args).await?;
    let table = conflicts_table(config, args);
    let mut created = Vec::new();
    for r in &regions {
        let new = conflicts::init(&r.client, &r.name, &table).await?;
        created.push((r, new));
    }
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let regions: Vec<_> = created
                .iter()
                .map(|(r, new)| serde_json::json!({"region": r.name, "database": r.dbname, "table": table.to_string(), "created": new}))
                .collect();
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({"regions": regions}))?
            )?;
        }
        Format::Human => {
            for (r, new) in &created {
                let what = if *new { "created" } else { "already present" };
                writeln!(out, "{:<16} {}  {table}: {what}", r.name, r.dbname)?;
            }
        }
    }
    Ok(Outcome::Clean)
}

/// `conflicts`: list records, newest first, from every region (or `--in` one).
async fn list_conflicts(config: Config, args: &ConflictsArgs, format: Format) -> Result<Outcome> {
    let now = chrono::Utc::now();
    let since = match &args.since {
        Some(text) => Some(conflicts::parse_since(text, now).map_err(anyhow::Error::msg)?),
        None => None,
    };
    // `--in` reads one region only: connect to it alone (the others may be unreachable).
    let regions = match &args.in_region {
        Some(name) => {
            let Some(index) = config.region_index(name) else {
                let known: Vec<&str> = config.regions.iter().map(|r| r.name.as_str()).collect();
                bail!(
                    "--in {name}: no such region (defined: {})",
                    known.join(", ")
                );
            };
            let db = args.db.db.as_deref().unwrap_or("");
            vec![
                connect::connect_region(
                    &config.regions[index],
                    index,
                    db,
                    &ConnectOptions::default(),
                )
                .await?,
            ]
        }
        None => connect(&config, &args.db).await?,
    };
    let table = conflicts_table(&config, &args.db);
    let filter = conflicts::ListFilter {
        table: args.table.clone(),
        since,
        unresolved: args.unresolved,
        limit: args.limit,
    };
    let pairs: Vec<(&str, &tokio_postgres::Client)> = regions
        .iter()
        .map(|r| (r.name.as_str(), &r.client))
        .collect();
    let rows = conflicts::list(&pairs, &table, &filter).await?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&conflicts::to_json(&rows))?
        )?,
        Format::Human => conflicts::print_human(&mut out, &rows, now)?,
    }
    Ok(Outcome::Clean)
}

/// `validate-config`: the file, then (unless `--offline`) every rule against the live schema
/// of every region. Findings go to stdout; exit 2 on errors, 1 on warnings only, else 0.
async fn validate_config(config: Config, args: &ValidateArgs, format: Format) -> Result<Outcome> {
    use eden_consistency::resolve::Registry;
    use eden_consistency::validate::{self, Severity, Validation};

    let registry = Registry::new();
    let file = config
        .file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(no config file)".into());
    let mut results: Vec<(Option<String>, Validation)> =
        vec![(None, validate::validate_offline(&config, &registry))];
    if !args.offline {
        config.validate()?;
        let databases: Vec<String> = match &args.db.db {
            Some(db) => vec![db.clone()],
            None => config
                .node_groups
                .iter()
                .map(|g| g.database.clone())
                .collect(),
        };
        results.clear();
        for db in databases {
            let regions =
                connect::connect_all(&config, Some(&db), &ConnectOptions::default()).await?;
            results.push((
                Some(db.clone()),
                validate::validate_against(&config, &db, &regions, &registry).await?,
            ));
        }
    }
    let findings: Vec<(&Option<String>, &validate::Finding)> = results
        .iter()
        .flat_map(|(db, v)| v.findings.iter().map(move |f| (db, f)))
        .collect();
    let errors: Vec<_> = findings
        .iter()
        .filter(|(_, f)| f.severity == Severity::Error)
        .collect();
    let warnings = findings.len() - errors.len();
    let rules: usize = results.iter().map(|(_, v)| v.rules_checked).sum();
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let dbs: Vec<_> = results
                .iter()
                .map(|(db, v)| serde_json::json!({"database": db, "regions": v.regions, "rules_checked": v.rules_checked, "findings": v.findings}))
                .collect();
            let doc = serde_json::json!({"config": file, "valid": errors.is_empty(), "errors": errors.len(), "warnings": warnings, "databases": dbs});
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Format::Human => {
            for (db, f) in &findings {
                let level = if f.severity == Severity::Error {
                    "error"
                } else {
                    "warning"
                };
                let table = f
                    .table
                    .as_deref()
                    .map(|t| format!("table {t}: "))
                    .unwrap_or_default();
                let db = db.as_deref().map(|d| format!("[{d}] ")).unwrap_or_default();
                writeln!(out, "{level}: {db}{table}{}", f.message)?;
            }
            let scope = if args.offline {
                "file only".to_string()
            } else {
                format!("{} database(s) checked against the regions", results.len())
            };
            writeln!(
                out,
                "{file}: {rules} table rule(s), {} error(s), {warnings} warning(s) ({scope})",
                errors.len()
            )?;
        }
    }
    if let Some((_, first)) = errors.first() {
        let table = first
            .table
            .as_deref()
            .map(|t| format!("table {t}: "))
            .unwrap_or_default();
        let more = if errors.len() > 1 {
            format!(" (and {} more error(s))", errors.len() - 1)
        } else {
            String::new()
        };
        bail!("{file}: {table}{}{more}", first.message);
    }
    Ok(if warnings > 0 {
        Outcome::Differences
    } else {
        Outcome::Clean
    })
}
