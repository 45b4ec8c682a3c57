//! The command line (see `docs/commands.md`): global options accepted before or after the subcommand.

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
  eden-reconcile conflicts import --db eden_vault
  eden-reconcile init --db eden_vault
  eden-reconcile --config redis-multi-region.yaml check --db eden_cache
  eden-reconcile fix --db eden_cache --from us-east-1 \\
      --region us-east-1=redis://redis-east:6379 --region us-west-2=rediss://redis-west:6380
  eden-reconcile status --db eden_vault --metrics-push http://pushgateway:9091
  eden-reconcile completions bash > /usr/share/bash-completion/completions/eden-reconcile

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
    /// key=value conninfo). Repeatable, before or after the subcommand (every one counts, in
    /// command-line order); regions given only here are ordered after the config's.
    #[arg(long = "region", id = REGION_ARG, value_name = "NAME=CONNINFO")]
    pub regions: Vec<String>,
    /// Output format: human (default) or json (on stdout; progress and logs go to stderr).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    // "[redacted]" below is the text shown, not a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    /// Print the values of the columns a table's `redact_columns` masks (they are shown as
    /// "[redacted]" otherwise).
    #[arg(long, global = true)]
    pub show_values: bool,
    /// More log output on stderr (-v info, -vv debug); EDEN_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Write this run's Prometheus metrics to PATH when it ends, whatever the outcome
    /// (textfile collector format, replaced atomically).
    #[arg(long, global = true, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Push this run's metrics to the Prometheus Pushgateway at URL when it ends
    /// (PUT URL/metrics/job/eden_reconcile/database/NAME/command/CMD).
    #[arg(long, global = true, value_name = "URL")]
    pub metrics_push: Option<String>,
    /// fix, undo and check --record: when another run holds the database's lock, wait up to
    /// DURATION (60s, 5m, 1h) for it instead of exiting 2 at once.
    #[arg(long, global = true, value_name = "DURATION")]
    pub wait_lock: Option<String>,
}

/// The id of `--region`, defined on the top-level command and on every subcommand.
const REGION_ARG: &str = "regions";

/// Parses the command line. `--region` is repeatable before and after the subcommand, and
/// every occurrence counts: clap's `global = true` keeps only the values given at the deepest
/// level, so the option is defined on every (sub)command instead and the values of all levels
/// are joined in command-line order.
pub fn parse() -> Result<Cli, clap::Error> {
    parse_from(std::env::args_os())
}

/// [`parse`] over the given arguments (the first is the program name).
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    use clap::FromArgMatches;
    let matches = command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    let mut regions = Vec::new();
    let mut level = Some(&matches);
    while let Some(m) = level {
        if let Ok(Some(values)) = m.try_get_many::<String>(REGION_ARG) {
            regions.extend(values.cloned());
        }
        level = m.subcommand().map(|(_, sub)| sub);
    }
    cli.global.regions = regions;
    Ok(cli)
}

