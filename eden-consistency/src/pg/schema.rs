//! Schema introspection from pg_catalog: tables to cover, keys, exact column types, and cross-region comparison.
//!
//! Everything is read from `pg_catalog` (never `information_schema`, which hides objects the
//! user lacks privileges on and is slow), with names passed as bind parameters.
//!
//! * [`covered_tables`]: which tables `check`/`fix` look at (`docs/commands.md`, "What check and fix cover").
//! * [`load_table`]: one table's columns (attnum order), exact types, and its key: the
//!   primary key, else the best unique index on NOT NULL columns, else the config's
//!   `key_columns` (which, when given, always wins so an operator can choose).
//! * [`resolve_table`]: what a user typed (`t`, `s.t`, `"My T"`) to a catalog name.
//! * [`compare_schemas`]: the differences that make a table `schema_mismatch`.

use std::collections::{BTreeMap, HashMap};

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::ident::TableName;

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Column {
    /// The column's name (case preserved, unquoted).
    pub name: String,
    /// `pg_attribute.atttypid`.
    pub type_oid: u32,
    /// `format_type(atttypid, atttypmod)`, e.g. `character varying(20)`, `integer[]`.
    pub type_name: String,
    /// The type with domains resolved to their base type (equal to `type_oid` otherwise).
    pub base_type_oid: u32,
    /// `NOT NULL` on the column.
    pub not_null: bool,
    /// The type (after domains, recursively through arrays, ranges and composites) has a
    /// default hash operator class with an extended hash function, so
    /// `hash_record_extended` can hash it.
    pub hashable: bool,
    /// The column's collation name (`default`, `C`, `en-x-icu`, ...) for collatable types.
    pub collation: Option<String>,
    /// The (base) type is an array.
    pub is_array: bool,
    /// The element type of an array (base) type.
    pub elem_type_oid: Option<u32>,
    /// A generated column (`GENERATED ALWAYS AS (...) STORED`): computed, never written.
    pub generated: bool,
    /// `GENERATED ALWAYS AS IDENTITY`: writing it needs `OVERRIDING SYSTEM VALUE`.
    pub identity_always: bool,
}

impl Column {
    /// A column known only by its name and (non-domain) type oid, e.g. for building SQL
    /// expressions or decoding a value outside a table read from the catalog; the other
    /// facts take their plain defaults (nullable, hashable, not collatable, no array).
    pub fn new(name: impl Into<String>, type_oid: u32) -> Column {
        Column {
            name: name.into(),
            type_oid,
            type_name: String::new(),
            base_type_oid: type_oid,
            not_null: false,
            hashable: true,
            collation: None,
            is_array: false,
            elem_type_oid: None,
            generated: false,
            identity_always: false,
        }
    }

    /// True for `json`, `jsonb` and domains over them.
    pub fn is_json(&self) -> bool {
        matches!(self.base_type_oid, 114 | 3802) || matches!(self.type_oid, 114 | 3802)
    }
}

/// Where a table's key came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum KeySource {
    /// The primary key.
    PrimaryKey,
    /// A unique index (named) that is not partial, has no expressions, and covers NOT NULL
    /// columns only.
    UniqueIndex(String),
    /// The config's `key_columns`.
    Config,
}

impl KeySource {
    /// A short description for messages: `primary key`, `unique index "x"`, `key_columns in the config`.
    pub fn describe(&self) -> String {
        match self {
            KeySource::PrimaryKey => "primary key".to_string(),
            KeySource::UniqueIndex(n) => {
                format!("unique index {}", crate::pg::ident::quote_ident(n))
            }
            KeySource::Config => "key_columns in the config".to_string(),
        }
    }
}

/// A table as seen in one region.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TableSchema {
    /// Schema-qualified name.
    pub name: TableName,
    /// Columns in attnum order, dropped columns excluded.
    pub columns: Vec<Column>,
    /// The key columns, in key order; `None` when the table has no usable key.
    pub key: Option<Vec<String>>,
    /// Where [`TableSchema::key`] came from.
    pub key_source: Option<KeySource>,
    /// `reltuples` (summed over partitions), or 0 when never analyzed.
    pub estimated_rows: i64,
    /// `pg_total_relation_size` (summed over partitions).
    pub total_bytes: i64,
    /// A partitioned table (its rows live in its partitions).
    pub partitioned: bool,
}

