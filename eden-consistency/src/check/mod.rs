//! `check`: exact comparison of every covered table across regions (see `docs/commands.md` and `docs/reports.md`).
//!
//! Per table, two parts:
//! * the **schema phase** (here): the table's definition is read in every region
//!   ([`crate::pg::schema`]); a difference in columns, types or key gives `schema_mismatch`,
//!   no usable key `skipped`. Each region is then read inside one REPEATABLE READ READ ONLY
//!   transaction (all tables of a run share one snapshot per region, exported with
//!   `pg_export_snapshot()` and imported by every worker session);
//! * the **comparison** ([`engine`]), the same for every source: a PostgreSQL table in each
//!   region ([`crate::source`]'s `PgSource`, pushdown or stream) here, a Redis keyspace for
//!   [`crate::redis::CacheChecker`]. Chunk summaries are compared, the `(key, digest)` rows
//!   of the differing chunks (in batches bounded by rows) give the exact differing keys, and
//!   only those rows are fetched from every region and compared as values
//!   (`PgClassifier`) to name `changed_columns` and `missing_in`.
//!
//! Differences beyond `max_differences` are counted, not kept, unless the caller needs them
//! all ([`Checker::run_detailed`], what `fix` plans from); `record` writes them batch by
//! batch. Memory is therefore bounded by a batch, not by the number of differences.
//!
//! **In flight** (see `docs/commands.md`): with a lag window > 0, a difference whose newest version is
//! younger than the window (by `pg_xact_commit_timestamp(xmin)` when
//! `track_commit_timestamp` is on in every region, else by the table's tracking column) is
//! read again after a pause, outside the snapshot; if it still differs it is reported with
//! `in_flight: true` and counted in `in_flight_count`, and alone it does not make the
//! table divergent. If it no longer differs it is dropped.
//!
//! **Parallelism**: `jobs` tables at a time, each on its own set of sessions (one per
//! region), so at most `jobs + 1` sessions per region.
//!
//! ```no_run
//! # async fn f() -> eden_consistency::Result<()> {
//! use eden_consistency::{CheckOptions, Checker};
//! use eden_consistency::Config;
//!
//! let mut cfg = Config::default();
//! cfg.apply_region_flag("us-east-1=postgres://postgres@127.0.0.1:5432/eden_vault")?;
//! cfg.apply_region_flag("us-west-2=postgres://postgres@127.0.0.1:5433/eden_vault")?;
//! let checker = Checker::connect(cfg, "eden_vault").await?;
//! let report = checker.run(&CheckOptions::default()).await?;
//! println!("{}", serde_json::to_string_pretty(&report.to_json()).unwrap());
//! std::process::exit(report.exit_code());
//! # }
//! ```

mod classify;
pub(crate) mod engine;
pub(crate) mod incremental;
mod listing;
mod record;
pub(crate) mod report;
pub(crate) mod shard;
pub(crate) mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tokio_postgres::Client;

pub(crate) use self::classify::*;
use self::engine::{Classifier, Engine, EngineOptions};
use self::listing::Listing;
use crate::check::report::{CheckReport, RegionMap, RegionStats, TableReport, TableStatus};
use crate::config::connect_all;
use crate::config::{Config, Resolution, TableRule};
use crate::error::{Error, Result};
use crate::pg::connect::{ConnectOptions, Region};
use crate::pg::ident::TableName;
use crate::pg::schema::{self, TableSchema};
use crate::pg::types::{self, oid};
use crate::progress::ProgressSink;
use crate::row::value::Value;
use crate::source::keyed::PlanHint;
use crate::source::{Mode, PgSource, TableSpec};

