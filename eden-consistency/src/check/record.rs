//! `--record`: differences written to `replication_conflicts`, batch by batch, on
//! sessions of their own.

use tokio_postgres::Client;

use crate::error::Result;
use crate::row::value::Value;
use crate::source::TableSpec;

use super::*;

impl Checker {
    /// Sessions for `--record` (one per region, outside the check's read-only snapshot),
    /// with the conflicts table created where missing.
    pub(super) async fn recorder(&self) -> Result<Vec<Client>> {
        let conns = self.open_set().await?;
        let table = self.conflicts_table();
        for (r, c) in self.regions.iter().zip(&conns) {
            crate::store::conflicts::init(c, &r.name, &table).await?;
        }
        Ok(conns)
    }

    /// Writes differences as unresolved `replication_conflicts` rows in every region.
    pub(super) async fn record(
        &self,
        conns: &[Client],
        spec: &TableSpec,
        found: &[&Found],
        run_id: &str,
    ) -> Result<()> {
        if found.is_empty() {
            return Ok(());
        }
        let table = self.conflicts_table();
        for (ri, (r, c)) in self.regions.iter().zip(conns).enumerate() {
            let recs: Vec<crate::store::conflicts::ConflictRecord> = found
                .iter()
                .map(|f| {
                    let row_in = |i: usize| f.rows.get(i).and_then(|r| r.as_ref()).map(|vals| row_json(spec, vals));
                    let local_row = row_in(ri);
                    // "The other side": the other region, or (three or more) the other regions
                    // as a comma-separated list; its row when there is exactly one.
                    let other_idx: Vec<usize> = (0..self.regions.len()).filter(|&i| i != ri).collect();
                    let others: Vec<&str> = other_idx.iter().map(|&i| self.regions[i].name.as_str()).collect();
                    let remote_row = match other_idx.as_slice() {
                        [only] => row_in(*only),
                        _ => None,
                    };
                    crate::store::conflicts::ConflictRecord {
                        table_name: spec.table.to_string(),
                        key: serde_json::Value::Object(key_map(spec, f)),
                        conflict_type: if f.missing_in.is_empty() { "update_differs".into() } else { "missing_row".into() },
                        local_region: r.name.clone(),
                        remote_region: Some(others.join(",")),
                        local_row,
                        remote_row,
                        resolution: None,
                        winner_region: None,
                        decided_by: None,
                        resolved: false,
                        run_id: run_id.to_string(),
                        action: None,
                        changed_columns: Some(f.changed_columns.clone()),
                        details: Some(serde_json::json!({"missing_in": f.missing_in, "in_flight": f.in_flight, "source": "check"})),
                    }
                })
                .collect();
            crate::store::conflicts::insert_records(c, &table, &recs).await?;
        }
        Ok(())
    }
}

/// A row's compared columns as a JSON object (for `local_row` of recorded differences).
pub(super) fn row_json(spec: &TableSpec, vals: &[Value]) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (c, v) in spec.columns.iter().zip(vals) {
        let j = match v {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Json(j) => serde_json::from_str(j).unwrap_or(serde_json::Value::Null),
            other => other
                .pg_text()
                .map(serde_json::Value::String)
                .unwrap_or(serde_json::Value::Null),
        };
        m.insert(c.name.clone(), j);
    }
    serde_json::Value::Object(m)
}