impl TableSchema {
    /// The column named `name` (exact, case-sensitive).
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The key columns, empty when there is no key.
    pub fn key_columns(&self) -> &[String] {
        self.key.as_deref().unwrap_or(&[])
    }

    /// The columns that are compared: all but `exclude` (exact names).
    pub fn compared_columns<'a>(
        &'a self,
        exclude: &'a [String],
    ) -> impl Iterator<Item = &'a Column> + 'a {
        self.columns
            .iter()
            .filter(move |c| !exclude.iter().any(|e| e == &c.name))
    }

    /// True when every column can be hashed by `hash_record_extended`.
    pub fn all_hashable(&self) -> bool {
        self.columns.iter().all(|c| c.hashable)
    }

    /// The message of a `skipped` table (see `docs/reports.md`): why, and how to name key columns.
    pub fn skip_message(&self) -> String {
        skip_message(&self.name)
    }
}

/// The message of a table skipped for want of a key (see `docs/reports.md`).
pub fn skip_message(table: &TableName) -> String {
    format!(
        "table {table} has no primary key and no usable unique index (one that is not partial, has no \
         expressions and covers only NOT NULL columns), so its rows cannot be matched across regions; \
         name its key columns in the config under its conflict_resolution_tables entry \
         (- table: {table}, key_columns: [a, b])"
    )
}

/// Schemas never covered.
const SYSTEM_SCHEMA_FILTER: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// The tables `check` and `fix` cover, sorted by (schema, name).
///
/// Every ordinary or partitioned table (never a partition: the parent is compared) in every
/// schema but the system ones, except tables that belong to an extension (pglogical's own)
/// and the tool's own tables listed in `own` (e.g. `public.replication_conflicts`). When
/// `pglogical` is true and that extension is installed in the database, only the tables of
/// its replication sets.
pub async fn covered_tables(
    client: &Client,
    region: &str,
    pglogical: bool,
    own: &[TableName],
) -> Result<Vec<TableName>> {
    let ext_schema: Option<String> = if pglogical {
        client
            .query_opt(
                "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
                 WHERE e.extname = 'pglogical'",
                &[],
            )
            .await
            .map_err(|e| Error::query(region, "looking for the pglogical extension", e))?
            .map(|r| r.get(0))
    } else {
        None
    };
    let rows = match ext_schema {
        Some(_) => {
            // pglogical creates its catalog in schema "pglogical" (extension not relocatable).
            // A partition in a set (replication_set_add_all_tables adds them too) stands for
            // its root table: the root is compared once, never each partition as well.
            let sql = format!(
                "SELECT DISTINCT n.nspname::text, c.relname::text \
                 FROM pglogical.replication_set_table rst \
                 JOIN pg_class c ON c.oid = COALESCE(pg_partition_root(rst.set_reloid), rst.set_reloid) \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND {SYSTEM_SCHEMA_FILTER}"
            );
            client.query(&sql, &[]).await.map_err(|e| {
                Error::query(
                    region,
                    "listing the tables of pglogical replication sets",
                    e,
                )
            })?
        }
        None => {
            let sql = format!(
                "SELECT n.nspname::text, c.relname::text \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND {SYSTEM_SCHEMA_FILTER} \
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d \
                                   WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') \
                   AND NOT EXISTS (SELECT 1 FROM pg_depend d \
                                   WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')"
            );
            client
                .query(&sql, &[])
                .await
                .map_err(|e| Error::query(region, "listing tables", e))?
        }
    };
    let mut out: Vec<TableName> = rows
        .iter()
        .map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1)))
        .filter(|t| !own.contains(t))
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// Why `table` may never be compared or repaired, if it is a system table (a `pg_*` schema
/// or `information_schema`) or belongs to an extension (the table or its schema); `None`
/// for an ordinary user table. Such tables are refused whatever `--table` or the config
/// says: writing them could change roles, passwords or an extension's state.
pub async fn forbidden_reason(
    client: &Client,
    region: &str,
    table: &TableName,
) -> Result<Option<String>> {
    let row = client
        .query_opt(
            "SELECT (n.nspname = 'information_schema' OR n.nspname LIKE 'pg\\_%'), \
                    (SELECT e.extname::text FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid \
                     WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' \
                       AND ((d.classid = 'pg_class'::regclass AND d.objid = c.oid) \
                         OR (d.classid = 'pg_namespace'::regclass AND d.objid = n.oid)) LIMIT 1) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| Error::query(region, format!("looking up table {table}"), &e))?;
    let system_schema = table.schema == "information_schema" || table.schema.starts_with("pg_");
    Ok(match row {
        Some(r) if r.get::<_, bool>(0) => Some(format!(
            "table {table} is a system table (schema {}); system tables are never compared or repaired",
            table.schema
        )),
        Some(r) => r.get::<_, Option<String>>(1).map(|ext| {
            format!(
                "table {table} belongs to extension {ext}; an extension's own tables are never compared or repaired"
            )
        }),
        None if system_schema => Some(format!(
            "table {table} is in system schema {}; system tables are never compared or repaired",
            table.schema
        )),
        None => None,
    })
}

/// Resolves what a user wrote to a table name in this region's database: `s.t` exactly
/// (after SQL folding of unquoted parts), `t` like PostgreSQL would: the first schema of
/// `current_schemas(false)` that holds a table of that name. `None` when there is none.
pub async fn resolve_table(
    client: &Client,
    region: &str,
    user_text: &str,
) -> Result<Option<TableName>> {
    let (schema, name) = TableName::parse_user(user_text).map_err(Error::Usage)?;
    let row = match schema {
        Some(schema) => client
            .query_opt(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&schema, &name],
            )
            .await
            .map_err(|e| Error::query(region, format!("looking up table {user_text}"), e))?,
        None => client
            .query_opt(
                "SELECT n.nspname::text, c.relname::text \
                 FROM unnest(current_schemas(false)) WITH ORDINALITY AS s(nsp, ord) \
                 JOIN pg_namespace n ON n.nspname = s.nsp \
                 JOIN pg_class c ON c.relnamespace = n.oid \
                 WHERE c.relname = $1 AND c.relkind IN ('r', 'p') \
                 ORDER BY s.ord LIMIT 1",
                &[&name],
            )
            .await
            .map_err(|e| Error::query(region, format!("looking up table {user_text}"), e))?,
    };
    Ok(row.map(|r| TableName::new(r.get::<_, String>(0), r.get::<_, String>(1))))
}

