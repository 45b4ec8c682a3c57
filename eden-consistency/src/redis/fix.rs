//! Repairing a cache: invalidate (delete everywhere) or copy one region's version.
//!
//! Each change is guarded: the key is `WATCH`ed on a connection of its own, its record
//! (type, digest, expiry) is read again and compared with what the check saw, its `DUMP`
//! payload and remaining TTL are appended to the archive (and flushed to disk), and only then
//! the change runs in `MULTI`/`EXEC`. A key that changed since it was read is left alone
//! and reported; the run exits 1 and the next run sees it again.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use redis::Value;
use redis::aio::MultiplexedConnection;
use serde::Serialize;

use super::check::{
    CacheCheckOptions, CacheChecker, CacheDifference, CacheReport, classify, display_key,
    same_record,
};
use super::digest::{self, DigestCtx};
use crate::error::{Error, Result};

/// How to fix a cache.
#[derive(Debug, Clone, Default)]
pub struct CacheFixOptions {
    /// The check that finds the differences.
    pub check: CacheCheckOptions,
    /// Plan only: write nothing anywhere.
    pub dry_run: bool,
    /// Copy this region's version to the others (else delete the key everywhere).
    pub from: Option<String>,
    /// The archive file (default `eden-cache-archive-<run_id>.jsonl` in the current folder).
    pub archive: Option<PathBuf>,
}

/// One planned or applied change.
#[derive(Debug, Clone, Serialize)]
pub struct CacheAction {
    /// The key (escaped like in the check report).
    pub key: String,
    /// The key's bytes in base64 when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_base64: Option<String>,
    /// The region changed.
    pub region: String,
    /// `delete`, `update` or `insert`.
    pub action: &'static str,
    /// The `--from` region, or null for an invalidation.
    pub winner_region: Option<String>,
    /// `invalidate` or `from_region`.
    pub decided_by: String,
    /// `planned` (dry run), `applied`, `changed` (left alone: it changed since it was
    /// read) or `error`.
    pub status: &'static str,
    /// Why, for `changed` and `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The cache's entry of the fix report.
#[derive(Debug, Clone, Serialize)]
pub struct CacheFixTable {
    /// The cache database's name.
    pub table: String,
    /// `invalidate` or `from:<region>`.
    pub resolution: String,
    /// Every change, planned or applied.
    pub actions: Vec<CacheAction>,
    /// Changes applied.
    pub applied: u64,
    /// Differences left as they were (in flight, changed since read, failed, or a dry run).
    pub unresolved: u64,
    /// Keys left alone because they were still being written.
    pub in_flight: u64,
}

/// The result of `fix` on a cache (the contract's fix report shape).
#[derive(Debug, Clone, Serialize)]
pub struct CacheFixReport {
    /// This run's id.
    pub run_id: String,
    /// True for a plan only.
    pub dry_run: bool,
    /// True when the re-check after applying found every region equal.
    pub consistent: bool,
    /// The cache database's name.
    pub database: String,
    /// Always `redis`.
    pub kind: &'static str,
    /// Where overwritten and deleted keys were archived (null for a dry run or when
    /// nothing was changed).
    pub archive: Option<String>,
    /// One entry: the cache.
    pub tables: Vec<CacheFixTable>,
    /// The check that found the differences.
    #[serde(skip)]
    pub check: Option<CacheReport>,
}

impl CacheFixReport {
    /// 0 when consistent afterwards, else 1.
    pub fn exit_code(&self) -> u8 {
        if self.consistent { 0 } else { 1 }
    }

    /// The first error, if a change failed.
    pub fn first_error(&self) -> Option<String> {
        self.tables
            .iter()
            .flat_map(|t| &t.actions)
            .find(|a| a.status == "error")
            .map(|a| {
                format!(
                    "region {}: key {}: {}",
                    a.region,
                    a.key,
                    a.message.as_deref().unwrap_or("failed")
                )
            })
    }
}

/// One archive line.
#[derive(Serialize)]
struct ArchiveLine<'a> {
    run_id: &'a str,
    database: &'a str,
    region: &'a str,
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_base64: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'a str,
    dump_base64: String,
    pttl: i64,
    archived_at: String,
    action: &'a str,
}