/// The clap command, with `--region` added to every subcommand at every depth.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    fn add_region(cmd: clap::Command) -> clap::Command {
        let region = clap::Arg::new(REGION_ARG)
            .long("region")
            .value_name("NAME=CONNINFO")
            .action(clap::ArgAction::Append)
            .help("Define a region or override its connection: NAME=CONNINFO (repeatable)");
        cmd.mut_subcommands(|sub| {
            let sub = if sub.get_arguments().any(|a| a.get_id() == REGION_ARG) {
                sub
            } else {
                sub.arg(region.clone())
            };
            add_region(sub)
        })
    }
    add_region(Cli::command())
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
    /// List rows of replication_conflicts, newest first, from every region (or import the
    /// replication engine's own conflicts with `conflicts import`).
    ///
    /// Example: eden-reconcile conflicts --db eden_vault --since 24h --unresolved
    #[command(
        after_help = "Examples:\n  eden-reconcile conflicts --db eden_vault --in us-east-1 --since 24h --unresolved --limit 20\n  eden-reconcile conflicts import --db eden_vault --since 24h"
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
    Init(InitArgs),
    /// Tell whether replication between the regions is healthy: subscriptions, slots, lag,
    /// conflicts.
    ///
    /// Example: eden-reconcile status --db eden_vault
    #[command(
        after_help = "Example:\n  eden-reconcile --config postgresql-multi-region.yaml status --db eden_vault --metrics-file /var/lib/node_exporter/eden_status.prom\n\nExit codes: 0 healthy; 1 problems found (each printed as a sentence); 2 usage or config error."
    )]
    Status(DbArg),
    /// Restore the rows a fix run overwrote, deleted or inserted, from the archive.
    ///
    /// Example: eden-reconcile undo --db eden_vault --run 20261127T051500Z-3f2a
    #[command(
        after_help = "Example:\n  eden-reconcile undo --db eden_vault --run <RUN_ID> --dry-run"
    )]
    Undo(UndoArgs),
    /// Combine the JSON reports of the shards of one check --shard I/N run into one report.
    ///
    /// Example: eden-reconcile merge-reports --format json shard-0.json shard-1.json shard-2.json
    #[command(
        after_help = "Example:\n  eden-reconcile merge-reports --format json /reports/shard-*.json > /reports/check.json\n\nRefuses (exit 2) reports that do not tile one run: a missing or repeated shard, different N,\ndatabases or regions, or key ranges that do not fit together. Otherwise exits as the\nunsharded check would: 0 consistent, 1 differences, 2 a table could not be checked."
    )]
    MergeReports(MergeReportsArgs),
    /// Check the config file completely, including custom expressions against the live schema.
    ///
    /// Example: eden-reconcile validate-config --config postgresql-multi-region.yaml
    #[command(
        after_help = "Example:\n  eden-reconcile --config postgresql-multi-region.yaml validate-config --db eden_vault"
    )]
    ValidateConfig(ValidateArgs),
    /// Print a shell completion script on stdout (bash, zsh or fish).
    ///
    /// Example: eden-reconcile completions bash > /etc/bash_completion.d/eden-reconcile
    #[command(
        after_help = "Examples:\n  eden-reconcile completions bash > /usr/share/bash-completion/completions/eden-reconcile\n  eden-reconcile completions zsh > /usr/share/zsh/vendor-completions/_eden-reconcile\n  eden-reconcile completions fish > /usr/share/fish/vendor_completions.d/eden-reconcile.fish"
    )]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout, or write one page per command into a directory.
    ///
    /// Example: eden-reconcile man --out-dir /usr/share/man/man1
    #[command(
        after_help = "Examples:\n  eden-reconcile man | man -l -\n  eden-reconcile man --out-dir target/man   # eden-reconcile.1, eden-reconcile-check.1, ..."
    )]
    Man(ManArgs),
}

/// Shells with completion scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    /// GNU bash.
    Bash,
    /// Z shell.
    Zsh,
    /// fish.
    Fish,
}

/// `completions` options.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `man` options.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write eden-reconcile.1 and one eden-reconcile-COMMAND.1 per command into DIR
    /// instead of printing the main page.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

/// Prints the completion script for `shell` (from the same definitions as the parser).
pub fn write_completions(shell: Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_string();
    match shell {
        Shell::Bash => {
            // clap_complete's bash script names the states of a hyphenated binary's
            // subcommands two ways (`eden__reconcile__subcmd__x` where it walks the words,
            // `eden__subcmd__reconcile__subcmd__x` where it completes), so nothing after a
            // subcommand would complete; use the first spelling everywhere.
            let mut text = Vec::new();
            clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, name, &mut text);
            let text = String::from_utf8_lossy(&text).replace(
                "eden__subcmd__reconcile__subcmd__",
                "eden__reconcile__subcmd__",
            );
            let _ = out.write_all(text.as_bytes());
        }
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, name, out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, name, out),
    }
}

/// Prints the main manual page, or writes every page into `dir`.
pub fn write_man(
    dir: Option<&std::path::Path>,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(cmd, dir)
        }
        None => clap_mangen::Man::new(cmd).render(out),
    }
}

/// `init` options.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Also add missing columns and indexes to an existing replication_conflicts that is in a
    /// replication set (pglogical) or publication; without it such a table is left unchanged
    /// and init says what it lacks.
    #[arg(long)]
    pub upgrade: bool,
}