/// Type facts needed to decide hashability.
struct TypeInfo {
    typtype: i8,
    base: u32,
    array_elem: u32,
    range_sub: u32,
    multirange_range: u32,
    fields: Vec<u32>,
    has_hash_opclass: bool,
}

fn type_hashable(types: &HashMap<u32, TypeInfo>, oid: u32, depth: usize) -> bool {
    if depth > 32 {
        return false;
    }
    let Some(t) = types.get(&oid) else {
        return false;
    };
    match t.typtype as u8 {
        b'd' => type_hashable(types, t.base, depth + 1),
        b'e' => true,
        b'r' => type_hashable(types, t.range_sub, depth + 1),
        b'm' => type_hashable(types, t.multirange_range, depth + 1),
        b'c' => t.fields.iter().all(|f| type_hashable(types, *f, depth + 1)),
        _ if t.array_elem != 0 => type_hashable(types, t.array_elem, depth + 1),
        _ => t.has_hash_opclass,
    }
}

fn resolve_base(types: &HashMap<u32, TypeInfo>, mut oid: u32) -> u32 {
    for _ in 0..32 {
        match types.get(&oid) {
            Some(t) if t.typtype as u8 == b'd' && t.base != 0 => oid = t.base,
            _ => break,
        }
    }
    oid
}

