//! The replication_conflicts table: creation (init), recording, listing.
//!
//! Every region's database holds its own `replication_conflicts` (see `docs/replication_conflicts.md`): one row per
//! conflict seen or resolved *in that region*, with the row image as it was there before
//! any change (`local_row`) and the winning version (`remote_row`). The table must not be
//! replicated between regions: each region keeps its own history.
//!
//! * [`init`] creates it (idempotent, safe to run concurrently, upgrades an older table by
//!   adding missing columns and indexes).
//! * [`insert_records`] writes records in one statement, inside the caller's transaction
//!   (so a change and its record commit together).
//! * [`list`] reads them from several regions, newest first; [`to_json`] gives the JSON
//!   document of a listing.
//!
//! ```
//! use eden_consistency::conflicts::{parse_since, table_name};
//! use chrono::{TimeZone, Utc};
//!
//! assert_eq!(table_name(None).to_string(), "public.replication_conflicts");
//! let now = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
//! assert_eq!(parse_since("1h30m", now).unwrap(), Utc.with_ymd_and_hms(2026, 11, 27, 10, 30, 0).unwrap());
//! ```

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value as Json};
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};
use crate::pg::ident::{TableName, quote_ident};

/// The table's name.
pub const TABLE: &str = "replication_conflicts";

/// The default schema.
pub const DEFAULT_SCHEMA: &str = "public";

/// Advisory lock taken (per database, for the transaction) while creating or upgrading.
const INIT_LOCK_KEY: i64 = 0x6564_656e_5f72_6331; // "eden_rc1"

/// Rows per INSERT statement in [`insert_records`].
const INSERT_CHUNK: usize = 5_000;

/// `schema.replication_conflicts` (schema `public` when not configured).
pub fn table_name(schema: Option<&str>) -> TableName {
    TableName::new(
        schema.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_SCHEMA),
        TABLE,
    )
}

/// Column definitions: (name, type for CREATE TABLE, type when added to an older table).
///
/// Columns added to an existing table are nullable (NOT NULL could not be added to a
/// table that already holds rows), except `created_at` which has a default.
const COLUMNS: &[(&str, &str, &str)] = &[
    (
        "created_at",
        "timestamptz NOT NULL DEFAULT now()",
        "timestamptz NOT NULL DEFAULT now()",
    ),
    ("table_name", "text NOT NULL", "text"),
    ("key", "jsonb NOT NULL", "jsonb"),
    ("conflict_type", "text NOT NULL", "text"),
    ("local_region", "text NOT NULL", "text"),
    ("remote_region", "text", "text"),
    ("local_row", "jsonb", "jsonb"),
    ("remote_row", "jsonb", "jsonb"),
    ("resolution", "text", "text"),
    ("winner_region", "text", "text"),
    ("decided_by", "text", "text"),
    ("resolved_at", "timestamptz", "timestamptz"),
    ("run_id", "text", "text"),
    // Extras (the documented columns are a minimum, see `docs/replication_conflicts.md`): what was done, which columns differed, and a
    // free-form object (e.g. the versions' tracking values, in-flight flags).
    ("action", "text", "text"),
    ("changed_columns", "text[]", "text[]"),
    ("details", "jsonb", "jsonb"),
    // Records imported from the replication engine (`conflicts import`): where each came
    // from (`pglogical-log`, `spock`, `pg-conflict-log`) and the engine's own position for
    // it; NULL for the tool's own records.
    ("source", "text", "text"),
    ("source_position", "text", "text"),
];

/// Index name suffix → column list (and predicate).
fn indexes(table: &TableName) -> Vec<(String, String)> {
    let base: String = table.name.chars().take(40).collect();
    vec![
        (
            format!("{base}_table_created_idx"),
            "(table_name, created_at DESC, id DESC)".to_string(),
        ),
        (
            format!("{base}_created_idx"),
            "(created_at DESC, id DESC)".to_string(),
        ),
        (
            format!("{base}_unresolved_idx"),
            "(created_at DESC) WHERE resolved_at IS NULL".to_string(),
        ),
        (format!("{base}_run_id_idx"), "(run_id)".to_string()),
        // UNIQUE: importing the same engine record twice adds nothing.
        (
            format!("{base}_source_uidx"),
            "UNIQUE (source, source_position)".to_string(),
        ),
    ]
}