/// `--db NAME`.
#[derive(Debug, Args)]
pub struct DbArg {
    /// The database to work on (its node group in the config supplies the table rules). A
    /// region URL that names a database overrides it for that region.
    #[arg(long, value_name = "NAME")]
    pub db: Option<String>,
    /// Run without the config's table rules (every table follows global.conflict_resolution).
    /// Without it, a config with node groups requires --db to name one of their databases.
    #[arg(long)]
    pub no_rules: bool,
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
    /// Compare chunk summaries level by level, a tree of this fan-out (2 or more), asking
    /// each region only for the nodes under differing ones: fewer bytes at low drift over a
    /// slow link, one more query per level (default: all chunk summaries in one pass).
    #[arg(long, value_name = "FANOUT", value_parser = clap::value_parser!(u16).range(2..=1024))]
    pub descent: Option<u16>,
    /// Re-hash only the chunks that may have changed since the last pass (found through
    /// the table's tracking column and per-chunk row counts), reusing the digests kept in
    /// the state file; a full pass when there is no usable state, and every --full-every runs.
    #[arg(long)]
    pub incremental: bool,
    /// With --incremental: a full pass at least every N runs of a table (default 7; 1 makes
    /// this run a full pass that refreshes the state).
    #[arg(long, value_name = "N", requires = "incremental")]
    pub full_every: Option<u32>,
    /// With --incremental: the state file (default $EDEN_RECONCILE_STATE, else
    /// $XDG_STATE_HOME/eden-reconcile/check-state.json, else
    /// ~/.local/state/eden-reconcile/check-state.json).
    #[arg(long, value_name = "PATH", requires = "incremental")]
    pub state: Option<PathBuf>,
    /// With --incremental: rows whose tracking value is up to DURATION older than the last
    /// pass's snapshot are looked at again (default 15m): more than the longest write
    /// transaction and the writers' clock skew.
    #[arg(long, value_name = "DURATION", requires = "incremental")]
    pub change_margin: Option<String>,
    /// Check only shard I of N (I from 0, e.g. $JOB_COMPLETION_INDEX/4): small tables whole,
    /// large ones by key range; combine the shards' JSON reports with merge-reports.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// With --shard: tables with fewer rows than this (catalog estimate) go whole to one
    /// shard instead of being split by key range (default 100000).
    #[arg(long, value_name = "ROWS", requires = "shard")]
    pub shard_split_rows: Option<u64>,
    #[command(flatten)]
    pub cache: crate::cache::CacheCheckArgs,
}

/// `merge-reports` options.
#[derive(Debug, Args)]
pub struct MergeReportsArgs {
    /// The JSON reports of check --shard I/N --format json, one per shard.
    #[arg(value_name = "FILE", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
}

/// `conflicts` options: list records, or act on them with a sub-subcommand.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ConflictsArgs {
    /// Act on records instead of listing them.
    #[command(subcommand)]
    pub action: Option<ConflictsAction>,
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

/// What `conflicts` can do besides listing.
#[derive(Debug, Subcommand)]
pub enum ConflictsAction {
    /// Acknowledge records by hand: set resolved_at (decided_by manual), keep a note.
    ///
    /// Example: eden-reconcile conflicts resolve --db eden_vault --id 12 --id 13 --note "checked with the owner"
    #[command(
        after_help = "Example:\n  eden-reconcile conflicts resolve --db eden_vault --in us-east-1 --id 12 --id 13 --note \"rotated by hand\""
    )]
    Resolve(ResolveArgs),
    /// Copy the conflicts the replication engine resolved itself (pglogical's log lines,
    /// Spock's spock.resolutions, PostgreSQL 18's conflict log lines) into each region's
    /// replication_conflicts; importing again adds nothing already imported.
    ///
    /// Example: eden-reconcile conflicts import --db eden_vault --since 24h
    #[command(
        after_help = "Examples:\n  eden-reconcile conflicts import --db eden_vault\n  eden-reconcile conflicts import --db eden_vault --in us-east-1 --since 24h\n\nThe server log is read through SQL (pg_ls_logdir, pg_read_binary_file): it needs\nlogging_collector = on and a role with pg_monitor and pg_read_server_files (or superuser)."
    )]
    Import(ImportArgs),
}

/// `conflicts import` options.
#[derive(Debug, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// Only this region (default: every region).
    #[arg(long = "in", value_name = "REGION")]
    pub in_region: Option<String>,
    /// Only conflicts since TIME: RFC 3339 (2026-11-27T00:00:00Z) or a duration (24h, 90m, 7d).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
}

/// `conflicts resolve` options.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    pub db: DbArg,
    /// The record's id (from `conflicts`). Repeatable; several ids may follow one --id.
    #[arg(long = "id", value_name = "N", required = true, num_args = 1..)]
    pub ids: Vec<i64>,
    /// Only the records held in this region (ids are numbered per region).
    #[arg(long = "in", value_name = "REGION")]
    pub in_region: Option<String>,
    /// Why: kept in the record's details as "note".
    #[arg(long, value_name = "TEXT")]
    pub note: Option<String>,
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
    /// Apply decisions that only the tie order made for a rule ordered by commit timestamps
    /// (track_commit_timestamp off); without it, with a config, they are left unresolved.
    #[arg(long)]
    pub allow_tiebreak: bool,
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
