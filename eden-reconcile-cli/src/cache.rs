//! `check` and `fix` on a Redis cache (`--db` naming a `databases[].name` of a
//! redis-multi-region.yaml, or `--region NAME=redis://…` flags).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use eden_consistency::Config;
use eden_consistency::metrics::{self, RunMetrics};
use eden_consistency::redis::{
    CacheCheckOptions, CacheChecker, CacheFixOptions, RedisConfig, RedisConnectOptions,
    is_redis_config, is_redis_url,
};

use crate::cli::{Cli, Command, Format, GlobalOpts};
use crate::commands::Outcome;

/// Options of `check` for Redis caches.
#[derive(Debug, Args)]
pub struct CacheCheckArgs {
    /// Redis caches: only keys matching this glob (Redis MATCH syntax). Repeatable.
    #[arg(long = "match", value_name = "GLOB")]
    pub matches: Vec<String>,
    /// Redis caches: re-reads of differing keys, a pause apart, before a difference counts.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub rounds: u32,
    /// Redis caches: pause before each re-read (e.g. 500ms, 2s; default the larger of 1s
    /// and ten times the config's sync_interval_ms).
    #[arg(long, value_name = "DURATION")]
    pub round_pause: Option<String>,
    /// Redis caches: expiries further apart than this differ.
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub ttl_tolerance: String,
    /// Redis caches: read at most N keys per second per region (protects a production cache).
    #[arg(long, value_name = "N")]
    pub max_keys_per_second: Option<u64>,
    /// Redis caches: compute every digest in the client (values cross the network) instead
    /// of in a server-side script.
    #[arg(long)]
    pub client_digests: bool,
    /// Redis caches: time allowed to connect to one server.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub connect_timeout: String,
}

/// Options of `fix` for Redis caches.
#[derive(Debug, Args)]
pub struct CacheFixArgs {
    #[command(flatten)]
    pub check: CacheCheckArgs,
    /// Redis caches: copy this region's version (value and expiry) to the others instead of
    /// deleting the key everywhere.
    #[arg(long, value_name = "REGION")]
    pub from: Option<String>,
    /// Redis caches: where deleted and overwritten keys are archived (JSON lines; default
    /// eden-cache-archive-<run_id>.jsonl in the current folder).
    #[arg(long, value_name = "FILE")]
    pub archive: Option<PathBuf>,
}

/// A run on a Redis cache: its config and database name.
pub struct RedisTarget {
    config: RedisConfig,
    db: String,
}

/// `500ms`, `2s`, `1m`, `1h`, or a plain number of seconds.
fn parse_duration(opt: &str, text: &str) -> Result<Duration> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("{opt} '{text}' is not a duration (e.g. 500ms, 5s, 1m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "sec" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => bail!("{opt} '{text}' is not a duration (e.g. 500ms, 5s, 1m)"),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// The `--db` of a command, if it takes one.
fn db_of(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::Check(a) => a.db.db.as_deref(),
        Command::Fix(a) => a.db.db.as_deref(),
        Command::Conflicts(a) => a.db.db.as_deref(),
        Command::Init(a) => a.db.db.as_deref(),
        Command::Undo(a) => a.db.db.as_deref(),
        Command::ValidateConfig(a) => a.db.db.as_deref(),
        Command::Status(a) => a.db.as_deref(),
        Command::Completions(_) | Command::Man(_) | Command::MergeReports(_) => None,
    }
}

/// The PostgreSQL config file among `--config` files (the first that is not a Redis one).
pub fn postgres_config_file(global: &GlobalOpts) -> Result<Option<PathBuf>> {
    let mut pg = Vec::new();
    for path in &global.config {
        match std::fs::read_to_string(path) {
            Ok(text) if is_redis_config(&text) => {}
            _ => pg.push(path.clone()),
        }
    }
    if pg.len() > 1 {
        bail!(
            "--config is given two PostgreSQL config files ({} and {}); give one per kind",
            pg[0].display(),
            pg[1].display()
        );
    }
    Ok(pg.pop())
}