/// Loads `table` as it is in this region. `None` when the table does not exist.
///
/// The key is `key_columns` when given (validated: every column must exist), else the
/// primary key, else the unique index that is not partial, has no expressions and covers
/// only NOT NULL columns (fewest columns first, then by name), else none.
pub async fn load_table(
    client: &Client,
    region: &str,
    table: &TableName,
    key_columns: Option<&[String]>,
) -> Result<Option<TableSchema>> {
    let ctx = || format!("reading the definition of {table}");
    let Some(rel) = client
        .query_opt(
            "SELECT c.oid, c.relkind::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(|e| Error::query(region, ctx(), e))?
    else {
        return Ok(None);
    };
    let oid: u32 = rel.get(0);
    let partitioned = rel.get::<_, String>(1) == "p";

    let size = client
        .query_one(
            "SELECT COALESCE(sum(GREATEST(c.reltuples, 0)), 0)::float8, \
                    COALESCE(sum(pg_total_relation_size(c.oid)), 0)::int8 \
             FROM pg_class c \
             WHERE c.oid = $1::oid OR c.oid IN (SELECT relid FROM pg_partition_tree($1::oid))",
            &[&oid],
        )
        .await
        .map_err(|e| Error::query(region, ctx(), e))?;
    let estimated_rows = size.get::<_, f64>(0).round() as i64;
    let total_bytes: i64 = size.get(1);

    let col_rows = client
        .query(
            "SELECT a.attname::text, a.atttypid, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                    CASE WHEN a.attcollation <> 0 THEN co.collname::text END, \
                    a.attgenerated <> '', a.attidentity = 'a' \
             FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation \
             WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&oid],
        )
        .await
        .map_err(|e| Error::query(region, ctx(), e))?;

    let type_rows = client
        .query(
            "WITH RECURSIVE ty(oid) AS ( \
                 SELECT a.atttypid FROM pg_attribute a \
                 WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped \
               UNION \
                 SELECT v.x FROM ty JOIN pg_type t ON t.oid = ty.oid \
                 CROSS JOIN LATERAL ( \
                     SELECT t.typbasetype AS x WHERE t.typtype = 'd' \
                     UNION ALL SELECT t.typelem WHERE t.typelem <> 0 \
                                    AND t.typsubscript = 'array_subscript_handler'::regproc \
                     UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid \
                     UNION ALL SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = t.oid \
                     UNION ALL SELECT a.atttypid FROM pg_attribute a \
                               WHERE t.typtype = 'c' AND a.attrelid = t.typrelid \
                                 AND a.attnum > 0 AND NOT a.attisdropped \
                 ) v \
             ) \
             SELECT t.oid, t.typtype, t.typbasetype, \
                    CASE WHEN t.typelem <> 0 AND t.typsubscript = 'array_subscript_handler'::regproc \
                         THEN t.typelem ELSE 0::oid END, \
                    COALESCE((SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid), 0::oid), \
                    COALESCE((SELECT r.rngtypid FROM pg_range r WHERE r.rngmultitypid = t.oid), 0::oid), \
                    CASE WHEN t.typtype = 'c' THEN ARRAY(SELECT a.atttypid FROM pg_attribute a \
                         WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped) \
                         ELSE '{}'::oid[] END, \
                    EXISTS (SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod \
                            WHERE am.amname = 'hash' AND oc.opcdefault \
                              AND (oc.opcintype = t.oid OR EXISTS (SELECT 1 FROM pg_cast ca \
                                   WHERE ca.castsource = t.oid AND ca.casttarget = oc.opcintype \
                                     AND ca.castmethod = 'b' AND ca.castcontext = 'i')) \
                              AND EXISTS (SELECT 1 FROM pg_amproc p WHERE p.amprocfamily = oc.opcfamily \
                                          AND p.amproclefttype = oc.opcintype AND p.amprocnum = 2)) \
             FROM ty JOIN pg_type t ON t.oid = ty.oid",
            &[&oid],
        )
        .await
        .map_err(|e| Error::query(region, ctx(), e))?;
    let types: HashMap<u32, TypeInfo> = type_rows
        .iter()
        .map(|r| {
            (
                r.get::<_, u32>(0),
                TypeInfo {
                    typtype: r.get(1),
                    base: r.get(2),
                    array_elem: r.get(3),
                    range_sub: r.get(4),
                    multirange_range: r.get(5),
                    fields: r.get(6),
                    has_hash_opclass: r.get(7),
                },
            )
        })
        .collect();

    let columns: Vec<Column> = col_rows
        .iter()
        .map(|r| {
            let type_oid: u32 = r.get(1);
            let base_type_oid = resolve_base(&types, type_oid);
            let elem = types.get(&base_type_oid).map(|t| t.array_elem).unwrap_or(0);
            Column {
                name: r.get(0),
                type_oid,
                type_name: r.get(2),
                base_type_oid,
                not_null: r.get(3),
                hashable: type_hashable(&types, type_oid, 0),
                collation: r.get(4),
                is_array: elem != 0,
                elem_type_oid: (elem != 0).then_some(elem),
                generated: r.get(5),
                identity_always: r.get(6),
            }
        })
        .collect();

    let (key, key_source) = match key_columns {
        Some(cols) => {
            if cols.is_empty() {
                return Err(Error::Table {
                    table: table.to_string(),
                    message: "key_columns in the config is empty".into(),
                });
            }
            for c in cols {
                if !columns.iter().any(|col| &col.name == c) {
                    return Err(Error::Table {
                        table: table.to_string(),
                        message: format!(
                            "key_columns in the config names column {} which does not exist in region {region}",
                            crate::pg::ident::quote_ident(c)
                        ),
                    });
                }
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = cols.iter().find(|c| !seen.insert(c.as_str())) {
                return Err(Error::Table {
                    table: table.to_string(),
                    message: format!(
                        "key_columns in the config names column {} twice",
                        crate::pg::ident::quote_ident(dup)
                    ),
                });
            }
            (Some(cols.to_vec()), Some(KeySource::Config))
        }
        None => match automatic_key(client, region, table, oid).await? {
            Some((cols, src)) => (Some(cols), Some(src)),
            None => (None, None),
        },
    };

    Ok(Some(TableSchema {
        name: table.clone(),
        columns,
        key,
        key_source,
        estimated_rows,
        total_bytes,
        partitioned,
    }))
}

/// The primary key, else the best usable unique index.
async fn automatic_key(
    client: &Client,
    region: &str,
    table: &TableName,
    oid: u32,
) -> Result<Option<(Vec<String>, KeySource)>> {
    let rows = client
        .query(
            "SELECT ic.relname::text, i.indisprimary, \
                    ARRAY(SELECT a.attname::text \
                          FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                          WHERE k.ord <= i.indnkeyatts ORDER BY k.ord), \
                    (SELECT bool_and(a.attnotnull) \
                     FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
                     WHERE k.ord <= i.indnkeyatts), \
                    i.indnkeyatts::int4, \
                    (i.indexprs IS NULL AND i.indpred IS NULL \
                     AND NOT (0 = ANY (i.indkey::int2[]))) \
             FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
             WHERE i.indrelid = $1::oid AND i.indisunique AND i.indisvalid",
            &[&oid],
        )
        .await
        .map_err(|e| Error::query(region, format!("reading the indexes of {table}"), e))?;
    let mut best: Option<(i32, String, Vec<String>)> = None;
    for r in &rows {
        let name: String = r.get(0);
        let primary: bool = r.get(1);
        let cols: Vec<String> = r.get(2);
        let not_null: Option<bool> = r.get(3);
        let nkey: i32 = r.get(4);
        let plain: bool = r.get(5);
        if primary {
            return Ok(Some((cols, KeySource::PrimaryKey)));
        }
        if !plain || not_null != Some(true) || cols.len() != nkey as usize || cols.is_empty() {
            continue;
        }
        let better = match &best {
            None => true,
            Some((n, bn, _)) => (nkey, &name) < (*n, bn),
        };
        if better {
            best = Some((nkey, name, cols));
        }
    }
    Ok(best.map(|(_, name, cols)| (cols, KeySource::UniqueIndex(name))))
}

/// One way the table differs between regions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaDifference {
    /// The column concerned; `None` for the table as a whole (missing, key differs).
    pub column: Option<String>,
    /// One sentence, naming the regions.
    pub message: String,
}

