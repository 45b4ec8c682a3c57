//! Running one region's work: the write session (settings, replication origin), the
//! transactions, retries and the unique-swap fallback.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::error::{Error, Result, pg_message};
use crate::repair::plan::{ActionKind, TableShape, sql_literal};

use super::schedule::{RegionWork, Unit};
use super::sql::{batch_sql, conflicts_table};
use super::{ApplyOptions, ORIGIN_NAME};

/// What happened to one region's work.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegionOutcome {
    /// Per item: applied (true) / guard failed (false) / failed (`None` + error in
    /// `errors`), by item index.
    pub status: Vec<Option<bool>>,
    /// Errors of failed units, with the table index.
    pub errors: Vec<(usize, String)>,
    /// Rows written.
    pub written: usize,
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code().map(|c| c.code()),
        Some("40001") | Some("40P01") | Some("55P03")
    )
}

/// The replication origin of `--no-replicate` for one run in one region. Origins are
/// cluster-wide and one session at a time may use one, so each run and region has its own
/// (two regions, or two runs, sharing a cluster never collide); it is dropped at the end.
pub(crate) fn origin_name(run_id: &str, region: &str) -> String {
    let mut name = format!("{ORIGIN_NAME}:{run_id}:{region}");
    // PostgreSQL limits origin names to 512 bytes.
    while name.len() > 500 {
        name.pop();
    }
    name
}

/// Sets the session up for writing: fixed settings (so images compare exactly with the
/// ones read) and, with an `origin` (see [`origin_name`]), the replication origin.
pub(crate) async fn prepare_session(
    client: &Client,
    region: &str,
    origin: Option<&str>,
) -> Result<()> {
    crate::pg::session::apply(client, region).await?;
    if let Some(origin) = origin {
        let r = client.batch_execute(&origin_setup_sql(origin)).await;
        if let Err(e) = r {
            let hint = if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
            {
                " (this needs a superuser or a role granted EXECUTE on pg_replication_origin_create, \
                 pg_replication_origin_session_setup and pg_replication_origin_drop)"
            } else {
                ""
            };
            return Err(Error::Query {
                region: region.to_string(),
                context: "--no-replicate".into(),
                message: format!(
                    "cannot write under the replication origin {origin}: {}{hint}",
                    pg_message(&e)
                ),
            });
        }
    }
    Ok(())
}

pub(super) fn origin_setup_sql(origin: &str) -> String {
    let name = sql_literal(origin);
    format!(
        "SELECT pg_catalog.pg_replication_origin_create({name}) \
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_origin WHERE roname = {name}); \
         SELECT pg_catalog.pg_replication_origin_session_setup({name});"
    )
}

pub(super) fn origin_cleanup_sql(origin: &str) -> String {
    let name = sql_literal(origin);
    format!(
        "SELECT pg_catalog.pg_replication_origin_session_reset() \
         WHERE pg_catalog.pg_replication_origin_session_is_setup(); \
         SELECT pg_catalog.pg_replication_origin_drop(roname) \
         FROM pg_catalog.pg_replication_origin WHERE roname = {name};"
    )
}

/// Ends the replication-origin session set up by [`prepare_session`] and drops the origin.
pub(crate) async fn finish_session(client: &Client, origin: Option<&str>) {
    if let Some(origin) = origin {
        if let Err(e) = client.batch_execute(&origin_cleanup_sql(origin)).await {
            tracing::warn!(
                "could not drop the replication origin {origin}: {}",
                pg_message(&e)
            );
        }
    }
}