/// `CREATE [UNIQUE] INDEX IF NOT EXISTS name ON table (...)` for an [`indexes`] entry.
fn create_index_sql(name: &str, table: &TableName, def: &str) -> String {
    let (unique, cols) = match def.strip_prefix("UNIQUE ") {
        Some(cols) => ("UNIQUE ", cols),
        None => ("", def),
    };
    format!(
        "CREATE {unique}INDEX IF NOT EXISTS {} ON {} {cols}",
        quote_ident(name),
        table.quoted()
    )
}

/// The same table, columns and indexes as [`init`], as an idempotent SQL script (for
/// psql-runnable `--sql-out` files): creates the schema and table when missing, adds the
/// columns an older table lacks, and creates missing indexes.
pub fn init_sql(table: &TableName) -> String {
    let rc = table.quoted();
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|(n, ty, _)| format!("    {} {ty}", quote_ident(n)))
        .collect();
    let mut s = format!(
        "CREATE SCHEMA IF NOT EXISTS {};\nCREATE TABLE IF NOT EXISTS {rc} (\n    id bigserial PRIMARY KEY,\n{}\n);\n",
        quote_ident(&table.schema),
        cols.join(",\n")
    );
    let adds: Vec<String> = COLUMNS
        .iter()
        .map(|(n, _, ty)| format!("ADD COLUMN IF NOT EXISTS {} {ty}", quote_ident(n)))
        .collect();
    s.push_str(&format!("ALTER TABLE {rc} {};\n", adds.join(", ")));
    for (name, def) in indexes(table) {
        s.push_str(&create_index_sql(&name, table, &def));
        s.push_str(";\n");
    }
    s
}

/// Creates `table` (see [`table_name`]) in this region's database if it is missing, adds
/// columns and indexes an older version lacks, and creates the schema if needed.
/// Returns true when the table was created. Idempotent; concurrent calls serialize on an
/// advisory lock.
///
/// Outside a transaction it runs in a transaction of its own; inside the caller's
/// transaction it runs in a savepoint there (and commits with it).
pub async fn init(client: &Client, region: &str, table: &TableName) -> Result<bool> {
    Ok(init_with(client, region, table, false).await?.created)
}

/// What [`init_with`] did to one region's table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct InitReport {
    /// The table was created.
    pub created: bool,
    /// Columns added to an existing table.
    pub added_columns: Vec<String>,
    /// Indexes added to an existing table.
    pub added_indexes: Vec<String>,
}

impl InitReport {
    /// `created`, `already present`, or exactly what was added.
    pub fn describe(&self) -> String {
        if self.created {
            return "created".into();
        }
        let mut parts = Vec::new();
        if !self.added_columns.is_empty() {
            parts.push(format!("added column(s) {}", self.added_columns.join(", ")));
        }
        if !self.added_indexes.is_empty() {
            parts.push(format!("added index(es) {}", self.added_indexes.join(", ")));
        }
        if parts.is_empty() {
            "already present".into()
        } else {
            parts.join("; ")
        }
    }
}