/// The differences between the regions' versions of `table` that prevent comparing rows:
/// the table missing in a region, a column missing in a region, a column whose type
/// differs (`format_type`, so `varchar(10)` and `varchar(20)` differ), or a different key.
/// Column order and dropped columns do not count; columns named in `exclude` are ignored.
/// Empty when the table can be compared.
pub fn compare_schemas(
    table: &TableName,
    regions: &[(&str, Option<&TableSchema>)],
    exclude: &[String],
) -> Vec<SchemaDifference> {
    let mut out = Vec::new();
    let missing: Vec<&str> = regions
        .iter()
        .filter(|(_, s)| s.is_none())
        .map(|(r, _)| *r)
        .collect();
    let present: Vec<(&str, &TableSchema)> = regions
        .iter()
        .filter_map(|(r, s)| s.map(|s| (*r, s)))
        .collect();
    if present.is_empty() {
        if !regions.is_empty() {
            out.push(SchemaDifference {
                column: None,
                message: format!("table {table} does not exist in any region"),
            });
        }
        return out;
    }
    if !missing.is_empty() {
        out.push(SchemaDifference {
            column: None,
            message: format!("table {table} is missing in {}", list(&missing)),
        });
    }

    // Column names in the first region's order, then any others in order of appearance.
    let mut names: Vec<&str> = Vec::new();
    for (_, s) in &present {
        for c in &s.columns {
            if !names.contains(&c.name.as_str()) && !exclude.iter().any(|e| e == &c.name) {
                names.push(&c.name);
            }
        }
    }
    for name in names {
        let lacking: Vec<&str> = present
            .iter()
            .filter(|(_, s)| s.column(name).is_none())
            .map(|(r, _)| *r)
            .collect();
        let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut type_order: Vec<&str> = Vec::new();
        for (r, s) in &present {
            if let Some(c) = s.column(name) {
                if !by_type.contains_key(c.type_name.as_str()) {
                    type_order.push(&c.type_name);
                }
                by_type.entry(&c.type_name).or_default().push(r);
            }
        }
        let mut parts = Vec::new();
        if !lacking.is_empty() {
            parts.push(format!(
                "column {} is missing in {}",
                crate::pg::ident::quote_ident(name),
                list(&lacking)
            ));
        }
        if by_type.len() > 1 {
            let types: Vec<String> = type_order
                .iter()
                .map(|t| format!("\"{t}\" in {}", list(&by_type[t])))
                .collect();
            parts.push(format!(
                "column {} has type {}",
                crate::pg::ident::quote_ident(name),
                types.join(", ")
            ));
        }
        if !parts.is_empty() {
            out.push(SchemaDifference {
                column: Some(name.to_string()),
                message: parts.join("; "),
            });
        }
    }

    // Keys.
    let mut keys: Vec<(String, Vec<&str>)> = Vec::new();
    for (r, s) in &present {
        let k = match &s.key {
            Some(k) => format!("({})", k.join(", ")),
            None => "no key".to_string(),
        };
        match keys.iter_mut().find(|(kk, _)| *kk == k) {
            Some((_, rs)) => rs.push(r),
            None => keys.push((k, vec![r])),
        }
    }
    if keys.len() > 1 {
        let parts: Vec<String> = keys
            .iter()
            .map(|(k, rs)| format!("{k} in {}", list(rs)))
            .collect();
        out.push(SchemaDifference {
            column: None,
            message: format!("the key of {table} differs: {}", parts.join(", ")),
        });
    }
    out
}

