//! Importing the conflicts that the replication engine detected and resolved itself.
//!
//! pglogical, Spock and PostgreSQL's own logical replication resolve many conflicts
//! without anyone noticing: the row simply takes one side's version. This module copies
//! what they recorded about those conflicts into the region's `replication_conflicts`, so
//! they are listed beside the tool's own records:
//!
//! * **pglogical** writes one `CONFLICT: remote ...` message per conflict to the server log.
//!   The log is read through SQL (`pg_ls_logdir()`, `pg_read_binary_file()`), in whichever
//!   format the server writes (`csvlog`, `jsonlog` or plain `stderr`). pglogical shortens
//!   long values to 35 characters plus `...` and prints only the low half of the commit
//!   LSN, so these records are partial: `details.partial` is true and `details.truncated`
//!   names the shortened values.
//! * **Spock** keeps a table, `spock.resolutions`; it is read when it exists.
//! * **PostgreSQL 18** logs `conflict detected on relation ...: conflict=...` for native
//!   subscriptions; those lines are read from the same log.
//!
//! Every imported record has `source` (`pglogical-log`, `spock`, `pg-conflict-log`) and
//! `source_position` (log file, line and time of the message, or the Spock record's id);
//! a unique index on the two makes importing again add nothing already imported.
//! Imported records are never used to repair anything: `undo` skips records with a
//! `source`.

mod logfile;
mod parse;

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value as Json, json};
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::ident::TableName;
use crate::store::conflicts::ConflictRecord;

pub use logfile::{LogFormat, LogMessage};
pub use parse::{NativeConflict, PglogicalConflict, parse_native, parse_pglogical, parse_tuple};

/// `source` of records read from pglogical's log lines.
pub const SOURCE_PGLOGICAL: &str = "pglogical-log";
/// `source` of records read from Spock's `spock.resolutions`.
pub const SOURCE_SPOCK: &str = "spock";
/// `source` of records read from PostgreSQL's native conflict log lines.
pub const SOURCE_PG_LOG: &str = "pg-conflict-log";

/// What to import and where to write it.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// `replication_conflicts` (see [`crate::store::conflicts::table_name`]).
    pub table: TableName,
    /// Only conflicts at or after this time (log files last written before it are not read).
    pub since: Option<DateTime<Utc>>,
    /// `run_id` written into every imported record.
    pub run_id: String,
    /// The other regions of the deployment: with exactly one, it is the remote side of
    /// every imported conflict.
    pub other_regions: Vec<String>,
}

/// What one source gave in one region.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SourceOutcome {
    /// `pglogical-log`, `spock` or `pg-conflict-log`.
    pub source: String,
    /// Conflicts found (after `--since`).
    pub found: usize,
    /// Records added now (the rest were imported before).
    pub imported: usize,
    /// Where they were read from (log files, `spock.resolutions`).
    pub read_from: Vec<String>,
}

/// What the import did in one region.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RegionImport {
    /// The region.
    pub region: String,
    /// One entry per source that is in use there.
    pub sources: Vec<SourceOutcome>,
    /// Sentences about sources in use that could not be read (e.g. the log is not
    /// reachable through SQL); the import of the other sources still happened.
    pub problems: Vec<String>,
    /// Warnings: settings that keep conflicts out of the log (the import itself worked).
    pub warnings: Vec<String>,
}

/// Rank of a severity for the server log (`log_min_messages` order, where `LOG` sits
/// between `ERROR` and `FATAL`).
fn server_log_rank(level: &str) -> Option<u8> {
    Some(match level.to_ascii_lowercase().as_str() {
        "debug5" => 0,
        "debug4" => 1,
        "debug3" => 2,
        "debug2" => 3,
        "debug1" | "debug" => 4,
        "info" => 5,
        "notice" => 6,
        "warning" => 7,
        "error" => 8,
        "log" => 9,
        "fatal" => 10,
        "panic" => 11,
        _ => return None,
    })
}