/// [`init`], telling what it created or added. An existing table that lacks columns or
/// indexes is changed only when it is in no replication set (pglogical, or a native
/// publication), or when `upgrade` is true: otherwise the error names what is missing and
/// asks for `init --upgrade`.
pub async fn init_with(
    client: &Client,
    region: &str,
    table: &TableName,
    upgrade: bool,
) -> Result<InitReport> {
    let ctx = || format!("creating {table}");
    let q = |e: tokio_postgres::Error| Error::query(region, ctx(), e);
    // `Client::transaction` needs `&mut`: drive the transaction by hand. Whether the caller
    // has a transaction block open is asked without provoking an error (a failing probe
    // would log an ERROR on the server): outside a block every statement is a transaction
    // of its own, so its start is the statement's start.
    let in_caller_tx = crate::pg::connect::in_transaction(client)
        .await
        .map_err(q)?;
    let begin = if in_caller_tx {
        "SAVEPOINT eden_conflicts_init"
    } else {
        "BEGIN"
    };
    client.batch_execute(begin).await.map_err(q)?;
    match init_in_tx(client, region, table, upgrade).await {
        Ok(created) => {
            let end = if in_caller_tx {
                "RELEASE SAVEPOINT eden_conflicts_init"
            } else {
                "COMMIT"
            };
            client.batch_execute(end).await.map_err(q)?;
            Ok(created)
        }
        Err(e) => {
            let undo = if in_caller_tx {
                "ROLLBACK TO SAVEPOINT eden_conflicts_init; RELEASE SAVEPOINT eden_conflicts_init"
            } else {
                "ROLLBACK"
            };
            let _ = client.batch_execute(undo).await;
            Err(e)
        }
    }
}

async fn init_in_tx(
    client: &Client,
    region: &str,
    table: &TableName,
    upgrade: bool,
) -> Result<InitReport> {
    let ctx = || format!("creating {table}");
    let q = |e: tokio_postgres::Error| Error::query(region, ctx(), e);
    client
        .execute("SELECT pg_advisory_xact_lock($1)", &[&INIT_LOCK_KEY])
        .await
        .map_err(q)?;

    let schema_exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&table.schema],
        )
        .await
        .map_err(q)?
        .get(0);
    if !schema_exists {
        client
            .batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(&table.schema)
            ))
            .await
            .map_err(q)?;
    }

    let existing = existing_columns(client, region, table).await?;
    let created = existing.is_none();
    if created {
        let cols: Vec<String> = COLUMNS
            .iter()
            .map(|(n, ty, _)| format!("    {} {ty}", quote_ident(n)))
            .collect();
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (\n    id bigserial PRIMARY KEY,\n{}\n)",
            table.quoted(),
            cols.join(",\n")
        );
        client.batch_execute(&sql).await.map_err(q)?;
        client
                .batch_execute(&format!(
                    "COMMENT ON TABLE {} IS 'Conflicts and repairs recorded by eden-reconcile in this region. \
                     local_row holds the row as it was here before any change. Not to be replicated.'",
                    table.quoted()
                ))
                .await
                .map_err(q)?;
    }

    let have_idx: Vec<String> = client
        .query(
            "SELECT ic.relname::text FROM pg_index i \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(q)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut report = InitReport {
        created,
        ..InitReport::default()
    };
    if let Some(have) = &existing {
        report.added_columns = COLUMNS
            .iter()
            .filter(|(n, _, _)| !have.iter().any(|h| h == n))
            .map(|(n, _, _)| n.to_string())
            .collect();
    }
    let missing_idx: Vec<(String, String)> = indexes(table)
        .into_iter()
        .filter(|(name, _)| !have_idx.contains(name))
        .collect();
    if !created {
        report.added_indexes = missing_idx.iter().map(|(n, _)| n.clone()).collect();
    }
    let changes = !report.added_columns.is_empty() || !report.added_indexes.is_empty();
    if changes && !upgrade {
        if let Some(set) = replication_set_of(client, region, table).await? {
            return Err(Error::Table {
                table: table.to_string(),
                message: format!(
                    "in region {region} it is in {set} and lacks {}; run 'eden-reconcile init --upgrade' to add them",
                    report.describe().replace("added ", "")
                ),
            });
        }
    }
    if !report.added_columns.is_empty() {
        let adds: Vec<String> = COLUMNS
            .iter()
            .filter(|(n, _, _)| report.added_columns.iter().any(|a| a == n))
            .map(|(n, _, ty)| format!("ADD COLUMN IF NOT EXISTS {} {ty}", quote_ident(n)))
            .collect();
        tracing::info!(region, table = %table, columns = %report.added_columns.join(","), "adding missing column(s)");
        client
            .batch_execute(&format!(
                "ALTER TABLE {} {}",
                table.quoted(),
                adds.join(", ")
            ))
            .await
            .map_err(q)?;
    }
    for (name, def) in &missing_idx {
        client
            .batch_execute(&create_index_sql(name, table, def))
            .await
            .map_err(q)?;
    }
    Ok(report)
}