/// What to check and how.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// `--table` (repeatable; `t`, `s.t`, quoted parts as in SQL). Empty: every covered table.
    pub tables: Vec<String>,
    /// `--exclude-table` (repeatable).
    pub exclude_tables: Vec<String>,
    /// `--where`: one boolean SQL expression applied in every region (validated first).
    pub filter: Option<String>,
    /// `--max-differences`: caps the listed differences per table (never the count).
    pub max_differences: Option<usize>,
    /// `--jobs`: tables checked at once (each on its own session per region). At least 1.
    pub jobs: usize,
    /// `--mode`.
    pub mode: Mode,
    /// `--record`: write each difference as an unresolved `replication_conflicts` row in
    /// every region (creating the table when missing).
    pub record: bool,
    /// The run's id (generated when `None`).
    pub run_id: Option<String>,
    /// Where progress goes (nowhere by default; the CLI draws bars on a terminal).
    pub progress: ProgressSink,
    /// Pause before the in-flight recheck (default: a tenth of the lag window, between
    /// 0.2 s and 5 s).
    pub recheck_pause: Option<Duration>,
    /// The lag window; `None` takes the config's (`Config::lag_window`).
    pub lag_window: Option<Duration>,
    /// Forces the number of chunks per table (default: adaptive, near the square root of
    /// rows² / 1000, so that digests and differing chunks' rows cost about the same).
    pub chunks: Option<usize>,
    /// `--incremental`: re-hash only what may have changed since the last pass
    /// (`docs/incremental.md`).
    pub incremental: Option<incremental::IncrementalOptions>,
    /// `--shard I/N`: check this shard's part of the work only (`docs/sharding.md`).
    pub shard: Option<shard::ShardOptions>,
    /// Compares the chunk summaries level by level with this fan-out, asking each region
    /// only for the nodes under differing ones (one query per level), instead of every
    /// chunk's summary at once (the default). Fewer bytes at low drift, more scans; see
    /// `docs/commands.md`.
    pub descent: Option<usize>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            tables: Vec::new(),
            exclude_tables: Vec::new(),
            filter: None,
            max_differences: None,
            jobs: 1,
            mode: Mode::Auto,
            record: false,
            run_id: None,
            progress: None,
            recheck_pause: None,
            lag_window: None,
            chunks: None,
            incremental: None,
            shard: None,
            descent: None,
        }
    }
}

/// One differing key with everything `fix` needs.
#[derive(Debug, Clone)]
pub struct DiffKey {
    /// The key as in the report (`{"id": 42}`).
    pub key: serde_json::Map<String, serde_json::Value>,
    /// Key values (in key order).
    pub key_values: Vec<Value>,
    /// Key values as PostgreSQL prints them (UTC session), usable as `$n::text::type`.
    pub key_text: Vec<Option<String>>,
    /// Regions lacking the row.
    pub missing_in: Vec<String>,
    /// Columns that differ among the regions holding the row.
    pub changed_columns: Vec<String>,
    /// Flagged in flight.
    pub in_flight: bool,
}

/// A table's check with the details behind the report.
#[derive(Debug, Clone)]
pub struct TableCheck {
    /// The table.
    pub table: TableName,
    /// The settings it was checked with (its rule from the config, or the default).
    pub rule: TableRule,
    /// The report entry.
    pub report: TableReport,
    /// The table as in the first region where it exists (before excludes).
    pub schema: Option<TableSchema>,
    /// The compared columns (excluded columns dropped), sorted by name; empty when rows
    /// were not compared.
    pub compared_columns: Vec<String>,
    /// Every differing key (not capped), in key order.
    pub differences: Vec<DiffKey>,
}

/// Holds the config and the connected regions; runs checks.
pub struct Checker {
    config: Config,
    database: String,
    regions: Vec<Region>,
    /// When the run's snapshot was taken (the earliest region's server clock, microseconds
    /// since 2000-01-01), `i64::MAX` until a run sets it: the in-flight rule measures a
    /// version's age at the moment the data was read, not when the scan ended.
    snapshot_at: std::sync::atomic::AtomicI64,
    /// The run's incremental state (`--incremental`).
    inc_run: std::sync::Mutex<Option<Arc<incremental::RunState>>>,
    /// The run's shard plan (`--shard`).
    shard_plan: std::sync::Mutex<Option<Arc<Vec<shard::TablePlan>>>>,
}

impl Checker {
    /// A checker over already connected regions (in tie-break order).
    pub fn new(config: Config, database: impl Into<String>, regions: Vec<Region>) -> Checker {
        Checker {
            config,
            database: database.into(),
            regions,
            snapshot_at: std::sync::atomic::AtomicI64::new(i64::MAX),
            inc_run: std::sync::Mutex::new(None),
            shard_plan: std::sync::Mutex::new(None),
        }
    }

