//! The write statements: one guarded, archiving statement per batch of one kind on one table.

use crate::pg::ident::quote_ident;
use crate::repair::plan::{ActionKind, TableShape, sql_literal};

/// Bind-parameter numbers of the write statements.
pub(super) const P_ITEMS: usize = 1;
pub(super) const P_TABLE: usize = 2;
pub(super) const P_REGION: usize = 3;
const P_RUN: usize = 4;

/// The quoted `schema.replication_conflicts`.
pub(crate) fn conflicts_table(schema: &str) -> String {
    format!(
        "{}.{}",
        quote_ident(schema),
        quote_ident("replication_conflicts")
    )
}

/// The statement for one batch of one kind on one table. `p(n)` renders parameter `n`
/// (`$n` for the library, an inlined literal for `--sql-out`). Parameters: 1 the items
/// (JSON array text), 2 the table's `schema.name`, 3 the region, 4 the run id. The result
/// has one row per item written, with the item's index (`i`); for `manual`, one row per
/// record written.
///
/// Each item is `{"i": index, "k": key map, "o": image read or null, "n": image to write or
/// null, "ct": conflict_type, "res": resolution, "wr": winner_region, "rr": remote_region,
/// "by": decided_by}`; images are `to_jsonb` text.
pub(crate) fn batch_sql(
    shape: &TableShape,
    kind: ActionKind,
    rc: &str,
    p: &dyn Fn(usize) -> String,
) -> String {
    let tbl = shape.table.quoted();
    let items = format!(
        "items AS (SELECT e.j FROM jsonb_array_elements(({})::text::jsonb) AS e(j))",
        p(P_ITEMS)
    );
    let key_of = |alias: &str| {
        format!("CROSS JOIN LATERAL jsonb_populate_record(NULL::{tbl}, {alias}.j->'k') AS k")
    };
    let new_of = |alias: &str| {
        format!(
            "CROSS JOIN LATERAL jsonb_populate_record(NULL::{tbl}, ({alias}.j->>'n')::jsonb) AS n"
        )
    };
    let rc_columns = crate::store::conflicts::archive_columns();
    let archive = |src: &str, resolved: bool| {
        format!(
            "a AS (INSERT INTO {rc} ({rc_columns}) \
             SELECT {ptable}, {src}.j->'k', {src}.j->>'ct', {pregion}, {src}.j->>'rr', ({src}.j->>'o')::jsonb, \
             {src}.after, {src}.j->>'res', {src}.j->>'wr', {src}.j->>'by', {ts}, {prun}, {src}.j->>'act' FROM {src} RETURNING 1)",
            ptable = p(P_TABLE),
            pregion = p(P_REGION),
            prun = p(P_RUN),
            ts = if resolved {
                "now()"
            } else {
                "NULL::timestamptz"
            },
        )
    };
    let guard = "to_jsonb(t)::text = (i.j->>'o')";
    // True when the row as stored differs from the row written on a written column: a
    // trigger (or a rule) rewrote it, and the regions would never converge.
    let rewritten = |src: &str, cols: &[&str]| -> String {
        if cols.is_empty() {
            return "false".to_string();
        }
        let list = cols
            .iter()
            .map(|c| sql_literal(c))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "EXISTS (SELECT 1 FROM unnest(ARRAY[{list}]::text[]) AS c(n) \
             WHERE {src}.after->c.n IS DISTINCT FROM (({src}.j->>'n')::jsonb)->c.n)"
        )
    };
    // n."col", or JSON null for json/jsonb columns listed in the item's "jn"
    let val = |c: &str| -> String {
        let q = quote_ident(c);
        if shape.columns.iter().any(|x| x.name == c && x.is_json()) {
            format!(
                "CASE WHEN (i.j->'jn') ? {} THEN 'null' ELSE n.{q} END",
                sql_literal(c)
            )
        } else {
            format!("n.{q}")
        }
    };
    match kind {
        ActionKind::Update => {
            let cols = shape.update_columns();
            let set = if cols.is_empty() {
                // Nothing writable differs (only key/excluded/generated columns): a no-op
                // update still archives and still locks.
                shape
                    .key_columns
                    .iter()
                    .map(|c| format!("{q} = t.{q}", q = quote_ident(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                cols.iter()
                    .map(|c| format!("{} = {}", quote_ident(c), val(c)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "WITH {items},\n w AS (UPDATE {tbl} AS t SET {set} FROM items AS i {k} {n} WHERE {join} AND {guard} \
                 RETURNING i.j AS j, to_jsonb(t) AS after),\n {a}\nSELECT (w.j->>'i')::int4, {rw} FROM w",
                rw = rewritten("w", &cols),
                k = key_of("i"),
                n = new_of("i"),
                join = shape.key_join("t", "k"),
                a = archive("w", true),
            )
        }
        ActionKind::Delete => format!(
            "WITH {items},\n w AS (DELETE FROM {tbl} AS t USING items AS i {k} WHERE {join} AND {guard} \
             RETURNING i.j AS j, NULL::jsonb AS after),\n {a}\nSELECT (w.j->>'i')::int4 FROM w",
            k = key_of("i"),
            join = shape.key_join("t", "k"),
            a = archive("w", true),
        ),
        ActionKind::Insert => {
            let cols = shape.insert_columns();
            let list = cols
                .iter()
                .map(|c| quote_ident(c))
                .collect::<Vec<_>>()
                .join(", ");
            let vals = cols.iter().map(|c| val(c)).collect::<Vec<_>>().join(", ");
            let ret_keys = shape
                .key_columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("t.{} AS \"c{i}\"", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let match_keys = shape
                .key_columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("w.\"c{i}\" = k.{}", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(" AND ");
            let overriding = if shape.has_identity_always() {
                " OVERRIDING SYSTEM VALUE"
            } else {
                ""
            };
            format!(
                "WITH {items},\n w AS (INSERT INTO {tbl} AS t ({list}){overriding} SELECT {vals} FROM items AS i {n} \
                 ON CONFLICT DO NOTHING RETURNING {ret_keys}, to_jsonb(t) AS after),\n \
                 ww AS (SELECT i.j, w.after FROM w JOIN (items AS i {k}) ON {match_keys}),\n {a}\n\
                 SELECT (ww.j->>'i')::int4, {rw} FROM ww",
                rw = rewritten("ww", &cols),
                n = new_of("i"),
                k = key_of("i"),
                a = archive("ww", true),
            )
        }
        ActionKind::Manual => format!(
            "WITH {items},\n w AS (SELECT i.j, (i.j->>'n')::jsonb AS after FROM items AS i \
             WHERE NOT EXISTS (SELECT 1 FROM {rc} AS r WHERE r.table_name = {ptable} AND r.key = i.j->'k' \
             AND r.resolved_at IS NULL AND r.resolution = 'manual' AND r.local_region = {pregion} \
             AND r.local_row IS NOT DISTINCT FROM (i.j->>'o')::jsonb)),\n {a}\nSELECT (w.j->>'i')::int4 FROM w",
            ptable = p(P_TABLE),
            pregion = p(P_REGION),
            a = archive("w", false),
        ),
    }
}
