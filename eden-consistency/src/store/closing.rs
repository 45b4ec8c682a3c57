//! Closing open records of `replication_conflicts`.
//!
//! `check --record` (and `fix` for keys a human must decide) leave unresolved records. When a
//! later `fix` resolves such a key, it closes every open record of that key in every region:
//! `resolved_at` = now, `resolution` = the rule that resolved it, `winner_region` and the
//! fix's `run_id`. An operator acknowledges records by hand with `conflicts resolve --id N`,
//! which sets `resolved_at`, `decided_by = 'manual'` and keeps the note in `details`.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::ident::TableName;

/// A key a run resolved: its key (as JSON, like the records' `key`) and the winning region.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedKey {
    /// The key, as in the report (`{"id": 42}`).
    pub key: serde_json::Value,
    /// The winning region, if any.
    pub winner_region: Option<String>,
}

/// Closes, in one region, the open records (`resolved_at` NULL) of `keys` of `table_name`
/// that another run left (never records imported from the replication engine, which have a
/// `source`). Returns how many were closed. A database without the records
/// table has nothing to close.
pub async fn close_resolved(
    client: &Client,
    region: &str,
    conflicts: &TableName,
    table_name: &str,
    resolution: &str,
    run_id: &str,
    keys: &[ResolvedKey],
) -> Result<u64> {
    if keys.is_empty() || !crate::store::conflicts::exists(client, region, conflicts).await? {
        return Ok(0);
    }
    let key_texts: Vec<String> = keys.iter().map(|k| k.key.to_string()).collect();
    let winners: Vec<Option<String>> = keys.iter().map(|k| k.winner_region.clone()).collect();
    let sql = format!(
        "UPDATE {} AS r SET resolved_at = now(), resolution = $2, winner_region = u.w, run_id = $3 \
         FROM unnest($4::text[], $5::text[]) AS u(k, w) \
         WHERE r.table_name = $1 AND r.resolved_at IS NULL AND r.key = u.k::jsonb \
           AND r.run_id IS DISTINCT FROM $3 \
           AND to_jsonb(r) ->> 'source' IS NULL",
        conflicts.quoted()
    );
    client
        .execute(
            &sql,
            &[&table_name, &resolution, &run_id, &key_texts, &winners],
        )
        .await
        .map_err(|e| {
            Error::query(
                region,
                format!("closing the resolved records of {table_name} in {conflicts}"),
                &e,
            )
        })
}

/// What became of one id given to [`resolve_by_hand`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HandResolution {
    /// The record's id.
    pub id: i64,
    /// The region holding it.
    pub region: String,
    /// `resolved` (closed now) or `already_resolved` (closed before; left as it was).
    pub outcome: String,
}

/// Acknowledges records by hand: each id must name exactly one record among `regions`
/// (`(name, client)` pairs; give one region to pick among regions that reuse an id). Open
/// records get `resolved_at` = now, `decided_by = 'manual'`, `resolution` `manual` when it had
/// none, and `details.note` = `note`. Nothing is changed when an id is unknown or ambiguous.
pub async fn resolve_by_hand(
    regions: &[(&str, &Client)],
    conflicts: &TableName,
    ids: &[i64],
    note: Option<&str>,
) -> Result<Vec<HandResolution>> {
    // Find every id first: all must be known and unambiguous before anything changes.
    let mut found: Vec<(i64, usize, bool)> = Vec::new();
    for &id in ids {
        let mut hits = Vec::new();
        for (ri, (name, client)) in regions.iter().enumerate() {
            if !crate::store::conflicts::exists(client, name, conflicts).await? {
                continue;
            }
            let sql = format!(
                "SELECT resolved_at IS NOT NULL FROM {} WHERE id = $1",
                conflicts.quoted()
            );
            let row = client
                .query_opt(&sql, &[&id])
                .await
                .map_err(|e| Error::query(name, format!("reading {conflicts}"), e))?;
            if let Some(r) = row {
                hits.push((ri, r.get::<_, bool>(0)));
            }
        }
        match hits.as_slice() {
            [] => {
                return Err(Error::Usage(format!(
                    "conflict record {id} does not exist in {conflicts} of {}; nothing was changed",
                    regions
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            [(ri, done)] => found.push((id, *ri, *done)),
            many => {
                let names: Vec<&str> = many.iter().map(|(ri, _)| regions[*ri].0).collect();
                return Err(Error::Usage(format!(
                    "conflict record {id} exists in regions {}; give --in REGION to say which; nothing was changed",
                    names.join(", ")
                )));
            }
        }
    }
    let mut out = Vec::new();
    for (id, ri, done) in found {
        let (name, client) = regions[ri];
        if !done {
            let sql = format!(
                "UPDATE {} SET resolved_at = now(), decided_by = 'manual', \
                 resolution = COALESCE(resolution, 'manual'), \
                 details = COALESCE(details, '{{}}'::jsonb) || jsonb_strip_nulls(jsonb_build_object('note', $2::text, 'resolved_by', 'conflicts resolve')) \
                 WHERE id = $1 AND resolved_at IS NULL",
                conflicts.quoted()
            );
            client.execute(&sql, &[&id, &note]).await.map_err(|e| {
                Error::query(name, format!("resolving record {id} in {conflicts}"), &e)
            })?;
        }
        out.push(HandResolution {
            id,
            region: name.to_string(),
            outcome: if done { "already_resolved" } else { "resolved" }.to_string(),
        });
    }
    Ok(out)
}
