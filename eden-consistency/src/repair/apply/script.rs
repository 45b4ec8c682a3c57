//! `--sql-out`: the same statements rendered as one psql script per region.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::pg::ident::escape_control;
use crate::repair::plan::{FixPlan, TableShape, sql_literal};

use super::ApplyOptions;
use super::report::{FixReport, build_report};
use super::run::{origin_cleanup_sql, origin_name, origin_setup_sql};
use super::schedule::{RegionWork, prepare};
use super::sql::{P_ITEMS, P_REGION, P_TABLE, batch_sql, conflicts_table};

/// The path of region `region`'s script for `--sql-out FILE`: the region's name is put
/// before the extension (`fix.sql` → `fix.us-east-1.sql`); a directory gets `<region>.sql`.
pub(crate) fn script_path(file: &Path, region: &str) -> PathBuf {
    let safe: String = region
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if file.is_dir() {
        return file.join(format!("{safe}.sql"));
    }
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fix".into());
    let ext = file
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "sql".into());
    file.with_file_name(format!("{stem}.{safe}.{ext}"))
}

/// Renders one region's work as a psql script: the same guarded, archiving statements as
/// [`apply_plan_on`](super::apply_plan_on), with the data inlined, one transaction per batch.
pub(crate) fn region_script(
    work: &RegionWork,
    shapes: &[&TableShape],
    table_names: &[String],
    run_id: &str,
    database: &str,
    opts: &ApplyOptions,
    create_conflicts_sql: &str,
) -> String {
    let rc = conflicts_table(&opts.conflicts_schema);
    // Text in `--` comments is one line whatever it holds: a newline in a table name must not
    // start a line of its own (psql would run `\! cmd` there).
    let c = |t: &str| escape_control(t).into_owned();
    let (run_id_c, database, region) = (c(run_id), c(database), c(&work.region));
    let mut s = String::new();
    s.push_str(&format!(
        "-- eden-reconcile fix, run {run_id}\n-- region {}, database {database}\n\
         -- Run with: psql -X -v ON_ERROR_STOP=1 -d <{database} in {}> -f <this file>\n\
         -- Each batch is one transaction. Its statement only touches rows still equal to what\n\
         -- was read when planning (to_jsonb image), archives each row it changes into\n\
         -- replication_conflicts in the same statement, and returns the items it wrote.\n\n",
        region,
        region,
        run_id = run_id_c
    ));
    s.push_str("\\set ON_ERROR_STOP on\n");
    s.push_str(&crate::pg::session::set_script());
    s.push('\n');
    let origin = origin_name(run_id, &work.region);
    if opts.no_replicate {
        s.push_str("-- --no-replicate: write under a replication origin of this run and region\n");
        s.push_str(&origin_setup_sql(&origin));
        s.push_str("\n\n");
    }
    s.push_str(create_conflicts_sql.trim_end());
    s.push_str("\n\n");
    for (n, unit) in work.units.iter().enumerate() {
        let t = unit.steps.first().map(|st| st.table).unwrap_or(0);
        s.push_str(&format!(
            "-- batch {}: {}\nBEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE;\n",
            n + 1,
            c(table_names.get(t).map(String::as_str).unwrap_or(""))
        ));
        if unit.deferred {
            s.push_str("SET CONSTRAINTS ALL DEFERRED;\n");
        }
        for step in &unit.steps {
            let items: Vec<serde_json::Value> = step
                .items
                .iter()
                .map(|&i| work.items[i].to_json(i))
                .collect();
            let items = serde_json::Value::Array(items).to_string();
            let table_name = table_names[step.table].clone();
            let lit = |n: usize| -> String {
                match n {
                    P_ITEMS => sql_literal(&items),
                    P_TABLE => format!("{}::text", sql_literal(&table_name)),
                    P_REGION => format!("{}::text", sql_literal(&work.region)),
                    _ => format!("{}::text", sql_literal(run_id)),
                }
            };
            s.push_str(&format!(
                "-- {} {} row(s) of {}\n",
                step.kind.as_str(),
                step.items.len(),
                c(&table_name)
            ));
            s.push_str(&batch_sql(shapes[step.table], step.kind, &rc, &lit));
            s.push_str(";\n");
        }
        s.push_str("COMMIT;\n\n");
    }
    if opts.no_replicate {
        s.push_str(&origin_cleanup_sql(&origin));
        s.push('\n');
    }
    s
}

/// `--sql-out FILE`: writes one psql script per region that has writes (`FILE` with the
/// region's name inserted before the extension) and returns the report of the (unapplied) plan with the files listed.
pub fn write_sql_scripts(plan: &FixPlan, file: &Path, opts: &ApplyOptions) -> Result<FixReport> {
    let prepared = prepare(plan, opts.batch_size);
    let shapes: Vec<&TableShape> = plan.tables.iter().map(|t| &t.shape).collect();
    let names: Vec<String> = plan.tables.iter().map(|t| t.table.to_string()).collect();
    let create = crate::store::conflicts::init_sql(&crate::store::conflicts::table_name(Some(
        &opts.conflicts_schema,
    )));
    let mut files = Vec::new();
    for w in &prepared.work {
        if w.items.is_empty() {
            continue;
        }
        let text = region_script(
            w,
            &shapes,
            &names,
            &plan.run_id,
            &plan.database,
            opts,
            &create,
        );
        let path = script_path(file, &w.region);
        std::fs::write(&path, text).map_err(|e| Error::Io {
            path: path.display().to_string(),
            message: format!("cannot write the SQL script: {e}"),
        })?;
        files.push(path.display().to_string());
    }
    let statuses = HashMap::new();
    Ok(build_report(
        plan,
        &statuses,
        true,
        false,
        &files,
        &BTreeMap::new(),
    ))
}