/// A warning when pglogical's conflict messages are below what the server logs.
async fn pglogical_level_warning(client: &Client, region: &str) -> Option<String> {
    let row = client
        .query_one(
            "SELECT current_setting('pglogical.conflict_log_level', true), current_setting('log_min_messages')",
            &[],
        )
        .await
        .ok()?;
    let level: Option<String> = row.get(0);
    let min: String = row.get(1);
    let level = level?;
    (server_log_rank(&level)? < server_log_rank(&min)?).then(|| {
        format!(
            "region {region}: pglogical.conflict_log_level is '{level}' but log_min_messages is '{min}', \
             so pglogical's conflicts are not written to the server log; set pglogical.conflict_log_level = log"
        )
    })
}

/// One conflict ready to be written: the one record shape ([`ConflictRecord`]), plus when the
/// engine resolved it and where it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Imported {
    /// When the engine resolved it (RFC 3339), if known: the record's `created_at` and
    /// `resolved_at`.
    at: Option<String>,
    #[serde(flatten)]
    record: ConflictRecord,
    source: String,
    source_position: String,
}

/// Imports every engine-resolved conflict this region's server recorded into `opts.table`
/// there (creating or upgrading the table first). Sources not in use are skipped quietly;
/// a source in use that cannot be read becomes a sentence in
/// [`RegionImport::problems`].
pub async fn import_region(
    client: &Client,
    region: &str,
    opts: &ImportOptions,
) -> Result<RegionImport> {
    crate::store::conflicts::init(client, region, &opts.table).await?;
    let q = |ctx: &'static str| move |e: tokio_postgres::Error| Error::query(region, ctx, &e);
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, \
                    EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pglogical'), \
                    to_regclass('spock.resolutions') IS NOT NULL",
            &[],
        )
        .await
        .map_err(q("looking for replication engines"))?;
    let version: i32 = row.get(0);
    let pglogical: bool = row.get(1);
    let spock: bool = row.get(2);
    let native: bool = version >= 180_000
        && client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid \
                 WHERE d.datname = current_database())",
                &[],
            )
            .await
            .map_err(q("looking for subscriptions"))?
            .get(0);

    let mut out = RegionImport {
        region: region.to_string(),
        ..RegionImport::default()
    };
    let mut cx = Ctx {
        client,
        region,
        opts,
        remote: remote_of(opts),
        meta: TableMeta::default(),
    };
    if spock {
        let recs = read_spock(&mut cx).await?;
        out.sources.push(
            write(
                client,
                region,
                opts,
                SOURCE_SPOCK,
                recs,
                vec!["spock.resolutions".into()],
            )
            .await?,
        );
    }
    if pglogical {
        out.warnings
            .extend(pglogical_level_warning(client, region).await);
    }
    if pglogical || native {
        match read_log(&mut cx, pglogical, native).await {
            Ok((pgl, nat, files)) => {
                if pglogical {
                    out.sources.push(
                        write(client, region, opts, SOURCE_PGLOGICAL, pgl, files.clone()).await?,
                    );
                }
                if native {
                    out.sources
                        .push(write(client, region, opts, SOURCE_PG_LOG, nat, files).await?);
                }
            }
            Err(LogError::Unreadable(msg)) => out.problems.push(msg),
            Err(LogError::Other(e)) => return Err(e),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Writing

async fn write(
    client: &Client,
    region: &str,
    opts: &ImportOptions,
    source: &str,
    recs: Vec<Imported>,
    read_from: Vec<String>,
) -> Result<SourceOutcome> {
    let mut outcome = SourceOutcome {
        source: source.to_string(),
        found: recs.len(),
        imported: 0,
        read_from,
    };
    let sql = format!(
        "{} ON CONFLICT (source, source_position) DO NOTHING RETURNING id",
        crate::store::conflicts::insert_sql(&opts.table)
    );
    for chunk in recs.chunks(2_000) {
        let payload = serde_json::to_value(chunk)
            .map_err(|e| Error::Usage(format!("cannot encode imported conflicts: {e}")))?;
        let rows = client
            .query(&sql, &[&payload])
            .await
            .map_err(|e| Error::query(region, format!("writing {} records", source), &e))?;
        outcome.imported += rows.len();
    }
    Ok(outcome)
}

// ---------------------------------------------------------------------------------------
// Table metadata (to split pglogical's tuples and find the key columns)

/// One region's import: its session, the options, the remote side, and what was learnt of
/// its tables.
struct Ctx<'a> {
    client: &'a Client,
    region: &'a str,
    opts: &'a ImportOptions,
    remote: Option<String>,
    meta: TableMeta,
}

/// Columns and key columns of tables named in conflicts, looked up once per table.
#[derive(Default)]
struct TableMeta {
    tables: HashMap<String, Option<Vec<(String, String)>>>,
    keys: HashMap<(String, String), Vec<String>>,
}

impl TableMeta {
    /// (column, type name) in column order, or `None` when the table is not in this database.
    async fn columns(
        &mut self,
        client: &Client,
        region: &str,
        table: &TableName,
    ) -> Result<Option<Vec<(String, String)>>> {
        let k = table.to_string();
        if let Some(v) = self.tables.get(&k) {
            return Ok(v.clone());
        }
        let rows = client
            .query(
                "SELECT a.attname::text, t.typname::text FROM pg_attribute a \
                 JOIN pg_type t ON t.oid = a.atttypid \
                 WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&table.quoted()],
            )
            .await
            .map_err(|e| Error::query(region, format!("reading the columns of {table}"), &e))?;
        let cols: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let v = (!cols.is_empty()).then_some(cols);
        self.tables.insert(k, v.clone());
        Ok(v)
    }

    /// The columns of index `index` on `table` (or of the primary key / replica identity
    /// index when `index` is unknown); empty when none is found.
    async fn key_columns(
        &mut self,
        client: &Client,
        region: &str,
        table: &TableName,
        index: Option<&str>,
    ) -> Result<Vec<String>> {
        let k = (table.to_string(), index.unwrap_or("").to_string());
        if let Some(v) = self.keys.get(&k) {
            return Ok(v.clone());
        }
        let rows = client
            .query(
                "SELECT a.attname::text FROM pg_index i \
                 JOIN pg_class ic ON ic.oid = i.indexrelid \
                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                 WHERE i.indrelid = to_regclass($1) \
                   AND i.indexrelid = (SELECT i2.indexrelid FROM pg_index i2 JOIN pg_class c2 ON c2.oid = i2.indexrelid \
                                       WHERE i2.indrelid = to_regclass($1) \
                                       ORDER BY (c2.relname = $2) DESC, i2.indisprimary DESC, i2.indisreplident DESC, \
                                                i2.indisunique DESC LIMIT 1) \
                   AND (i.indisunique OR ic.relname = $2) \
                 ORDER BY k.ord",
                &[&table.quoted(), &index.unwrap_or("")],
            )
            .await
            .map_err(|e| Error::query(region, format!("reading the key of {table}"), &e))?;
        let v: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        self.keys.insert(k, v.clone());
        Ok(v)
    }
}

/// `{"col": value}` of `cols` taken from `row`; the names of key values that are missing
/// or were shortened by the engine go to `partial`.
fn key_of(row: &Map<String, Json>, cols: &[String], truncated: &[String]) -> (Json, Vec<String>) {
    let mut key = Map::new();
    let mut partial = Vec::new();
    for c in cols {
        match row.get(c) {
            Some(v) => {
                key.insert(c.clone(), v.clone());
                if truncated.iter().any(|t| t == c) {
                    partial.push(c.clone());
                }
            }
            None => partial.push(c.clone()),
        }
    }
    (Json::Object(key), partial)
}

/// The other region when there is exactly one.
fn remote_of(opts: &ImportOptions) -> Option<String> {
    match opts.other_regions.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    }
}