/// Decides whether the command line is about a Redis cache: `--db` names a database of a
/// Redis config, or every region is a `redis://` URL and no PostgreSQL config is given.
pub fn redis_target(cli: &Cli) -> Result<Option<RedisTarget>> {
    let global = &cli.global;
    let db = db_of(&cli.command);
    let mut redis: Option<(RedisConfig, PathBuf)> = None;
    for path in &global.config {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // the PostgreSQL loader reports unreadable files
        };
        if !is_redis_config(&text) {
            continue;
        }
        if let Some((_, first)) = &redis {
            bail!(
                "--config is given two Redis config files ({} and {}); give one",
                first.display(),
                path.display()
            );
        }
        let mut cfg = RedisConfig::from_yaml_str(&text, &path.display().to_string())?;
        cfg.file = Some(path.clone());
        redis = Some((cfg, path.clone()));
    }
    let pg_file = postgres_config_file(global)?;
    let flags: Vec<(&str, &str)> = global
        .regions
        .iter()
        .filter_map(|s| s.split_once('='))
        .map(|(n, u)| (n.trim(), u.trim()))
        .collect();
    let redis_flags: Vec<&(&str, &str)> = flags.iter().filter(|(_, u)| is_redis_url(u)).collect();
    let in_redis = match (db, &redis) {
        (Some(d), Some((c, _))) => c.database(d).is_some(),
        _ => false,
    };
    let in_pg = match (db, &pg_file) {
        (Some(d), Some(p)) => Config::load(p)
            .map(|c| c.node_group(d).is_some())
            .unwrap_or(false),
        _ => false,
    };
    if in_redis && in_pg {
        let (_, rpath) = redis.as_ref().expect("redis config");
        bail!(
            "--db {} is a database of both {} (PostgreSQL) and {} (Redis); give only the --config of the one you mean",
            db.unwrap_or_default(),
            pg_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            rpath.display()
        );
    }
    let only_redis_regions = !redis_flags.is_empty() && redis_flags.len() == global.regions.len();
    let is_redis = in_redis
        || (!in_pg
            && pg_file.is_none()
            && (redis.is_some() || only_redis_regions)
            && (global.regions.is_empty() || only_redis_regions));
    if !is_redis {
        if let Some((name, _)) = redis_flags.first() {
            bail!(
                "--region {name} is a Redis URL but {} is a PostgreSQL database",
                db.unwrap_or("the database")
            );
        }
        return Ok(None);
    }
    let mut config = redis.map(|(c, _)| c).unwrap_or_default();
    for (name, url) in redis_flags {
        config.apply_region_flag(name, url)?;
    }
    let db = match db {
        Some(d) => d.to_string(),
        None => match config.databases.as_slice() {
            [one] => one.name.clone(),
            [] => "cache".to_string(),
            _ => bail!(
                "the Redis config names several databases; pick one with --db ({})",
                config
                    .databases
                    .iter()
                    .map(|d| d.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    Ok(Some(RedisTarget { config, db }))
}

fn check_options(config: &RedisConfig, a: &CacheCheckArgs) -> Result<CacheCheckOptions> {
    Ok(CacheCheckOptions {
        matches: a.matches.clone(),
        rounds: a.rounds,
        round_pause: match &a.round_pause {
            Some(t) => parse_duration("--round-pause", t)?,
            None => config.round_pause(),
        },
        ttl_tolerance: parse_duration("--ttl-tolerance", &a.ttl_tolerance)?,
        max_keys_per_second: match a.max_keys_per_second {
            Some(0) => bail!("--max-keys-per-second must be at least 1"),
            n => n,
        },
        client_side_only: a.client_digests,
        progress: crate::print::progress::Bars::for_stderr(),
        ..CacheCheckOptions::default()
    })
}

async fn connect(t: &RedisTarget, a: &CacheCheckArgs) -> Result<CacheChecker> {
    let opts = RedisConnectOptions {
        timeout: parse_duration("--connect-timeout", &a.connect_timeout)?,
        ..RedisConnectOptions::default()
    };
    Ok(CacheChecker::connect(&t.config, &t.db, &opts).await?)
}

/// Runs `check` or `fix` on the cache.
pub async fn run(cli: Cli, target: RedisTarget, m: &mut RunMetrics) -> Result<Outcome> {
    let format = cli.global.format;
    m.database = target.db.clone();
    match cli.command {
        Command::Check(args) => {
            let mut opts = check_options(&target.config, &args.cache)?;
            opts.max_differences = args.max_differences;
            let checker = connect(&target, &args.cache).await?;
            let report = checker.check(&opts).await?;
            m.set_consistent(report.consistent);
            let rows: Vec<(&str, u64)> = report
                .key_counts
                .0
                .iter()
                .map(|(r, n)| (r.as_str(), *n))
                .collect();
            m.add_table(
                &report.database,
                report.difference_count,
                report.in_flight_count,
                &rows,
            );
            let mut out = std::io::stdout().lock();
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
                Format::Human => {
                    use std::io::IsTerminal;
                    let color =
                        std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
                    crate::print::cache::check_human(&report, &mut out, color)?;
                }
            }
            Ok(if report.consistent {
                Outcome::Clean
            } else {
                Outcome::Differences
            })
        }
        Command::Fix(args) => {
            let check = check_options(&target.config, &args.cache.check)?;
            let checker = connect(&target, &args.cache.check).await?;
            let lock = if args.dry_run {
                None
            } else {
                let wait = match &cli.global.wait_lock {
                    Some(text) => Some(
                        eden_consistency::lock::parse_duration(text)
                            .map_err(|m| anyhow::anyhow!("--wait-lock: {m}"))?,
                    ),
                    None => None,
                };
                let first = checker
                    .regions
                    .first()
                    .ok_or_else(|| anyhow::anyhow!("no region to hold the run lock in"))?;
                Some(eden_consistency::redis::lock::acquire(first, &target.db, "fix", wait).await?)
            };
            let opts = CacheFixOptions {
                check,
                dry_run: args.dry_run,
                from: args.cache.from.clone(),
                archive: args.cache.archive.clone(),
            };
            let report = checker.fix(&opts).await;
            if let Some(lock) = lock {
                lock.release().await;
            }
            let report = report?;
            m.set_consistent(report.consistent);
            for t in &report.tables {
                let mut by_action = std::collections::BTreeMap::<&str, u64>::new();
                for a in t.actions.iter().filter(|a| a.status == "applied") {
                    *by_action.entry(a.action).or_default() += 1;
                }
                for (action, n) in by_action {
                    m.add(metrics::FIX_ACTIONS, &[&t.table, action], n as f64);
                }
                m.add(metrics::DIFFERENCES, &[&t.table], t.unresolved as f64);
                m.add(metrics::IN_FLIGHT, &[&t.table], t.in_flight as f64);
            }
            let mut out = std::io::stdout().lock();
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
                Format::Human => crate::print::cache::fix_human(&report, &mut out)?,
            }
            drop(out);
            if let Some(e) = report.first_error() {
                bail!("{e}; that key was left as it was, nothing was lost");
            }
            Ok(if report.exit_code() == 0 {
                Outcome::Clean
            } else {
                Outcome::Differences
            })
        }
        Command::Status(_) => {
            let opts = RedisConnectOptions {
                timeout: std::time::Duration::from_secs(5),
                response_timeout: std::time::Duration::from_secs(30),
            };
            let report =
                eden_consistency::redis::status::status(&target.config, &target.db, &opts).await?;
            m.record_status(&report);
            let mut out = std::io::stdout().lock();
            match format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?,
                Format::Human => crate::print::status::human(&report, &mut out)?,
            }
            Ok(if report.healthy {
                Outcome::Clean
            } else {
                Outcome::Differences
            })
        }
        other => {
            let name = match other {
                Command::Conflicts(_) => "conflicts",
                Command::Init(_) => "init",
                Command::Undo(_) => "undo",
                _ => "validate-config",
            };
            bail!(
                "{name} works on PostgreSQL databases; {} is a Redis cache (use check, fix or status)",
                target.db
            )
        }
    }
}