/// Runs one region's units on `client` (a session prepared with [`prepare_session`]).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_region(
    client: &Client,
    work: &RegionWork,
    shapes: &[&TableShape],
    table_names: &[String],
    run_id: &str,
    opts: &ApplyOptions,
    hard_cycle_tables: &[usize],
) -> Result<RegionOutcome> {
    let rc = conflicts_table(&opts.conflicts_schema);
    let mut out = RegionOutcome {
        status: vec![None; work.items.len()],
        ..Default::default()
    };
    let started = Instant::now();
    let total: usize = work
        .units
        .iter()
        .flat_map(|u| &u.steps)
        .map(|s| s.items.len())
        .sum();
    if let Some(p) = &opts.progress {
        p.start(&work.region, total as u64);
    }
    let mut done = 0usize;
    let mut stopped: Vec<usize> = Vec::new();
    for unit in &work.units {
        if unit.steps.iter().any(|s| stopped.contains(&s.table)) {
            continue;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match run_unit(client, work, unit, shapes, table_names, run_id, &rc).await {
                Ok(UnitResult::Rewritten(t)) => {
                    let who = trigger_names(client, shapes[t]).await;
                    out.errors.push((
                        t,
                        format!(
                            "region {}: table {}: a written row does not read back as written ({who} rewrites it), \
                             so repairing would never converge; nothing more of this table is written in this run \
                             (see the README, \"Triggers that rewrite rows\")",
                            work.region,
                            table_names.get(t).map(String::as_str).unwrap_or("?"),
                        ),
                    ));
                    stopped.push(t);
                    break;
                }
                Ok(UnitResult::Done(written)) => {
                    for step in &unit.steps {
                        for &i in &step.items {
                            out.status[i] = Some(written.contains(&i));
                        }
                    }
                    out.written += unit
                        .steps
                        .iter()
                        .filter(|s| s.kind != ActionKind::Manual)
                        .flat_map(|s| &s.items)
                        .filter(|i| written.contains(i))
                        .count();
                    break;
                }
                Err(e) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    // Winners that swap a unique value between rows collide midway through
                    // an UPDATE (non-deferrable unique constraints are checked row by row):
                    // the batch is written again as delete-then-insert in one transaction.
                    if e.code().map(|c| c.code()) == Some("23505")
                        && unit.steps.iter().all(|s| s.kind == ActionKind::Update)
                        && !client.is_closed()
                    {
                        match run_unit_swap(client, work, unit, shapes, table_names, run_id, &rc)
                            .await
                        {
                            Ok(Some(written)) => {
                                for step in &unit.steps {
                                    for &i in &step.items {
                                        out.status[i] = Some(written.contains(&i));
                                    }
                                }
                                out.written += written.len();
                                break;
                            }
                            Ok(None) => {}
                            Err(e2) => {
                                let _ = client.batch_execute("ROLLBACK").await;
                                tracing::debug!("swap retry failed: {}", pg_message(&e2));
                            }
                        }
                    }
                    if client.is_closed() {
                        return Err(Error::Connection {
                            region: work.region.clone(),
                            addr: String::new(),
                            message: format!("connection lost while applying: {}", pg_message(&e)),
                        });
                    }
                    if retryable(&e) && attempt < 5 {
                        tracing::warn!(region = %work.region, "batch retried: {}", pg_message(&e));
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        continue;
                    }
                    let t = unit.steps.first().map(|s| s.table).unwrap_or(0);
                    let mut msg = format!(
                        "region {}: table {}: batch of {} row(s) failed: {}",
                        work.region,
                        table_names.get(t).map(String::as_str).unwrap_or("?"),
                        unit.steps.iter().map(|s| s.items.len()).sum::<usize>(),
                        pg_message(&e)
                    );
                    if e.code().map(|c| c.code()) == Some("23503") && hard_cycle_tables.contains(&t)
                    {
                        msg.push_str(
                            " (the table is in a foreign-key cycle whose constraints are not DEFERRABLE; \
                             make them DEFERRABLE so fix can write the cycle in one transaction)",
                        );
                    }
                    // Reported in the table's `errors` (and by the caller): logged, not shouted.
                    tracing::info!("{msg}");
                    out.errors.push((t, msg));
                    break;
                }
            }
        }
        done += unit.steps.iter().map(|s| s.items.len()).sum::<usize>();
        if let Some(p) = &opts.progress {
            p.update(&work.region, done as u64);
            if done == total {
                p.finish(&work.region);
            }
        }
        if let Some(rps) = opts.max_rows_per_second.filter(|r| *r > 0.0) {
            let due = Duration::from_secs_f64(done as f64 / rps);
            let el = started.elapsed();
            if due > el {
                tokio::time::sleep(due - el).await;
            }
        }
    }
    Ok(out)
}

async fn run_unit(
    client: &Client,
    work: &RegionWork,
    unit: &Unit,
    shapes: &[&TableShape],
    table_names: &[String],
    run_id: &str,
    rc: &str,
) -> std::result::Result<UnitResult, tokio_postgres::Error> {
    client
        .batch_execute("START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE")
        .await?;
    if unit.deferred {
        client.batch_execute("SET CONSTRAINTS ALL DEFERRED").await?;
    }
    let mut written = Vec::new();
    for step in &unit.steps {
        let shape = shapes[step.table];
        let sql = batch_sql(shape, step.kind, rc, &|n| format!("${n}"));
        let items: Vec<serde_json::Value> = step
            .items
            .iter()
            .map(|&i| work.items[i].to_json(i))
            .collect();
        let items = serde_json::Value::Array(items).to_string();
        let rows = client
            .query(
                &sql,
                &[&items, &table_names[step.table], &work.region, &run_id],
            )
            .await?;
        for r in &rows {
            if r.len() > 1 && r.get::<_, bool>(1) {
                client.batch_execute("ROLLBACK").await?;
                return Ok(UnitResult::Rewritten(step.table));
            }
        }
        for r in rows {
            let i: i32 = r.get(0);
            written.push(i as usize);
        }
    }
    client.batch_execute("COMMIT").await?;
    Ok(UnitResult::Done(written))
}