/// The winner for an engine's resolution: the remote side's version was applied, or the
/// local one was kept.
fn winner(resolution: &str, local: &str, remote: Option<&String>) -> Option<String> {
    match resolution {
        "apply_remote" => remote.cloned(),
        "keep_local" | "skip" => Some(local.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Spock

async fn read_spock(cx: &mut Ctx<'_>) -> Result<Vec<Imported>> {
    let (client, region, opts) = (cx.client, cx.region, cx.opts);
    let rows = client
        .query(
            "SELECT id::bigint, node_name::text, log_time, relname, idxname, conflict_type, \
                    conflict_resolution, local_origin, local_tuple, local_xid::text, local_timestamp, \
                    remote_origin, remote_tuple, remote_xid::text, remote_timestamp, remote_lsn::text \
             FROM spock.resolutions \
             WHERE $1::timestamptz IS NULL OR log_time >= $1 \
             ORDER BY log_time, id",
            &[&opts.since],
        )
        .await
        .map_err(|e| Error::query(region, "reading spock.resolutions", &e))?;
    let remote = cx.remote.clone();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: i64 = r.get(0);
        let node: String = r.get(1);
        let at: DateTime<Utc> = r.get(2);
        let relname: Option<String> = r.get(3);
        let idxname: Option<String> = r.get(4);
        let ctype: Option<String> = r.get(5);
        let resolution: Option<String> = r.get(6);
        let tuple = |t: Option<String>| -> Option<Json> {
            t.map(|s| serde_json::from_str::<Json>(&s).unwrap_or(Json::String(s)))
        };
        let local_row = tuple(r.get(8));
        let remote_row = tuple(r.get(12));
        let table = relname
            .as_deref()
            .and_then(|t| TableName::parse_user(t).ok())
            .map(|(s, n)| TableName::new(s.unwrap_or_else(|| "public".into()), n));
        let (table_name, key) = match &table {
            Some(t) => {
                let cols = cx
                    .meta
                    .key_columns(client, region, t, idxname.as_deref())
                    .await?;
                let src = remote_row
                    .as_ref()
                    .or(local_row.as_ref())
                    .and_then(|v| v.as_object());
                let key = match src {
                    Some(obj) => key_of(obj, &cols, &[]).0,
                    None => Json::Object(Map::new()),
                };
                (t.to_string(), key)
            }
            None => (
                relname.clone().unwrap_or_default(),
                Json::Object(Map::new()),
            ),
        };
        let res = resolution.clone().unwrap_or_default();
        out.push(Imported {
            at: Some(at.to_rfc3339()),
            record: ConflictRecord {
            table_name,
            key,
            conflict_type: ctype.unwrap_or_else(|| "unknown".into()),
            local_region: region.to_string(),
            remote_region: remote.clone(),
            local_row,
            remote_row,
            resolution: resolution.clone(),
            winner_region: winner(&res, region, remote.as_ref()),
            decided_by: Some(format!("spock:{res}")),
            resolved: true,
            run_id: opts.run_id.clone(),
            details: Some(json!({
                "engine": "spock",
                "partial": false,
                "node_name": node,
                "index": idxname,
                "local_origin": r.get::<_, Option<i32>>(7),
                "local_xid": r.get::<_, Option<String>>(9),
                "local_commit_ts": r.get::<_, Option<DateTime<Utc>>>(10).map(|t| t.to_rfc3339()),
                "remote_origin": r.get::<_, Option<i32>>(11),
                "remote_xid": r.get::<_, Option<String>>(13),
                "remote_commit_ts": r.get::<_, Option<DateTime<Utc>>>(14).map(|t| t.to_rfc3339()),
                "remote_lsn": r.get::<_, Option<String>>(15),
            })),
            action: None,
            changed_columns: None,
            },
            source: SOURCE_SPOCK.into(),
            source_position: format!("{node}:{id}"),
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Server log

enum LogError {
    /// The log cannot be read through SQL (collector off, missing privilege): a problem
    /// line for the region, not a failure of the whole import.
    Unreadable(String),
    Other(Error),
}

impl From<Error> for LogError {
    fn from(e: Error) -> Self {
        LogError::Other(e)
    }
}

/// The replication origins of this database's subscriptions (pglogical's are named after
/// the subscription's slot; native ones `pg_<subscription oid>`), and every origin's name
/// by id.
async fn origins(
    client: &Client,
    region: &str,
    pglogical: bool,
) -> Result<(HashSet<String>, HashMap<u32, String>)> {
    let q = |e: tokio_postgres::Error| Error::query(region, "reading replication origins", &e);
    let mut ours = HashSet::new();
    if pglogical {
        for r in client
            .query(
                "SELECT sub_slot_name::text FROM pglogical.subscription",
                &[],
            )
            .await
            .map_err(q)?
        {
            ours.insert(r.get::<_, String>(0));
        }
    }
    for r in client
        .query(
            "SELECT 'pg_' || s.oid::text FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid \
             WHERE d.datname = current_database()",
            &[],
        )
        .await
        .map_err(q)?
    {
        ours.insert(r.get::<_, String>(0));
    }
    let mut all = HashMap::new();
    for r in client
        .query(
            "SELECT roident::int8, roname FROM pg_replication_origin",
            &[],
        )
        .await
        .map_err(q)?
    {
        all.insert(r.get::<_, i64>(0) as u32, r.get::<_, String>(1));
    }
    Ok((ours, all))
}

async fn read_log(
    cx: &mut Ctx<'_>,
    pglogical: bool,
    native: bool,
) -> std::result::Result<(Vec<Imported>, Vec<Imported>, Vec<String>), LogError> {
    let (client, region, opts) = (cx.client, cx.region, cx.opts);
    let (messages, files) = logfile::read_messages(client, region, opts.since).await?;
    let (ours, by_id) = origins(client, region, pglogical).await?;
    let mut pgl = Vec::new();
    let mut nat = Vec::new();
    for m in messages {
        if let Some(since) = opts.since {
            if m.time.is_some_and(|t| t < since) {
                continue;
            }
        }
        if pglogical {
            if let Some(c) = parse_pglogical(&m.message, m.detail.as_deref()) {
                // Another database's apply worker writes to the same log: keep only
                // conflicts applied through this database's subscriptions (or through an
                // origin since dropped, when the table is here).
                if let Some(name) = c.remote_origin.and_then(|id| by_id.get(&id)) {
                    if !ours.contains(name) {
                        continue;
                    }
                }
                let Some(rec) = pglogical_record(cx, &m, c).await? else {
                    continue;
                };
                pgl.push(rec);
                continue;
            }
        }
        if native {
            if let Some(c) = parse_native(&m.message, m.detail.as_deref(), m.context.as_deref()) {
                if let Some(o) = &c.origin {
                    if !ours.contains(o) {
                        continue;
                    }
                }
                let Some(rec) = native_record(cx, &m, c).await? else {
                    continue;
                };
                nat.push(rec);
            }
        }
    }
    Ok((pgl, nat, files))
}

async fn pglogical_record(
    cx: &mut Ctx<'_>,
    m: &LogMessage,
    c: PglogicalConflict,
) -> Result<Option<Imported>> {
    let (client, region, opts, remote) = (cx.client, cx.region, cx.opts, &cx.remote);
    let meta = &mut cx.meta;
    let Ok((schema, name)) = TableName::parse_user(&c.relation) else {
        return Ok(None);
    };
    let table = TableName::new(schema.unwrap_or_else(|| "public".into()), name);
    let Some(cols) = meta.columns(client, region, &table).await? else {
        // Not a table of this database.
        return Ok(None);
    };
    let local = c
        .local_tuple
        .as_deref()
        .map(|t| parse_tuple(t, Some(&cols)));
    let remote_t = c
        .remote_tuple
        .as_deref()
        .map(|t| parse_tuple(t, Some(&cols)));
    let mut truncated: Vec<String> = Vec::new();
    if let Some(l) = &local {
        truncated.extend(l.truncated.iter().map(|c| format!("local_row.{c}")));
    }
    if let Some(r) = &remote_t {
        truncated.extend(r.truncated.iter().map(|c| format!("remote_row.{c}")));
    }
    let key_cols = meta
        .key_columns(client, region, &table, c.index.as_deref())
        .await?;
    let (key, key_partial) = match remote_t.as_ref().or(local.as_ref()) {
        Some(t) => key_of(&t.values, &key_cols, &t.truncated),
        None => (Json::Object(Map::new()), key_cols.clone()),
    };
    let unchanged: Vec<String> = remote_t
        .as_ref()
        .map(|t| t.unchanged.clone())
        .unwrap_or_default();
    Ok(Some(Imported {
        at: m.time.map(|t| t.to_rfc3339()),
        record: ConflictRecord {
            table_name: table.to_string(),
            key,
            conflict_type: c.conflict_type.clone(),
            local_region: region.to_string(),
            remote_region: remote.clone(),
            local_row: local.map(|t| Json::Object(t.values)),
            remote_row: remote_t.map(|t| Json::Object(t.values)),
            resolution: Some(c.resolution.clone()),
            winner_region: winner(&c.resolution, region, remote.as_ref()),
            decided_by: Some(format!("pglogical:{}", c.resolution)),
            resolved: true,
            run_id: opts.run_id.clone(),
            details: Some(json!({
                "engine": "pglogical",
                "partial": true,
                "truncated": truncated,
                "key_truncated": key_partial,
                "unchanged_toast": unchanged,
                "index": c.index,
                "local_xid": c.local_xid,
                "local_origin": c.local_origin,
                "local_commit_ts": c.local_commit_ts,
                "remote_origin": c.remote_origin,
                "remote_commit_ts": c.remote_commit_ts,
                "commit_lsn": c.commit_lsn,
                "commit_lsn_note": "pglogical prints only the low 32 bits of the commit LSN",
                "before_triggers": c.before_triggers,
                "log_file": m.file,
                "log_line": m.line,
                "log_time": m.time_text,
                "pid": m.pid,
                "message": m.message,
            })),
            action: None,
            changed_columns: None,
        },
        source: SOURCE_PGLOGICAL.into(),
        source_position: m.position(),
    }))
}

async fn native_record(
    cx: &mut Ctx<'_>,
    m: &LogMessage,
    c: NativeConflict,
) -> Result<Option<Imported>> {
    let (client, region, opts, remote) = (cx.client, cx.region, cx.opts, &cx.remote);
    let meta = &mut cx.meta;
    let severity = m.severity.as_str();
    let table = TableName::new(c.schema.clone(), c.table.clone());
    if meta.columns(client, region, &table).await?.is_none() {
        return Ok(None);
    }
    // A conflict logged as an error stopped the apply worker: nothing was resolved.
    let resolved = !matches!(severity, "ERROR" | "FATAL" | "PANIC");
    let resolution = match c.conflict_type.as_str() {
        "update_origin_differs" | "delete_origin_differs" => "apply_remote",
        "update_missing" | "delete_missing" | "update_deleted" => "skip",
        _ => "error",
    };
    let resolved = resolved && resolution != "error";
    Ok(Some(Imported {
        at: m.time.map(|t| t.to_rfc3339()),
        record: ConflictRecord {
            table_name: table.to_string(),
            key: c.key.clone().unwrap_or_else(|| Json::Object(Map::new())),
            conflict_type: c.conflict_type.clone(),
            local_region: region.to_string(),
            remote_region: remote.clone(),
            local_row: None,
            remote_row: None,
            resolution: resolved.then(|| resolution.to_string()),
            winner_region: if resolved {
                winner(resolution, region, remote.as_ref())
            } else {
                None
            },
            decided_by: resolved.then(|| format!("postgresql:{resolution}")),
            resolved,
            run_id: opts.run_id.clone(),
            details: Some(json!({
                "engine": "postgresql",
                "partial": true,
                "severity": severity,
                "origin": c.origin,
                "finished_at_lsn": c.lsn,
                "log_file": m.file,
                "log_line": m.line,
                "log_time": m.time_text,
                "pid": m.pid,
                "message": m.message,
                "detail": m.detail,
            })),
            action: None,
            changed_columns: None,
        },
        source: SOURCE_PG_LOG.into(),
        source_position: m.position(),
    }))
}
