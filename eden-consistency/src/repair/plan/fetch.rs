//! Reading rows: the generic fetch statement (one per batch of keys and region), its
//! row images and compared values, and SQL literals.

use std::fmt::Write as _;

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::ident::quote_ident;

use super::{FetchedRow, KeyMap, TableShape};

/// True when `track_commit_timestamp` is on in this session's server.
pub async fn commit_ts_enabled(client: &Client, region: &str) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT current_setting('track_commit_timestamp')::bool",
            &[],
        )
        .await
        .map_err(|e| Error::query(region, "reading track_commit_timestamp", e))?;
    Ok(row.get(0))
}

/// A JSON array text of key maps, for `jsonb_array_elements($1::text::jsonb)`.
pub fn keys_json(keys: &[&KeyMap]) -> String {
    serde_json::Value::Array(
        keys.iter()
            .map(|k| serde_json::Value::Object((*k).clone()))
            .collect(),
    )
    .to_string()
}

/// The statement that reads, for a JSON array of key maps (`$1`, text), every existing row:
/// `(ordinal, image, commit timestamp, compared columns typed...)`.
pub fn fetch_sql(shape: &TableShape, commit_ts: bool) -> String {
    let tbl = shape.table.quoted();
    let ts = if commit_ts {
        format!(
            "((extract(epoch FROM pg_catalog.pg_xact_commit_timestamp(t.xmin)) - {}) * 1000000)::int8",
            crate::row::value::PG_EPOCH_UNIX_SECS
        )
    } else {
        "NULL::int8".to_string()
    };
    let mut sql = format!(
        "SELECT (e.ord - 1)::int4, to_jsonb(t)::text, {ts}, {}",
        json_nulls_expr(shape, "t")
    );
    for c in shape.compared_columns() {
        sql.push_str(", ");
        sql.push_str(&crate::pg::expr::select_expr(c, Some("t")));
    }
    let _ = write!(
        sql,
        " FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e(j, ord) \
         CROSS JOIN LATERAL jsonb_populate_record(NULL::{tbl}, e.j) AS k \
         JOIN {tbl} AS t ON {}",
        shape.key_join("t", "k")
    );
    sql
}

/// `text[]` of the json/jsonb columns of row `alias` that hold JSON `null`.
pub fn json_nulls_expr(shape: &TableShape, alias: &str) -> String {
    let parts: Vec<String> = shape
        .columns
        .iter()
        .filter(|c| c.is_json() && !c.generated)
        .map(|c| {
            let q = quote_ident(&c.name);
            format!(
                "CASE WHEN {alias}.{q} IS NOT NULL AND {alias}.{q}::text = 'null' THEN {} END",
                sql_literal(&c.name)
            )
        })
        .collect();
    if parts.is_empty() {
        "'{}'::text[]".into()
    } else {
        format!("array_remove(ARRAY[{}]::text[], NULL)", parts.join(", "))
    }
}

/// Reads the rows of `keys` in one region: `result[i]` is the row of `keys[i]`, or `None`
/// when the region lacks it.
pub async fn fetch_rows(
    client: &Client,
    region: &str,
    shape: &TableShape,
    keys: &[&KeyMap],
    commit_ts: bool,
) -> Result<Vec<Option<FetchedRow>>> {
    let mut out: Vec<Option<FetchedRow>> = vec![None; keys.len()];
    if keys.is_empty() {
        return Ok(out);
    }
    let sql = fetch_sql(shape, commit_ts);
    let rows = client
        .query(&sql, &[&keys_json(keys)])
        .await
        .map_err(|e| Error::query(region, format!("reading rows of {} by key", shape.table), e))?;
    let cols = shape.compared_columns();
    for r in rows {
        let i: i32 = r.get(0);
        let image: String = r.get(1);
        let ts: Option<i64> = r.get(2);
        let json_nulls: Vec<String> = r.get(3);
        let values = crate::pg::decode::decode_row(&r, 4, &cols).map_err(|m| Error::Table {
            table: shape.table.to_string(),
            message: format!("in region {region}: {m}"),
        })?;
        if let Some(slot) = out.get_mut(i as usize) {
            *slot = Some(FetchedRow {
                image,
                commit_ts_micros: ts,
                values,
                json_nulls,
            });
        }
    }
    Ok(out)
}

/// A SQL string literal, safe whatever `standard_conforming_strings` says
/// (see [`crate::pg::ident::quote_literal`]).
pub fn sql_literal(s: &str) -> String {
    crate::pg::ident::quote_literal(s)
}