/// The replication set (pglogical) or publication (native) that `table` belongs to, if any,
/// named for a message.
async fn replication_set_of(
    client: &Client,
    region: &str,
    table: &TableName,
) -> Result<Option<String>> {
    let q = |e: tokio_postgres::Error| {
        Error::query(
            region,
            format!("looking for replication sets of {table}"),
            &e,
        )
    };
    let pglogical: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pglogical')",
            &[],
        )
        .await
        .map_err(q)?
        .get(0);
    if pglogical {
        let row = client
            .query_opt(
                "SELECT s.set_name::text FROM pglogical.replication_set_table t \
                 JOIN pglogical.replication_set s ON s.set_id = t.set_id \
                 JOIN pg_catalog.pg_class c ON c.oid = t.set_reloid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 LIMIT 1",
                &[&table.schema, &table.name],
            )
            .await
            .map_err(q)?;
        if let Some(r) = row {
            return Ok(Some(format!(
                "the pglogical replication set {}",
                r.get::<_, String>(0)
            )));
        }
    }
    let row = client
        .query_opt(
            "SELECT pubname::text FROM pg_catalog.pg_publication_tables \
             WHERE schemaname = $1 AND tablename = $2 LIMIT 1",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(q)?;
    Ok(row.map(|r| format!("the publication {}", r.get::<_, String>(0))))
}

/// The table's column names, or `None` when it does not exist.
async fn existing_columns(
    client: &Client,
    region: &str,
    table: &TableName,
) -> Result<Option<Vec<String>>> {
    let rows = client
        .query(
            "SELECT c.relkind::text, a.attname::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| Error::query(region, format!("looking for {table}"), e))?;
    if rows.is_empty() {
        return Ok(None);
    }
    let kind: String = rows[0].get(0);
    if kind != "r" && kind != "p" {
        return Err(Error::Table {
            table: table.to_string(),
            message: format!(
                "in region {region} this name is taken by something that is not a table"
            ),
        });
    }
    Ok(Some(
        rows.iter()
            .filter_map(|r| r.get::<_, Option<String>>(1))
            .collect(),
    ))
}

/// True when `table` exists in this region's database.
pub async fn exists(client: &Client, region: &str, table: &TableName) -> Result<bool> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p'))",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| Error::query(region, format!("looking for {table}"), e))?;
    Ok(row.get(0))
}

/// One record to write.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConflictRecord {
    /// Schema-qualified table, e.g. `public.vault_secrets`.
    pub table_name: String,
    /// The row's key, as in the report (`{"id": 42}`).
    pub key: Json,
    /// e.g. `update_differs`, `missing_row`.
    pub conflict_type: String,
    /// The region whose database holds this record.
    pub local_region: String,
    /// The other side, or the winner.
    pub remote_region: Option<String>,
    /// `to_jsonb(row)` of the row here before any change; `None` if absent here.
    pub local_row: Option<Json>,
    /// `to_jsonb(row)` of the winning row; `None` if the winner is a delete.
    pub remote_row: Option<Json>,
    /// The rule applied (`last_write_wins`, `manual`, ...).
    pub resolution: Option<String>,
    /// The winning region.
    pub winner_region: Option<String>,
    /// What decided it (see `docs/replication_conflicts.md`: tracking column name, `commit_timestamp`, ...).
    pub decided_by: Option<String>,
    /// True when resolved now (`resolved_at` = the transaction's `now()`); false leaves it
    /// unresolved (NULL).
    pub resolved: bool,
    /// The `check`/`fix` run.
    pub run_id: String,
    /// Extra: what was done here: `insert`, `update`, `delete`, `manual`, or `None` (recorded only).
    pub action: Option<String>,
    /// Extra: the columns whose values differed.
    pub changed_columns: Option<Vec<String>>,
    /// Extra: anything else worth keeping (a JSON object).
    pub details: Option<Json>,
}

