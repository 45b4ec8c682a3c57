//! Collisions on unique constraints other than the key.
//!
//! The same logical row created in two regions under different keys (a unique
//! `(tenant_id, path)`, different `id`) cannot be copied across: inserting one region's row
//! into the other meets the other row on the unique constraint. `fix` writes inserts with
//! `ON CONFLICT DO NOTHING`, so such a row is not written; this module finds which
//! constraint and which existing row it met, so the key is reported unresolved with that
//! reason instead of "changed since read" on every run.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::repair::plan::TableShape;

/// A winner row that meets another row on a unique constraint.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Collision {
    /// The region where the row could not be written.
    pub region: String,
    /// The unique index (constraint) met.
    pub constraint: String,
    /// Its columns.
    pub columns: Vec<String>,
    /// The key of the row that was to be written.
    pub key: serde_json::Value,
    /// The key of the row already holding those values there.
    pub other_key: serde_json::Value,
}

impl Collision {
    /// One sentence for people.
    pub fn message(&self) -> String {
        format!(
            "unique collision in region {} on {} ({}): key {} cannot be written because key {} holds the same values; \
             left unresolved, decide which row stays by hand",
            self.region,
            self.constraint,
            self.columns.join(", "),
            self.key,
            self.other_key
        )
    }
}

/// Looks for a row other than `key`'s that holds the same values as `row_image` (the
/// winner's `to_jsonb` text) on one of the table's unique indexes (full, no expressions)
/// besides the key's own.
pub(crate) async fn find_collision(
    client: &Client,
    region: &str,
    shape: &TableShape,
    key: &serde_json::Value,
    row_image: &str,
) -> Result<Option<Collision>> {
    let tbl = shape.table.quoted();
    let uniques = client
        .query(
            "SELECT i.indexrelid::regclass::text, array_agg(a.attname::text ORDER BY k.ord) \
             FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indrelid = $1::text::regclass AND i.indisunique \
               AND i.indexprs IS NULL AND i.indpred IS NULL \
             GROUP BY 1 ORDER BY 1",
            &[&tbl],
        )
        .await
        .map_err(|e| Error::query(region, format!("reading the unique indexes of {}", shape.table), &e))?;
    let mut key_cols = shape.key_columns.clone();
    key_cols.sort();
    for u in uniques {
        let name: String = u.get(0);
        let cols: Vec<String> = u.get(1);
        let mut sorted = cols.clone();
        sorted.sort();
        if sorted == key_cols {
            continue;
        }
        let q = crate::pg::ident::quote_ident;
        let same = cols
            .iter()
            .map(|c| format!("t.{c} = n.{c}", c = q(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let other_row = shape
            .key_columns
            .iter()
            .map(|c| format!("t.{c} IS DISTINCT FROM n.{c}", c = q(c)))
            .collect::<Vec<_>>()
            .join(" OR ");
        let key_obj = shape
            .key_columns
            .iter()
            .map(|c| format!("{}, t.{}", crate::repair::plan::sql_literal(c), q(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT jsonb_build_object({key_obj}) FROM {tbl} AS t, \
             jsonb_populate_record(NULL::{tbl}, $1::text::jsonb) AS n \
             WHERE {same} AND ({other_row}) LIMIT 1"
        );
        let hit = client.query_opt(&sql, &[&row_image]).await.map_err(|e| {
            Error::query(
                region,
                format!("looking for unique collisions in {}", shape.table),
                &e,
            )
        })?;
        if let Some(h) = hit {
            return Ok(Some(Collision {
                region: region.to_string(),
                constraint: name,
                columns: cols,
                key: key.clone(),
                other_key: h.get(0),
            }));
        }
    }
    Ok(None)
}
