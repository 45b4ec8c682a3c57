//! The command line (CONTRACT §2): global options accepted before or after the subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

const AFTER_HELP: &str = "\
Examples:
  eden-reconcile --config postgresql-multi-region.yaml check --db eden_vault
  eden-reconcile check --db eden_vault \\
      --region us-east-1=postgres://pg-east/eden_vault \\
      --region us-west-2=postgres://pg-west/eden_vault
  eden-reconcile fix --db eden_vault --table vault_secrets --dry-run
  eden-reconcile conflicts --db eden_vault --since 24h --unresolved
  eden-reconcile init --db eden_vault
  eden-reconcile --config redis-multi-region.yaml check --db eden_cache
  eden-reconcile fix --db eden_cache --from us-east-1 \\
      --region us-east-1=redis://redis-east:6379 --region us-west-2=rediss://redis-west:6380

Exit codes: 0 all consistent / all done; 1 differences found or conflicts left unresolved;
            2 usage, config, connection or any other error.
Connections follow libpq habits: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGSSLMODE, ~/.pgpass.";

/// Keep the regions of an active-active PostgreSQL deployment consistent.
#[derive(Debug, Parser)]
#[command(
    name = "eden-reconcile",
    version,
    about = "Check, fix and record divergence between the regions of an active-active PostgreSQL deployment.",
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Options accepted before or after the subcommand.
    #[command(flatten)]
    pub global: GlobalOpts,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// The multi-region config: postgresql-multi-region.yaml and/or redis-multi-region.yaml
    /// (repeatable; each file is recognised by its content).
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "EDEN_RECONCILE_CONFIG"
    )]
    pub config: Vec<PathBuf>,
    /// Define a region or override its connection: NAME=CONNINFO (a postgres:// URL or
    /// key=value conninfo). Repeatable; regions given only here are ordered after the config's.
    #[arg(long = "region", global = true, value_name = "NAME=CONNINFO")]
    pub regions: Vec<String>,
    /// Output format: human (default) or json (on stdout; progress and logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// More log output on stderr (-v info, -vv debug); EDEN_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable summary for people.
    Human,
    /// The contract's JSON, on stdout.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare every replicated table (or the named ones) across all regions.
    ///
    /// Example: eden-reconcile check --db eden_vault --table vault_secrets --format json
    #[command(
        after_help = "Example:\n  eden-reconcile --config postgresql-multi-region.yaml check --db eden_vault --table vault_secrets"
    )]
    Check(CheckArgs),
    /// List rows of replication_conflicts, newest first, from every region.
    ///
    /// Example: eden-reconcile conflicts --db eden_vault --since 24h --unresolved
    #[command(
        after_help = "Example:\n  eden-reconcile conflicts --db eden_vault --in us-east-1 --since 24h --unresolved --limit 20"
    )]
    Conflicts(ConflictsArgs),
    /// Resolve every difference by the table's rule and write the winners everywhere (nothing lost).
    ///
    /// Example: eden-reconcile fix --db eden_vault --dry-run
    #[command(
        after_help = "Example:\n  eden-reconcile fix --db eden_vault --table vault_secrets --dry-run"
    )]
    Fix(FixArgs),
    /// Create replication_conflicts in every region's database (idempotent).
    ///
    /// Example: eden-reconcile init --db eden_vault
    #[command(
        after_help = "Example:\n  eden-reconcile --config postgresql-multi-region.yaml init --db eden_vault"
    )]
    Init(DbArg),
    /// Restore the rows a fix run overwrote, deleted or inserted, from the archive.
    ///
    /// Example: eden-reconcile undo --db eden_vault --run 20261127T051500Z-3f2a
    #[command(
        after_help = "Example:\n  eden-reconcile undo --db eden_vault --run <RUN_ID> --dry-run"
    )]
    Undo(UndoArgs),
    /// Check the config file completely, including custom expressions against the live schema.
    ///
    /// Example: eden-reconcile validate-config --config postgresql-multi-region.yaml
    #[command(
        after_help = "Example:\n  eden-reconcile --config postgresql-multi-region.yaml validate-config --db eden_vault"
    )]
    ValidateConfig(ValidateArgs),
}

/// `--db NAME`.
#[derive(Debug, Args)]
pub struct DbArg {
    /// The database to work on (its node group in the config supplies the table rules). A
    /// region URL that names a database overrides it for that region.
    #[arg(long, value_name = "NAME")]
    pub db: Option<String>,
}

/// How digests are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Choose per table.
    Auto,
    /// Chunk digests computed inside PostgreSQL; only digests cross the network.
    Pushdown,
    /// Rows streamed in binary and hashed here, in parallel.
    Stream,
}

/// Which tables to compare and how digests are computed (shared by `check` and `fix`).
#[derive(Debug, Args)]
pub struct Selection {
    /// Only this table (schema-qualified or not). Repeatable.
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,
    /// Leave this table out. Repeatable.
    #[arg(long = "exclude-table", value_name = "TABLE")]
    pub exclude_tables: Vec<String>,
    /// How digests are computed.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
}

/// `check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub select: Selection,
    /// Compare only rows matching this boolean SQL expression (checked before use).
    #[arg(long = "where", value_name = "EXPR")]
    pub where_clause: Option<String>,
    /// List at most N differences per table (the count is always exact).
    #[arg(long, value_name = "N")]
    pub max_differences: Option<usize>,
    /// Tables and chunks compared in parallel (bounded connections per region).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Record each difference as an unresolved row of replication_conflicts in every region involved.
    #[arg(long)]
    pub record: bool,
    #[command(flatten)]
    pub cache: crate::cache::CacheCheckArgs,
}

/// `conflicts` options.
#[derive(Debug, Args)]
pub struct ConflictsArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Only records held in this region.
    #[arg(long = "in", value_name = "REGION")]
    pub in_region: Option<String>,
    /// Only this table.
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    /// Only records since TIME: RFC 3339 (2026-11-27T00:00:00Z) or a duration (24h, 90m, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only records not yet resolved.
    #[arg(long)]
    pub unresolved: bool,
    /// At most N records.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

/// `fix` options.
#[derive(Debug, Args)]
pub struct FixArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub select: Selection,
    /// Print the plan and change nothing in any database.
    #[arg(long)]
    pub dry_run: bool,
    /// Write a psql-runnable SQL script per region to FILE instead of applying.
    #[arg(long, value_name = "FILE")]
    pub sql_out: Option<PathBuf>,
    /// Rows per transaction.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
    /// Throttle writes to at most N rows per second per region.
    #[arg(long, value_name = "N")]
    pub max_rows_per_second: Option<u64>,
    /// Use a replication origin so origin-filtering replication does not echo the repair.
    #[arg(long)]
    pub no_replicate: bool,
    #[command(flatten)]
    pub cache: crate::cache::CacheFixArgs,
}

/// `undo` options.
#[derive(Debug, Args)]
pub struct UndoArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The run to undo (run_id from the fix report or replication_conflicts).
    #[arg(long = "run", value_name = "RUN_ID")]
    pub run: String,
    /// Print what would be restored and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `validate-config` options.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Only check the file; do not connect to the regions.
    #[arg(long)]
    pub offline: bool,
}

/// Usage errors print as one line and exit 2; `--help` and `--version` print and exit 0.
pub fn report_parse_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("invalid command line")
                .trim_start_matches("error: ");
            eprintln!("eden-reconcile: {first} (see 'eden-reconcile --help')");
            ExitCode::from(2)
        }
    }
}