/// The columns a record fills, each with the expression reading it from the record's JSON
/// (`e`: a serialised [`ConflictRecord`], which an imported record extends with `at`,
/// `source` and `source_position`): the one list of what a record writes. `created_at` and
/// `resolved_at` are the engine's time (`at`) for imported records, else the transaction's
/// `now()`.
const RECORD_FIELDS: &[(&str, &str)] = &[
    ("created_at", "coalesce((e->>'at')::timestamptz, now())"),
    ("table_name", "e->>'table_name'"),
    ("key", "e->'key'"),
    ("conflict_type", "e->>'conflict_type'"),
    ("local_region", "e->>'local_region'"),
    ("remote_region", "e->>'remote_region'"),
    ("local_row", "NULLIF(e->'local_row', 'null'::jsonb)"),
    ("remote_row", "NULLIF(e->'remote_row', 'null'::jsonb)"),
    ("resolution", "e->>'resolution'"),
    ("winner_region", "e->>'winner_region'"),
    ("decided_by", "e->>'decided_by'"),
    (
        "resolved_at",
        "CASE WHEN (e->>'resolved')::boolean THEN coalesce((e->>'at')::timestamptz, now()) END",
    ),
    ("run_id", "e->>'run_id'"),
    ("action", "e->>'action'"),
    (
        "changed_columns",
        "CASE WHEN jsonb_typeof(e->'changed_columns') = 'array' \
         THEN ARRAY(SELECT jsonb_array_elements_text(e->'changed_columns')) END",
    ),
    ("details", "NULLIF(e->'details', 'null'::jsonb)"),
    ("source", "e->>'source'"),
    ("source_position", "e->>'source_position'"),
];

/// The columns of the archive rows fix writes (their values come from fix's own write
/// statement): the record's columns from `table_name` to `action` of [`RECORD_FIELDS`].
pub(crate) fn archive_columns() -> String {
    let names: Vec<&str> = RECORD_FIELDS.iter().map(|(c, _)| *c).collect();
    let from = names.iter().position(|c| *c == "table_name").unwrap_or(0);
    let to = names
        .iter()
        .position(|c| *c == "action")
        .map_or(names.len(), |i| i + 1);
    names[from..to].join(", ")
}

/// `INSERT INTO table (...) SELECT ...` of the records in bind parameter `$1` (a JSON array
/// of records, written in array order), filling [`RECORD_FIELDS`].
pub(crate) fn insert_sql(table: &TableName) -> String {
    let columns: Vec<&str> = RECORD_FIELDS.iter().map(|(c, _)| *c).collect();
    let values: Vec<&str> = RECORD_FIELDS.iter().map(|(_, v)| *v).collect();
    format!(
        "INSERT INTO {} ({}) SELECT {} \
         FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, ord) ORDER BY x.ord",
        table.quoted(),
        columns.join(", "),
        values.join(", ")
    )
}

/// Writes `recs` into `table` with one multi-row INSERT (per 5000 records), through any
/// client or transaction, so the records commit with the caller's changes.
pub async fn insert_records(
    client: &impl GenericClient,
    table: &TableName,
    recs: &[ConflictRecord],
) -> Result<()> {
    if recs.is_empty() {
        return Ok(());
    }
    let region = recs[0].local_region.as_str();
    let sql = insert_sql(table);
    for chunk in recs.chunks(INSERT_CHUNK) {
        let payload = serde_json::to_value(chunk)
            .map_err(|e| Error::Internal(format!("cannot encode conflict records: {e}")))?;
        client
            .execute(&sql, &[&payload])
            .await
            .map_err(|e| Error::query(region, format!("recording conflicts in {table}"), e))?;
    }
    Ok(())
}