/// What one transaction did.
enum UnitResult {
    /// Committed; these items were written.
    Done(Vec<usize>),
    /// Rolled back: a written row of this table did not read back as written.
    Rewritten(usize),
}

/// The enabled user triggers of a table, for the message about rows rewritten on write.
async fn trigger_names(client: &Client, shape: &TableShape) -> String {
    let q = "SELECT string_agg(tgname::text, ', ' ORDER BY tgname) FROM pg_trigger \
             WHERE tgrelid = $1::text::regclass AND NOT tgisinternal AND tgenabled <> 'D'";
    match client.query_one(q, &[&shape.table.quoted()]).await {
        Ok(r) => r
            .get::<_, Option<String>>(0)
            .map(|t| format!("trigger(s) {t}"))
            .unwrap_or_else(|| "a rule or trigger".to_string()),
        Err(_) => "a rule or trigger".to_string(),
    }
}

/// Writes a unit of updates as delete-then-insert in one transaction, so that rows may swap
/// values of a unique constraint. Only for tables that no foreign key references (a delete
/// there could cascade); each row is deleted only while it is still exactly as read, and
/// the transaction commits only when every deleted row was inserted again (its archive
/// record is the one an update writes). `None` when the table does not qualify or the
/// rows do not all go through (rolled back, nothing changed).
async fn run_unit_swap(
    client: &Client,
    work: &RegionWork,
    unit: &Unit,
    shapes: &[&TableShape],
    table_names: &[String],
    run_id: &str,
    rc: &str,
) -> std::result::Result<Option<Vec<usize>>, tokio_postgres::Error> {
    for step in &unit.steps {
        let referenced: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contype = 'f' AND confrelid = $1::text::regclass)",
                &[&shapes[step.table].table.quoted()],
            )
            .await?
            .get(0);
        if referenced {
            return Ok(None);
        }
    }
    client
        .batch_execute("START TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE")
        .await?;
    let mut written = Vec::new();
    for step in &unit.steps {
        let shape = shapes[step.table];
        let items: Vec<serde_json::Value> = step
            .items
            .iter()
            .map(|&i| work.items[i].to_json(i))
            .collect();
        let items = serde_json::Value::Array(items).to_string();
        let del = format!(
            "WITH items AS (SELECT e.j FROM jsonb_array_elements(($1)::text::jsonb) AS e(j)),\n \
             w AS (DELETE FROM {tbl} AS t USING items AS i \
             CROSS JOIN LATERAL jsonb_populate_record(NULL::{tbl}, i.j->'k') AS k \
             WHERE {join} AND to_jsonb(t)::text = (i.j->>'o') RETURNING i.j AS j)\n\
             SELECT (w.j->>'i')::int4 FROM w",
            tbl = shape.table.quoted(),
            join = shape.key_join("t", "k"),
        );
        let deleted: Vec<i32> = client
            .query(&del, &[&items])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let deleted_items: Vec<serde_json::Value> = deleted
            .iter()
            .map(|&i| work.items[i as usize].to_json(i as usize))
            .collect();
        let ins = batch_sql(shape, ActionKind::Insert, rc, &|n| format!("${n}"));
        let deleted_json = serde_json::Value::Array(deleted_items).to_string();
        let mut inserted: Vec<i32> = client
            .query(
                &ins,
                &[
                    &deleted_json,
                    &table_names[step.table],
                    &work.region,
                    &run_id,
                ],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        inserted.sort_unstable();
        let mut want = deleted.clone();
        want.sort_unstable();
        if inserted != want {
            client.batch_execute("ROLLBACK").await?;
            return Ok(None);
        }
        written.extend(inserted.into_iter().map(|i| i as usize));
    }
    client.batch_execute("COMMIT").await?;
    Ok(Some(written))
}

/// Ensures `replication_conflicts` exists in a region (creates or upgrades it with
/// [`crate::store::conflicts::init`]).
pub(crate) async fn ensure_conflicts_table(
    client: &Client,
    region: &str,
    schema: &str,
) -> Result<()> {
    crate::store::conflicts::init(
        client,
        region,
        &crate::store::conflicts::table_name(Some(schema)),
    )
    .await
    .map(|_| ())
}
