//! Reading deletion times of absent rows from a table's tombstone table.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::ident::{TableName, quote_ident};

use super::fetch::keys_json;
use super::{KeyMap, TableShape};

/// Reads deletion times of `keys` from a tombstone table (key columns + `deleted_at`).
pub(super) async fn fetch_tombstones(
    client: &Client,
    region: &str,
    shape: &TableShape,
    tomb: &(TableName, String),
    keys: &[&KeyMap],
) -> Result<Vec<Option<crate::row::value::Value>>> {
    let (tt, col) = tomb;
    let oid_row = client
        .query_opt(
            "SELECT a.atttypid FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped",
            &[&tt.schema, &tt.name, col],
        )
        .await
        .map_err(|e| Error::query(region, format!("reading tombstone table {tt}"), e))?;
    let Some(oid_row) = oid_row else {
        return Err(Error::Table {
            table: shape.table.to_string(),
            message: format!(
                "tombstone table {tt} or its column {col} does not exist in region {region}"
            ),
        });
    };
    let spec = crate::pg::schema::Column::new(col.clone(), oid_row.get::<_, u32>(0));
    let join = shape
        .key_columns
        .iter()
        .map(|c| {
            let q = quote_ident(c);
            format!("g.{q} = k.{q}")
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let sql = format!(
        "SELECT (e.ord - 1)::int4, {} FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e(j, ord) \
         CROSS JOIN LATERAL jsonb_populate_record(NULL::{}, e.j) AS k JOIN {} AS g ON {join} ORDER BY 2",
        crate::pg::expr::select_expr(&spec, Some("g")),
        shape.table.quoted(),
        tt.quoted()
    );
    let rows = client
        .query(&sql, &[&keys_json(keys)])
        .await
        .map_err(|e| Error::query(region, format!("reading tombstone table {tt}"), e))?;
    let mut out = vec![None; keys.len()];
    for r in rows {
        let i: i32 = r.get(0);
        let v = crate::pg::decode::decode(&r, 1, &spec).map_err(|m| Error::Table {
            table: tt.to_string(),
            message: m,
        })?;
        // newest deletion wins (rows are ordered by the time)
        if let Some(slot) = out.get_mut(i as usize) {
            *slot = Some(v);
        }
    }
    Ok(out)
}