/// What [`list`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    /// Only this table: `t` (any schema) or `s.t` (exact), SQL folding rules for unquoted parts.
    pub table: Option<String>,
    /// Only records created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only records with `resolved_at` NULL.
    pub unresolved: bool,
    /// At most this many records in all (the newest); `None`: all.
    pub limit: Option<usize>,
}

/// One record as read from one region.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ListedConflict {
    /// The region it was read from.
    pub region: String,
    /// `id` (per region).
    pub id: i64,
    /// `created_at`.
    pub created_at: DateTime<Utc>,
    /// `table_name`.
    pub table_name: String,
    /// `key`.
    pub key: Json,
    /// `conflict_type`.
    pub conflict_type: Option<String>,
    /// `local_region`.
    pub local_region: Option<String>,
    /// `remote_region`.
    pub remote_region: Option<String>,
    /// `local_row`.
    pub local_row: Option<Json>,
    /// `remote_row`.
    pub remote_row: Option<Json>,
    /// `resolution`.
    pub resolution: Option<String>,
    /// `winner_region`.
    pub winner_region: Option<String>,
    /// `decided_by`.
    pub decided_by: Option<String>,
    /// `resolved_at`.
    pub resolved_at: Option<DateTime<Utc>>,
    /// `run_id`.
    pub run_id: Option<String>,
    /// `action` (extra).
    pub action: Option<String>,
    /// `changed_columns` (extra).
    pub changed_columns: Option<Vec<String>>,
    /// `details` (extra).
    pub details: Option<Json>,
    /// Any other columns an operator added to the table.
    #[serde(flatten)]
    pub other: Map<String, Json>,
}

impl ListedConflict {
    /// True when `resolved_at` is NULL.
    pub fn is_unresolved(&self) -> bool {
        self.resolved_at.is_none()
    }

    fn from_json(region: &str, mut obj: Map<String, Json>) -> Option<ListedConflict> {
        fn s(obj: &mut Map<String, Json>, k: &str) -> Option<String> {
            match obj.remove(k) {
                Some(Json::String(s)) => Some(s),
                Some(Json::Null) | None => None,
                Some(other) => Some(other.to_string()),
            }
        }
        fn j(obj: &mut Map<String, Json>, k: &str) -> Option<Json> {
            obj.remove(k).filter(|v| !v.is_null())
        }
        fn ts(obj: &mut Map<String, Json>, k: &str) -> Option<DateTime<Utc>> {
            s(obj, k)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|d| d.with_timezone(&Utc))
        }
        let id = obj.remove("id")?.as_i64()?;
        let created_at = ts(&mut obj, "created_at")?;
        Some(ListedConflict {
            region: region.to_string(),
            id,
            created_at,
            table_name: s(&mut obj, "table_name").unwrap_or_default(),
            key: j(&mut obj, "key").unwrap_or(Json::Null),
            conflict_type: s(&mut obj, "conflict_type"),
            local_region: s(&mut obj, "local_region"),
            remote_region: s(&mut obj, "remote_region"),
            local_row: j(&mut obj, "local_row"),
            remote_row: j(&mut obj, "remote_row"),
            resolution: s(&mut obj, "resolution"),
            winner_region: s(&mut obj, "winner_region"),
            decided_by: s(&mut obj, "decided_by"),
            resolved_at: ts(&mut obj, "resolved_at"),
            run_id: s(&mut obj, "run_id"),
            action: s(&mut obj, "action"),
            changed_columns: j(&mut obj, "changed_columns")
                .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok()),
            details: j(&mut obj, "details"),
            other: obj,
        })
    }
}