fn list(items: &[&str]) -> String {
    items.join(", ")
}

/// The primary-key columns, in the key's order, of each of `tables` (`schema.table` as the
/// reports print them) that has one in this database.
pub async fn primary_key_orders(
    client: &tokio_postgres::Client,
    tables: &[String],
) -> std::result::Result<std::collections::HashMap<String, Vec<String>>, tokio_postgres::Error> {
    if tables.is_empty() {
        return Ok(Default::default());
    }
    let rows = client
        .query(
            "SELECT n.nspname::text || '.' || c.relname::text, \
                    array_agg(a.attname::text ORDER BY k.ord) \
             FROM pg_catalog.pg_index i \
             JOIN pg_catalog.pg_class c ON c.oid = i.indrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             WHERE i.indisprimary AND n.nspname::text || '.' || c.relname::text = ANY($1) \
             GROUP BY 1",
            &[&tables],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `key` with its entries in `order` when it holds exactly those columns (a key read back
/// from `jsonb` comes in `jsonb`'s own order); otherwise unchanged.
pub fn reorder_key(key: &mut serde_json::Map<String, serde_json::Value>, order: &[String]) {
    if key.len() != order.len() || !order.iter().all(|c| key.contains_key(c)) {
        return;
    }
    let mut sorted = serde_json::Map::with_capacity(key.len());
    for c in order {
        if let Some(v) = key.remove(c) {
            sorted.insert(c.clone(), v);
        }
    }
    *key = sorted;
}