    /// Connects to every region of `config` (database `database`) with default options.
    pub async fn connect(config: Config, database: &str) -> Result<Checker> {
        let regions = connect_all(&config, Some(database), &ConnectOptions::default()).await?;
        Ok(Checker::new(config, database, regions))
    }

    /// The connected regions.
    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The database name used for table rules and in the report.
    pub fn database(&self) -> &str {
        &self.database
    }

    fn region_names(&self) -> Vec<String> {
        self.regions.iter().map(|r| r.name.clone()).collect()
    }

    /// The tables a run covers, after `--table` / `--exclude-table`, sorted.
    pub async fn tables(&self, opts: &CheckOptions) -> Result<Vec<TableName>> {
        let first = self.regions.first().ok_or_else(|| {
            Error::Usage(
                "no region to check: give --region NAME=CONNINFO or a config with regions".into(),
            )
        })?;
        let mut out = Vec::new();
        if opts.tables.is_empty() {
            let pglogical = self.config.provider.as_deref() == Some("pglogical");
            let own = vec![self.conflicts_table()];
            // Union over regions, so a table missing in the first one is still reported.
            for r in &self.regions {
                out.extend(schema::covered_tables(&r.client, &r.name, pglogical, &own).await?);
            }
        } else {
            for t in &opts.tables {
                let mut found = None;
                for r in &self.regions {
                    if let Some(n) = schema::resolve_table(&r.client, &r.name, t).await? {
                        found = Some(n);
                        break;
                    }
                }
                match found {
                    Some(n) => {
                        if n == self.conflicts_table() {
                            return Err(Error::Usage(format!(
                                "table {n} is the tool's own record of conflicts; it is never compared or repaired"
                            )));
                        }
                        for r in &self.regions {
                            if let Some(reason) =
                                schema::forbidden_reason(&r.client, &r.name, &n).await?
                            {
                                return Err(Error::Usage(reason));
                            }
                        }
                        out.push(n)
                    }
                    None => {
                        return Err(Error::Usage(format!(
                            "table {t} does not exist in database {} in any region (first region: {})",
                            self.database, first.name
                        )));
                    }
                }
            }
        }
        let mut excluded = Vec::new();
        for e in &opts.exclude_tables {
            excluded.push(
                TableName::parse_user(e)
                    .map_err(|m| Error::Usage(format!("--exclude-table: {m}")))?,
            );
        }
        out.retain(|t| {
            !excluded
                .iter()
                .any(|(s, n)| *n == t.name && s.as_ref().is_none_or(|s| *s == t.schema))
        });
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn conflicts_table(&self) -> TableName {
        let schema = self
            .config
            .node_group(&self.database)
            .and_then(|g| g.conflicts_schema.clone());
        crate::store::conflicts::table_name(schema.as_deref())
    }

    fn lag_window(&self, opts: &CheckOptions) -> Duration {
        opts.lag_window.unwrap_or_else(|| self.config.lag_window())
    }

    /// Opens one session per region (for one worker).
    async fn open_set(&self) -> Result<Vec<Client>> {
        let mut out = Vec::new();
        for c in join_all(self.regions.iter().map(|r| r.open_another())).await {
            out.push(c?);
        }
        Ok(out)
    }

    /// Checks every covered table; one consistent snapshot per region for the whole run.
    pub async fn run(&self, opts: &CheckOptions) -> Result<CheckReport> {
        Ok(self.run_all(opts, false).await?.0)
    }

    /// [`Checker::run`], also returning each table's typed details (its name, rule, schema
    /// and every differing key, not capped by `max_differences`): what `fix` plans from.
    pub async fn run_detailed(
        &self,
        opts: &CheckOptions,
    ) -> Result<(CheckReport, Vec<TableCheck>)> {
        self.run_all(opts, true).await
    }

    /// Checks every covered table; with `details`, keeps each table's [`TableCheck`]
    /// (otherwise only the report entries survive, so that memory stays bounded).
    async fn run_all(
        &self,
        opts: &CheckOptions,
        details: bool,
    ) -> Result<(CheckReport, Vec<TableCheck>)> {
        let t0 = Instant::now();
        let run_id = opts
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let tables = self.tables(opts).await?;
        // Validate --where against every table before reading any row.
        if let Some(f) = &opts.filter {
            for t in &tables {
                if let Some(s) = self.first_schema(t).await? {
                    let cols: Vec<String> = s.columns.iter().map(|c| c.name.clone()).collect();
                    crate::source::filter::validate_where(f, &cols)
                        .map_err(|m| Error::Usage(format!("--where: {m} (table {t})")))?;
                }
            }
        }
        let tables = self.shard_tables(tables, opts).await?;
        self.begin_incremental(opts);
        // One snapshot per region, exported from the main session and held open.
        self.snapshot_at
            .store(i64::MAX, std::sync::atomic::Ordering::Relaxed);
        let mut snapshots = Vec::new();
        for r in &self.regions {
            r.client
                .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(|e| Error::query(&r.name, "starting a read-only transaction", e))?;
            let snap = match r
                .client
                .query_one(
                    "SELECT pg_export_snapshot(), \
                     (extract(epoch FROM statement_timestamp()) * 1000000)::int8",
                    &[],
                )
                .await
            {
                Ok(row) => {
                    let at = row.get::<_, i64>(1) - crate::row::value::PG_EPOCH_UNIX_MICROS;
                    self.snapshot_at
                        .fetch_min(at, std::sync::atomic::Ordering::Relaxed);
                    Some(row.get::<_, String>(0))
                }
                Err(e) => {
                    tracing::debug!(region = %r.name, "no exported snapshot: {}", crate::error::pg_message(&e));
                    None
                }
            };
            snapshots.push(snap);
        }
        let result = self
            .run_tables(&tables, opts, &run_id, &snapshots, details)
            .await;
        for r in &self.regions {
            crate::pg::connect::end_transaction(&r.client, "COMMIT").await;
        }
        let checks = self.finish_run(result?, opts)?;
        let reports: Vec<TableReport> = checks.iter().map(|c| c.report.clone()).collect();
        let mut stats: RegionMap<RegionStats> = RegionMap(
            self.region_names()
                .into_iter()
                .map(|n| (n, RegionStats::default()))
                .collect(),
        );
        for t in &reports {
            for (r, s) in &t.stats.0 {
                if let Some((_, acc)) = stats.0.iter_mut().find(|(n, _)| n == r) {
                    acc.add(s);
                }
            }
        }
        let report = CheckReport {
            database: self.database.clone(),
            kind: "postgresql",
            databases: RegionMap(
                self.regions
                    .iter()
                    .map(|r| (r.name.clone(), r.dbname.clone()))
                    .collect(),
            ),
            regions: self.region_names(),
            consistent: reports.iter().all(|t| t.status == TableStatus::Consistent),
            in_flight_count: reports.iter().map(|t| t.in_flight_count).sum(),
            tables: reports,
            mode: opts.mode.as_str().to_string(),
            run_id,
            stats,
            elapsed_ms: t0.elapsed().as_millis() as u64,
            shard: self.shard_report(opts),
        };
        Ok((report, checks))
    }

    async fn run_tables(
        &self,
        tables: &[TableName],
        opts: &CheckOptions,
        run_id: &str,
        snapshots: &[Option<String>],
        details: bool,
    ) -> Result<Vec<TableCheck>> {
        let jobs = opts.jobs.max(1).min(tables.len().max(1));
        let mut sets = Vec::new();
        for _ in 0..jobs {
            sets.push(self.open_set().await?);
        }
        let pool = Arc::new(tokio::sync::Mutex::new(sets));
        let futs = tables.iter().map(|t| {
            let pool = pool.clone();
            async move {
                let conns = loop {
                    if let Some(c) = pool.lock().await.pop() {
                        break c;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                };
                let r = self
                    .check_on(&conns, t, opts, run_id, snapshots, details)
                    .await;
                pool.lock().await.push(conns);
                r
            }
        });
        use futures_util::StreamExt;
        let mut results: Vec<(usize, TableCheck)> = Vec::new();
        let mut stream =
            futures_util::stream::iter(futs.enumerate().map(|(i, f)| async move { (i, f.await) }))
                .buffer_unordered(jobs);
        while let Some((i, r)) = stream.next().await {
            let mut check = r?;
            if !details {
                check.schema = None;
                check.differences = Vec::new();
            }
            results.push((i, check));
        }
        results.sort_by_key(|(i, _)| *i);
        Ok(results.into_iter().map(|(_, r)| r).collect())
    }

    async fn first_schema(&self, table: &TableName) -> Result<Option<TableSchema>> {
        let rule = self.config.rule_or_default(&self.database, table);
        let key_cols = rule.key_columns;
        for r in &self.regions {
            match schema::load_table(&r.client, &r.name, table, key_cols.as_deref()).await {
                Ok(Some(s)) => return Ok(Some(s)),
                Ok(None) => continue,
                Err(_) => continue,
            }
        }
        Ok(None)
    }

    /// Checks one table on fresh sessions (its own snapshot per region).
    pub async fn check_table(&self, table: &TableName, opts: &CheckOptions) -> Result<TableReport> {
        Ok(self.check_table_detailed(table, opts).await?.report)
    }

    /// Checks one table on fresh sessions and returns the details `fix` needs: the
    /// schema, the compared columns and every differing key with `missing_in`.
    pub async fn check_table_detailed(
        &self,
        table: &TableName,
        opts: &CheckOptions,
    ) -> Result<TableCheck> {
        let conns = self.open_set().await?;
        let run_id = opts
            .run_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let none = vec![None; self.regions.len()];
        self.check_on(&conns, table, opts, &run_id, &none, true)
            .await
    }

    /// Checks `table` on `conns` (one session per region); table-level failures become an
    /// `error` status; a bad `--where` is an `Err`.
    async fn check_on(
        &self,
        conns: &[Client],
        table: &TableName,
        opts: &CheckOptions,
        run_id: &str,
        snapshots: &[Option<String>],
        details: bool,
    ) -> Result<TableCheck> {
        let t0 = Instant::now();
        let rule = self.config.rule_or_default(&self.database, table);
        let res = self
            .check_inner(conns, table, &rule, opts, run_id, snapshots, details)
            .await;
        // Leave no transaction open on the sessions.
        for c in conns {
            crate::pg::connect::end_transaction(c, "ROLLBACK").await;
        }
        // A table dropped while the run was going fails in odd ways (unreadable definition,
        // "the key differs", an error reading rows): when it is gone now from a region where
        // the run's snapshot still had it, say so.
        let suspicious =
            match &res {
                Ok(tc) => {
                    tc.report.status == TableStatus::Error
                        || (tc.report.status == TableStatus::SchemaMismatch
                            && !tc.report.message.as_deref().is_some_and(|m| {
                                m.contains(&format!("table {table} is missing in"))
                            }))
                }
                Err(Error::Usage(_)) => false,
                Err(_) => true,
            };
        if suspicious {
            let mut gone = Vec::new();
            for (r, c) in self.regions.iter().zip(conns) {
                if let Ok(row) = c
                    .query_one("SELECT to_regclass($1) IS NULL", &[&table.quoted()])
                    .await
                {
                    if row.get::<_, bool>(0) {
                        gone.push(r.name.clone());
                    }
                }
            }
            if !gone.is_empty() {
                let mut report = TableReport::without_rows(
                    table.to_string(),
                    Vec::new(),
                    TableStatus::SchemaMismatch,
                    format!(
                        "table {table} is missing in {} (it was dropped while the check ran)",
                        gone.join(", ")
                    ),
                );
                report.elapsed_ms = t0.elapsed().as_millis() as u64;
                return Ok(TableCheck {
                    table: table.clone(),
                    rule,
                    report,
                    schema: None,
                    compared_columns: Vec::new(),
                    differences: Vec::new(),
                });
            }
        }
        match res {
            Ok(mut tc) => {
                tc.report.elapsed_ms = t0.elapsed().as_millis() as u64;
                tracing::info!(
                    table = %table,
                    status = tc.report.status.as_str(),
                    differences = tc.report.difference_count,
                    ms = tc.report.elapsed_ms,
                    "checked"
                );
                Ok(tc)
            }
            Err(e @ Error::Usage(_)) => Err(e),
            Err(e) => {
                tracing::info!(table = %table, error = %e, "could not be checked");
                let mut report = TableReport::without_rows(
                    table.to_string(),
                    Vec::new(),
                    TableStatus::Error,
                    e.to_string(),
                );
                report.elapsed_ms = t0.elapsed().as_millis() as u64;
                Ok(TableCheck {
                    table: table.clone(),
                    rule,
                    report,
                    schema: None,
                    compared_columns: Vec::new(),
                    differences: Vec::new(),
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn check_inner(
        &self,
        conns: &[Client],
        table: &TableName,
        rule: &TableRule,
        opts: &CheckOptions,
        run_id: &str,
        snapshots: &[Option<String>],
        details: bool,
    ) -> Result<TableCheck> {
        let names = self.region_names();
        // The in-flight clock: the run's snapshot time, or (without an exported snapshot,
        // when each table reads in its own transaction) this table's start.
        let read_at = self
            .snapshot_at
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(chrono::Utc::now().timestamp_micros() - crate::row::value::PG_EPOCH_UNIX_MICROS);
        let key_cols = rule.key_columns.clone();
        let exclude: Vec<String> = rule.exclude_columns.clone();

        // Definitions in every region.
        let mut schemas = Vec::new();
        for (r, c) in self.regions.iter().zip(conns) {
            schemas.push(schema::load_table(c, &r.name, table, key_cols.as_deref()).await?);
        }
        let first = schemas.iter().flatten().next().cloned();
        let pairs: Vec<(&str, Option<&TableSchema>)> = names
            .iter()
            .map(|n| n.as_str())
            .zip(schemas.iter().map(|s| s.as_ref()))
            .collect();
        let diffs = schema::compare_schemas(table, &pairs, &exclude);
        let key_names = first
            .as_ref()
            .map(|s| s.key_columns().to_vec())
            .unwrap_or_default();
        if !diffs.is_empty() {
            let cols: Vec<String> = diffs.iter().filter_map(|d| d.column.clone()).collect();
            let mut msg = diffs
                .iter()
                .map(|d| d.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            if !cols.is_empty() {
                msg = format!(
                    "columns differ between regions ({}): {msg}",
                    cols.join(", ")
                );
            }
            let mut report = TableReport::without_rows(
                table.to_string(),
                key_names,
                TableStatus::SchemaMismatch,
                msg,
            );
            report.schema_differences = diffs;
            return Ok(TableCheck {
                table: table.clone(),
                rule: rule.clone(),
                report,
                schema: first,
                compared_columns: Vec::new(),
                differences: Vec::new(),
            });
        }
        let Some(first) = first else {
            return Err(Error::Table {
                table: table.to_string(),
                message: "does not exist in any region".into(),
            });
        };
        let Some(key) = first.key.clone() else {
            let report = TableReport::without_rows(
                table.to_string(),
                Vec::new(),
                TableStatus::Skipped,
                first.skip_message(),
            );
            return Ok(TableCheck {
                table: table.clone(),
                rule: rule.clone(),
                report,
                schema: Some(first),
                compared_columns: Vec::new(),
                differences: Vec::new(),
            });
        };

        let all_cols: Vec<String> = first.columns.iter().map(|c| c.name.clone()).collect();
        let filter = match &opts.filter {
            Some(f) => Some(
                crate::source::filter::validate_where(f, &all_cols)
                    .map_err(|m| Error::Usage(format!("--where: {m} (table {table})")))?,
            ),
            None => None,
        };
        let key_columns: Vec<schema::Column> = key
            .iter()
            .filter_map(|k| first.column(k).cloned())
            .collect();
        let mut columns: Vec<schema::Column> = first
            .columns
            .iter()
            .filter(|c| !exclude.contains(&c.name) || key.contains(&c.name))
            .cloned()
            .collect();
        columns.sort_by(|a, b| a.name.cmp(&b.name));
        // --shard: this shard's key range joins the filter.
        let filter = match self.shard_range(table, opts) {
            Some((_, col)) if col.as_deref().is_some_and(|c| c != key_columns[0].name) => {
                return Err(Error::Table {
                    table: table.to_string(),
                    message: format!(
                        "the shard plan splits it on {} but its first key column is {}",
                        col.unwrap_or_default(),
                        key_columns[0].name
                    ),
                });
            }
            Some((range, _)) => shard::with_range(filter, &range, &key_columns[0]),
            None => filter,
        };

        // Snapshots.
        for ((r, c), snap) in self.regions.iter().zip(conns).zip(snapshots) {
            c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(|e| Error::query(&r.name, "starting a read-only transaction", e))?;
            // Room for the per-chunk hash aggregate (one group per chunk) without spilling.
            let _ = c.batch_execute("SET LOCAL work_mem = '128MB'").await;
            if let Some(s) = snap
                .as_ref()
                .filter(|s| s.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '-'))
            {
                c.batch_execute(&format!(
                    "SET TRANSACTION SNAPSHOT {}",
                    crate::pg::ident::quote_literal(s)
                ))
                .await
                .map_err(|e| Error::query(&r.name, "importing the run's snapshot", e))?;
            }
        }

        // The in-flight rule's clock.
        let window = self.lag_window(opts);
        let version_time = if window > Duration::ZERO {
            self.version_time_expr(conns, Some(&rule.resolution), &first)
                .await
        } else {
            None
        };
        let mode = match opts.mode {
            Mode::Auto => {
                let v: i32 = conns[0]
                    .query_one("SELECT current_setting('server_version_num')::int", &[])
                    .await
                    .map_err(|e| Error::query(&names[0], "reading the server version", e))?
                    .get(0);
                if v >= 140000 {
                    Mode::Pushdown
                } else {
                    Mode::Stream
                }
            }
            m => m,
        };
        let spec = Arc::new(TableSpec {
            table: table.clone(),
            key: key_columns,
            columns,
            filter,
            version_time,
        });
        let mut sources: Vec<PgSource<'_>> = names
            .iter()
            .zip(conns)
            .map(|(n, c)| PgSource::new(n, c, spec.clone(), mode))
            .collect();

        // Aligned chunks from the first region's keys.
        let est = schemas
            .iter()
            .flatten()
            .map(|s| {
                if s.estimated_rows > 0 {
                    s.estimated_rows
                } else {
                    s.total_bytes / 200
                }
            })
            .max()
            .unwrap_or(0)
            .max(0) as u64;
        let cls = PgClassifier {
            spec: spec.clone(),
            names: names.clone(),
            window_us: window.as_micros() as i64,
            read_at,
            keep_rows: opts.record,
        };
        // --incremental: stored digests reused where nothing can have changed.
        let inc_run = opts.incremental.as_ref().and(self.incremental_run());
        let (inc_pass, reused) = match &inc_run {
            Some(run) => {
                let snap = self
                    .snapshot_at
                    .load(std::sync::atomic::Ordering::Relaxed)
                    .min(read_at)
                    .saturating_add(crate::row::value::PG_EPOCH_UNIX_MICROS);
                let (p, r) = incremental::begin(
                    run,
                    &mut sources,
                    &spec,
                    &first,
                    &rule.resolution,
                    mode,
                    &names,
                    snap,
                )
                .await?;
                (Some(p), r)
            }
            None => (None, None),
        };
        let engine_opts = EngineOptions {
            // Incremental passes keep every leaf digest, so they compare leaves.
            descent: opts.descent.filter(|_| inc_run.is_none()),
            keep_leaves: inc_run.is_some(),
            max_listed: opts.max_differences,
            keep_all: details,
            // In flight: one re-read after a pause, outside the snapshot.
            rounds: u32::from(window > Duration::ZERO && spec.version_time.is_some()),
            pause: opts.recheck_pause.unwrap_or_else(|| {
                (window / 10).clamp(Duration::from_millis(200), Duration::from_secs(5))
            }),
            progress: opts.progress.clone(),
            label: table.to_string(),
            total: est * names.len() as u64,
            ..EngineOptions::default()
        };
        let recorder = match opts.record {
            true => Some(self.recorder().await?),
            false => None,
        };
        // With no cap and no caller needing the keys, the listed differences stream to the
        // report's listing (on disk beyond a run) as they are confirmed.
        let stream = opts.max_differences.is_none() && !details;
        let mut listing = Listing::default();
        let mut engine = Engine::new(&mut sources, &cls, engine_opts);
        match reused {
            Some((chunking, sums)) => engine.use_summaries(chunking, sums),
            None => {
                engine
                    .plan(PlanHint {
                        estimated_rows: est,
                        chunks: opts.chunks,
                    })
                    .await?;
                engine.summaries().await?;
            }
        }
        let incremental_report = match (inc_pass, &inc_run, engine.leaves()) {
            (Some(p), Some(run), Some((chunking, sums))) => Some(p.finish(run, chunking, sums)),
            _ => None,
        };
        // Exact keys from the differing chunks, then only those rows fetched everywhere and
        // compared column by column; in batches bounded by rows, so that memory stays
        // bounded whatever the drift. `--record` writes each batch as it comes.
        while let Some(mut batch) = engine.next_batch().await? {
            if let Some(conns) = &recorder {
                let recheck = |f: &Found| engine_rounds(&cls) && cls.needs_recheck(f);
                let settled: Vec<&Found> = batch.iter().filter(|f| !recheck(f)).collect();
                self.record(conns, &spec, &settled, run_id).await?;
                for f in batch.iter_mut().filter(|f| !recheck(f)) {
                    f.rows = Vec::new();
                }
            }
            engine.absorb(batch);
            if stream {
                for f in engine.take_settled() {
                    let row = report_row(&spec, &f);
                    listing
                        .push(f.key.values, row)
                        .map_err(|e| spill_error(table, e))?;
                }
            }
        }
        // The snapshot ends here; in-flight re-reads see the regions as they are now.
        engine.release().await;
        engine.recheck().await?;
        if let Some(conns) = &recorder {
            let still: Vec<&Found> = engine.pending().iter().collect();
            self.record(conns, &spec, &still, run_id).await?;
        }
        let stats = RegionMap(
            names
                .iter()
                .cloned()
                .zip(engine.sources().iter().map(|s| s.stats.clone()))
                .collect(),
        );
        let out = engine.finish();
        drop(sources);
        let row_counts = RegionMap(names.iter().cloned().zip(out.row_counts).collect());

        let cap = opts.max_differences.unwrap_or(usize::MAX);
        for f in out.listed.iter().take(cap) {
            listing
                .push(f.key.values.clone(), report_row(&spec, f))
                .map_err(|e| spill_error(table, e))?;
        }
        let listed = listing.finish().map_err(|e| spill_error(table, e))?;
        let differences: Vec<DiffKey> = if details {
            out.listed
                .into_iter()
                .map(|f| DiffKey {
                    key: key_map(&spec, &f),
                    key_text: f.key_text,
                    key_values: f.key.values,
                    missing_in: f.missing_in,
                    changed_columns: f.changed_columns,
                    in_flight: f.in_flight,
                })
                .collect()
        } else {
            Vec::new()
        };
        let total = out.difference_count;
        let real = total - out.in_flight_count;
        let status = if real > 0 {
            TableStatus::Divergent
        } else {
            TableStatus::Consistent
        };
        let message = match status {
            TableStatus::Divergent => Some(format!(
                "{} row{} differ{} between regions",
                total,
                if total == 1 { "" } else { "s" },
                if total == 1 { "s" } else { "" }
            )),
            _ => None,
        };
        let report = TableReport {
            table: table.to_string(),
            key_columns: key.clone(),
            status,
            message,
            row_counts,
            difference_count: total,
            differences: listed,
            in_flight_count: out.in_flight_count,
            schema_differences: Vec::new(),
            mode: mode.as_str().to_string(),
            stats,
            elapsed_ms: 0,
            incremental: incremental_report,
            shard_range: None,
        };
        Ok(TableCheck {
            table: table.clone(),
            rule: rule.clone(),
            report,
            schema: Some(first),
            compared_columns: spec.columns.iter().map(|c| c.name.clone()).collect(),
            differences,
        })
    }
}

/// A failure of the temporary file that holds a table's many listed differences.
fn spill_error(table: &TableName, e: std::io::Error) -> Error {
    Error::Io {
        path: format!("the temporary file listing the differences of {table}"),
        message: e.to_string(),
    }
}