/// Lists records from each region (`(name, client)` in region order), newest first across
/// regions: `created_at` descending, then region order, then `id` descending; `limit`
/// applies to the merged list. A region whose database has no such table lists nothing.
/// To list one region only (`--in`), pass only that region.
pub async fn list(
    regions: &[(&str, &Client)],
    table: &TableName,
    filter: &ListFilter,
) -> Result<Vec<ListedConflict>> {
    let table_match = match &filter.table {
        None => None,
        Some(text) => {
            Some(TableName::parse_user(text).map_err(|m| Error::Usage(format!("--table: {m}")))?)
        }
    };
    let futs = regions.iter().enumerate().map(|(idx, (name, client))| {
        let table_match = table_match.clone();
        async move {
            list_one(name, client, table, filter, table_match)
                .await
                .map(|v| (idx, v))
        }
    });
    let results = futures_util::future::join_all(futs).await;
    let mut all: Vec<(usize, ListedConflict)> = Vec::new();
    for r in results {
        let (idx, rows) = r?;
        all.extend(rows.into_iter().map(|c| (idx, c)));
    }
    all.sort_by(|(ia, a), (ib, b)| {
        b.created_at
            .cmp(&a.created_at)
            .then(ia.cmp(ib))
            .then(b.id.cmp(&a.id))
    });
    let mut out: Vec<ListedConflict> = all.into_iter().map(|(_, c)| c).collect();
    if let Some(n) = filter.limit {
        out.truncate(n);
    }
    Ok(out)
}

async fn list_one(
    region: &str,
    client: &Client,
    table: &TableName,
    filter: &ListFilter,
    table_match: Option<(Option<String>, String)>,
) -> Result<Vec<ListedConflict>> {
    if !exists(client, region, table).await? {
        return Ok(Vec::new());
    }
    let (exact, suffix): (Option<String>, Option<String>) = match table_match {
        None => (None, None),
        Some((Some(schema), name)) => (Some(format!("{schema}.{name}")), None),
        Some((None, name)) => (None, Some(name)),
    };
    let limit: Option<i64> = filter.limit.map(|n| n.min(i64::MAX as usize) as i64);
    // to_jsonb of the whole row: tolerates older tables and keeps columns an operator added.
    let sql = format!(
        "SELECT to_jsonb(c) FROM {} c \
         WHERE ($1::text IS NULL OR c.table_name = $1) \
           AND ($2::text IS NULL OR c.table_name = $2 OR right(c.table_name, length($2) + 1) = '.' || $2) \
           AND ($3::timestamptz IS NULL OR c.created_at >= $3) \
           AND (NOT $4 OR c.resolved_at IS NULL) \
         ORDER BY c.created_at DESC, c.id DESC \
         LIMIT $5",
        table.quoted()
    );
    let rows = client
        .query(
            &sql,
            &[&exact, &suffix, &filter.since, &filter.unresolved, &limit],
        )
        .await
        .map_err(|e| Error::query(region, format!("reading {table}"), e))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if let Json::Object(obj) = r.get::<_, Json>(0) {
            if let Some(c) = ListedConflict::from_json(region, obj) {
                out.push(c);
            }
        }
    }
    // Keys come back in jsonb's order: print them in the key's own order, as check and fix do.
    let mut names: Vec<String> = out.iter().map(|c| c.table_name.clone()).collect();
    names.sort();
    names.dedup();
    let orders = crate::pg::schema::primary_key_orders(client, &names)
        .await
        .map_err(|e| Error::query(region, "reading the tables' key columns", &e))?;
    for c in &mut out {
        if let (Some(order), Json::Object(key)) = (orders.get(&c.table_name), &mut c.key) {
            crate::pg::schema::reorder_key(key, order);
        }
    }
    Ok(out)
}

/// Parses `--since`: an RFC 3339 time (`2026-11-27T00:00:00Z`), a date or `YYYY-MM-DD
/// HH:MM[:SS]` (taken as UTC), or a duration back from `now` (`30s`, `90m`, `24h`, `7d`,
/// `2w`, `1h30m`). The error is one sentence for the user.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> std::result::Result<DateTime<Utc>, String> {
    let t = text.trim();
    let bad = || {
        format!(
            "--since '{text}' is neither a time nor a duration; give an RFC 3339 time such as \
             2026-11-27T00:00:00Z or a duration such as 30s, 90m, 24h, 7d or 1h30m"
        )
    };
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(Utc.from_utc_datetime(&n));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).ok_or_else(bad)?));
    }
    let secs = parse_duration_secs(t).ok_or_else(bad)?;
    let dur = chrono::Duration::try_seconds(secs).ok_or_else(bad)?;
    now.checked_sub_signed(dur).ok_or_else(bad)
}