struct Archive {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Archive {
    fn write(&mut self, line: &ArchiveLine<'_>) -> Result<()> {
        let ioerr = |e: std::io::Error| Error::Io {
            path: self.path.display().to_string(),
            message: format!("cannot write the archive: {e}"),
        };
        if self.file.is_none() {
            self.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(ioerr)?,
            );
        }
        let f = self.file.as_mut().expect("opened");
        let mut text = serde_json::to_string(line).unwrap_or_default();
        text.push('\n');
        f.write_all(text.as_bytes()).map_err(ioerr)?;
        f.sync_data().map_err(ioerr)?;
        Ok(())
    }
}

/// A `--from` region's `DUMP` payload and absolute expiry of a key (`None`: it lacks the
/// key), or why it could not be used.
type SourcePayload = std::result::Result<Option<(Vec<u8>, i64)>, String>;

/// Planned change of one key in one region.
struct Planned {
    diff: usize,
    region: usize,
    action: &'static str,
}

impl CacheChecker {
    /// Checks, then repairs each confirmed difference (see the module docs).
    pub async fn fix(&self, opts: &CacheFixOptions) -> Result<CacheFixReport> {
        let from = match &opts.from {
            Some(name) => Some(self.region_index(name).ok_or_else(|| {
                let known: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
                Error::Usage(format!(
                    "--from {name}: no such region (defined: {})",
                    known.join(", ")
                ))
            })?),
            None => None,
        };
        let run_id = opts
            .check
            .run_id
            .clone()
            .unwrap_or_else(crate::repair::plan::new_run_id);
        let check_opts = CacheCheckOptions {
            run_id: Some(run_id.clone()),
            max_differences: None,
            ..opts.check.clone()
        };
        let report = self.check(&check_opts).await?;
        let resolution = match from {
            Some(i) => format!("from:{}", self.regions[i].name),
            None => "invalidate".to_string(),
        };
        let decided_by = match from {
            Some(_) => "from_region",
            None => "invalidate",
        };
        let tol = opts.check.ttl_tolerance.as_millis() as i64;
        // Plan.
        let mut plan = Vec::new();
        for (di, d) in report.differences.iter().enumerate() {
            if d.in_flight {
                continue;
            }
            match from {
                None => {
                    for (ri, rec) in d.records.iter().enumerate() {
                        if rec.is_some() {
                            plan.push(Planned {
                                diff: di,
                                region: ri,
                                action: "delete",
                            });
                        }
                    }
                }
                Some(s) => {
                    let src = d.records[s];
                    for (ri, rec) in d.records.iter().enumerate() {
                        if ri == s {
                            continue;
                        }
                        let action = match (src, rec) {
                            (None, Some(_)) => "delete",
                            (None, None) => continue,
                            (Some(_), None) => "insert",
                            (Some(_), Some(_)) if same_record(&src, rec, tol) => continue,
                            (Some(_), Some(_)) => "update",
                        };
                        plan.push(Planned {
                            diff: di,
                            region: ri,
                            action,
                        });
                    }
                }
            }
        }
        let winner = from.map(|i| self.regions[i].name.clone());
        let mut actions: Vec<CacheAction> = plan
            .iter()
            .map(|p| {
                let d = &report.differences[p.diff];
                CacheAction {
                    key: d.key.clone(),
                    key_base64: d.key_base64.clone(),
                    region: self.regions[p.region].name.clone(),
                    action: p.action,
                    winner_region: winner.clone(),
                    decided_by: decided_by.to_string(),
                    status: "planned",
                    message: None,
                }
            })
            .collect();
        let in_flight = report.in_flight_count;
        let mut archive_path = None;
        let mut applied = 0u64;
        let consistent;
        if opts.dry_run {
            consistent = report.difference_count == 0 && in_flight == 0;
        } else {
            let path = opts
                .archive
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("eden-cache-archive-{run_id}.jsonl")));
            let mut archive = Archive {
                path: path.clone(),
                file: None,
            };
            let (ctx, scripts) = self.contexts(&opts.check).await;
            let mut conns: HashMap<(usize, usize), MultiplexedConnection> = HashMap::new();
            // Source payloads for --from, read once per key.
            let mut payloads: HashMap<usize, SourcePayload> = HashMap::new();
            for (p, a) in plan.iter().zip(actions.iter_mut()) {
                let d = &report.differences[p.diff];
                if let Some(s) = from {
                    if let std::collections::hash_map::Entry::Vacant(slot) = payloads.entry(p.diff)
                    {
                        let got = self
                            .source_payload(
                                s,
                                d,
                                &ctx[s][self.regions[s].node_index(&d.raw_key)],
                                &scripts[s],
                                &mut conns,
                                tol,
                            )
                            .await;
                        slot.insert(got);
                    }
                }
                let payload = match payloads.get(&p.diff) {
                    Some(Ok(pl)) => pl.clone(),
                    Some(Err(m)) => {
                        a.status = "changed";
                        a.message = Some(m.clone());
                        continue;
                    }
                    None => None,
                };
                let outcome = self
                    .apply_one(
                        p,
                        d,
                        payload.as_ref(),
                        &ctx[p.region][self.regions[p.region].node_index(&d.raw_key)],
                        &scripts[p.region],
                        &mut conns,
                        &mut archive,
                        &run_id,
                        tol,
                    )
                    .await;
                match outcome {
                    Ok(None) => {
                        a.status = "applied";
                        applied += 1;
                    }
                    Ok(Some(m)) => {
                        a.status = "changed";
                        a.message = Some(m);
                    }
                    Err(e) => {
                        if matches!(e, Error::Io { .. }) {
                            return Err(e);
                        }
                        a.status = "error";
                        a.message = Some(e.to_string());
                    }
                }
            }
            if archive.file.is_some() {
                archive_path = Some(path.display().to_string());
            }
            // Re-check the keys that differed.
            let keys: Vec<&[u8]> = report
                .differences
                .iter()
                .map(|d| d.raw_key.as_slice())
                .collect();
            let now = self.read_now(&opts.check, &keys).await?;
            tracing::debug!("re-check after fix: {now:?}");
            consistent = in_flight == 0 && now.iter().all(|recs| classify(recs, tol).is_none());
        }
        let resolved_diffs: std::collections::HashSet<usize> = if opts.dry_run {
            Default::default()
        } else {
            let mut bad = std::collections::HashSet::new();
            for (p, a) in plan.iter().zip(&actions) {
                if a.status != "applied" {
                    bad.insert(p.diff);
                }
            }
            (0..report.differences.len())
                .filter(|i| !report.differences[*i].in_flight && !bad.contains(i))
                .collect()
        };
        let unresolved = report.difference_count + in_flight - resolved_diffs.len() as u64;
        Ok(CacheFixReport {
            run_id,
            dry_run: opts.dry_run,
            consistent,
            database: self.database.clone(),
            kind: "redis",
            archive: archive_path,
            tables: vec![CacheFixTable {
                table: self.database.clone(),
                resolution,
                actions,
                applied,
                unresolved,
                in_flight,
            }],
            check: Some(report),
        })
    }

    async fn dedicated<'a>(
        &self,
        conns: &'a mut HashMap<(usize, usize), MultiplexedConnection>,
        region: usize,
        key: &[u8],
    ) -> Result<&'a mut MultiplexedConnection> {
        let r = &self.regions[region];
        let ni = r.node_index(key);
        if let std::collections::hash_map::Entry::Vacant(v) = conns.entry((region, ni)) {
            let c = r.nodes[ni].dedicated().await.map_err(|e| {
                r.conn_err(format!(
                    "cannot connect: {}",
                    super::connect::redis_message(&e)
                ))
            })?;
            v.insert(c);
        }
        Ok(conns.get_mut(&(region, ni)).expect("inserted"))
    }

    /// The source's `DUMP` payload and absolute expiry of a key, if it still holds what the
    /// check saw; `Err(message)` when it changed.
    async fn source_payload(
        &self,
        s: usize,
        d: &CacheDifference,
        ctx: &DigestCtx,
        script: &redis::Script,
        conns: &mut HashMap<(usize, usize), MultiplexedConnection>,
        tol: i64,
    ) -> SourcePayload {
        let r = &self.regions[s];
        let key = d.raw_key.as_slice();
        let conn = self
            .dedicated(conns, s, key)
            .await
            .map_err(|e| e.to_string())?;
        let q = |e: redis::RedisError| {
            format!("region {}: {}", r.name, super::connect::redis_message(&e))
        };
        let _: () = redis::cmd("WATCH")
            .arg(key)
            .query_async(conn)
            .await
            .map_err(q)?;
        let now = digest::read_keys(conn, ctx, script, &[key])
            .await
            .map_err(q)?;
        if !same_record(&now[0], &d.records[s], tol) {
            let _: () = redis::cmd("UNWATCH").query_async(conn).await.map_err(q)?;
            return Err(format!("the key changed in {} since it was read", r.name));
        }
        let Some(rec) = now[0] else {
            let _: () = redis::cmd("UNWATCH").query_async(conn).await.map_err(q)?;
            return Ok(None);
        };
        let dump: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(key)
            .query_async(conn)
            .await
            .map_err(q)?;
        // An empty transaction tells whether the key changed since WATCH.
        let v: Value = redis::pipe().atomic().query_async(conn).await.map_err(q)?;
        if matches!(v, Value::Nil) {
            return Err(format!("the key changed in {} since it was read", r.name));
        }
        match dump {
            Some(p) => Ok(Some((p, rec.expire_ms))),
            None => Err(format!(
                "the key vanished from {} since it was read",
                r.name
            )),
        }
    }

    /// Applies one planned change; `Ok(Some(why))` when the key was left alone.
    #[allow(clippy::too_many_arguments)]
    async fn apply_one(
        &self,
        p: &Planned,
        d: &CacheDifference,
        payload: Option<&(Vec<u8>, i64)>,
        ctx: &DigestCtx,
        script: &redis::Script,
        conns: &mut HashMap<(usize, usize), MultiplexedConnection>,
        archive: &mut Archive,
        run_id: &str,
        tol: i64,
    ) -> Result<Option<String>> {
        let r = &self.regions[p.region];
        let key = d.raw_key.as_slice();
        let conn = self.dedicated(conns, p.region, key).await?;
        let q = |e: redis::RedisError| r.query_err(&format!("fixing key {}", d.key), &e);
        let _: () = redis::cmd("WATCH")
            .arg(key)
            .query_async(conn)
            .await
            .map_err(q)?;
        let now = digest::read_keys(conn, ctx, script, &[key])
            .await
            .map_err(q)?;
        if !same_record(&now[0], &d.records[p.region], tol) {
            let _: () = redis::cmd("UNWATCH").query_async(conn).await.map_err(q)?;
            return Ok(Some(format!(
                "the key changed in {} since it was read",
                r.name
            )));
        }
        if let Some(rec) = now[0] {
            let (dump, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
                .cmd("DUMP")
                .arg(key)
                .cmd("PTTL")
                .arg(key)
                .query_async(conn)
                .await
                .map_err(q)?;
            if let Some(dump) = dump {
                let (k, k64) = display_key(key);
                archive.write(&ArchiveLine {
                    run_id,
                    database: &self.database,
                    region: &r.name,
                    key: &k,
                    key_base64: k64.as_deref(),
                    kind: rec.type_name(),
                    dump_base64: base64::engine::general_purpose::STANDARD.encode(&dump),
                    pttl,
                    archived_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    action: p.action,
                })?;
            }
        }
        let mut tx = redis::pipe();
        tx.atomic();
        match payload {
            Some((dump, expire_ms)) => {
                tx.cmd("RESTORE").arg(key);
                if *expire_ms >= 0 {
                    tx.arg(*expire_ms)
                        .arg(dump.as_slice())
                        .arg("REPLACE")
                        .arg("ABSTTL");
                } else {
                    tx.arg(0).arg(dump.as_slice()).arg("REPLACE");
                }
            }
            None => {
                tx.cmd("DEL").arg(key);
            }
        }
        let v: Value = tx.query_async(conn).await.map_err(q)?;
        if matches!(v, Value::Nil) {
            return Ok(Some(format!(
                "the key changed in {} since it was read",
                r.name
            )));
        }
        Ok(None)
    }
}