/// `1h30m` → 5400. Units: s, m, h, d, w (and their long forms).
fn parse_duration_secs(t: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut rest = t.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: i64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len].to_ascii_lowercase();
        let mult: i64 = match unit.as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 604_800,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(mult)?)?;
        rest = rest[unit_len..].trim_start();
    }
    Some(total)
}

/// `{"conflicts": [...]}`, one object per record with every column plus `region`.
pub fn to_json(rows: &[ListedConflict]) -> Json {
    let list: Vec<Json> = rows
        .iter()
        .map(|r| serde_json::to_value(r).unwrap_or(Json::Null))
        .collect();
    serde_json::json!({ "conflicts": list })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_column_list() {
        assert_eq!(
            archive_columns(),
            "table_name, key, conflict_type, local_region, remote_region, local_row, remote_row, \
             resolution, winner_region, decided_by, resolved_at, run_id, action"
        );
        // Every column a record fills exists in the table's definition.
        for (c, _) in RECORD_FIELDS {
            assert!(COLUMNS.iter().any(|(n, _, _)| n == c), "{c}");
        }
        let sql = insert_sql(&table_name(None));
        assert!(sql.starts_with(
            "INSERT INTO \"public\".\"replication_conflicts\" (created_at, table_name,"
        ));
        assert!(sql.ends_with("ORDER BY x.ord"));
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
    }

    #[test]
    fn since_durations() {
        let n = now();
        assert_eq!(
            parse_since("24h", n).unwrap(),
            n - chrono::Duration::hours(24)
        );
        assert_eq!(
            parse_since("90m", n).unwrap(),
            n - chrono::Duration::minutes(90)
        );
        assert_eq!(parse_since("7d", n).unwrap(), n - chrono::Duration::days(7));
        assert_eq!(
            parse_since("30s", n).unwrap(),
            n - chrono::Duration::seconds(30)
        );
        assert_eq!(
            parse_since("1h30m", n).unwrap(),
            n - chrono::Duration::minutes(90)
        );
        assert_eq!(
            parse_since("2w", n).unwrap(),
            n - chrono::Duration::days(14)
        );
        assert_eq!(
            parse_since(" 1d 2h ", n).unwrap(),
            n - chrono::Duration::hours(26)
        );
        assert_eq!(parse_since("0s", n).unwrap(), n);
    }

    #[test]
    fn since_times() {
        let n = now();
        let midnight = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
        assert_eq!(parse_since("2026-11-27T00:00:00Z", n).unwrap(), midnight);
        assert_eq!(
            parse_since("2026-11-27T01:00:00+01:00", n).unwrap(),
            midnight
        );
        assert_eq!(parse_since("2026-11-27", n).unwrap(), midnight);
        assert_eq!(parse_since("2026-11-27 00:00:00", n).unwrap(), midnight);
        assert_eq!(parse_since("2026-11-27T00:00", n).unwrap(), midnight);
    }

    #[test]
    fn since_errors() {
        let n = now();
        for bad in [
            "",
            "yesterday",
            "24",
            "h",
            "-1h",
            "1x",
            "1h30",
            "2026-13-01",
            "99999999999999999999s",
            "1e3s",
        ] {
            let e = parse_since(bad, n).unwrap_err();
            assert!(e.contains("--since") && e.contains("24h"), "{bad}: {e}");
        }
    }

    #[test]
    fn json_empty() {
        assert_eq!(to_json(&[]), serde_json::json!({"conflicts": []}));
    }

    #[test]
    fn names() {
        assert_eq!(
            table_name(None),
            TableName::new("public", "replication_conflicts")
        );
        assert_eq!(
            table_name(Some("audit")),
            TableName::new("audit", "replication_conflicts")
        );
    }
}
