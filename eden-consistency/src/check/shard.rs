//! `check --shard I/N` and `merge-reports` (see `docs/sharding.md`).
//!
//! **Plan.** Every worker computes the same plan from the first region's catalog
//! statistics: a table whose `pg_class.reltuples` is at least [`ShardOptions::split_min_rows`]
//! and whose first key column has a `pg_stats.histogram_bounds` is *split* into N key
//! ranges at N-1 of the histogram's bounds (equal-frequency quantiles, so the shards get
//! about the same number of rows), taken in byte order (`COLLATE "C"`) like the chunks;
//! any other table goes *whole* to shard `fnv1a(name) mod N`. The statistics change only
//! when the table is analyzed (and `reltuples` when vacuumed), so workers started within
//! minutes of each other agree; when they do not, `merge-reports` sees two different
//! plans and refuses the reports, which is safe. (Hashing keys instead would be immune to
//! statistics but makes every worker scan the whole table; ranges let each worker read
//! only its part through the key's index and keep chunks aligned.)
//!
//! **Pieces.** Shard I checks its whole tables and, of each split table, the keys in
//! `[bounds[I-1], bounds[I])` (the first shard from minus infinity, the last up to plus
//! infinity and the NULL keys) by adding that range to the `--where` filter. Its report
//! carries `shard` (index, count, the plan) and per table `shard_range`.
//!
//! **Merge.** [`merge_reports`] checks that the reports tile the work (same N, every index
//! exactly once, same database and regions, the same plan, each table piece where the plan
//! puts it with exactly its range) and then adds them up into one report of the usual shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::pg::ident::{TableName, quote_ident, quote_literal};
use crate::pg::schema::Column;

/// `I/N`: this worker's index (0-based, as Kubernetes' `JOB_COMPLETION_INDEX`) and the
/// number of shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0 ..= count - 1.
    pub index: u32,
    /// At least 1.
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || {
            format!(
                "--shard {s}: expected I/N with 0 <= I < N, e.g. 0/4 (I is 0-based like JOB_COMPLETION_INDEX)"
            )
        };
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count || count > 10_000 {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// `--shard` settings.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// This worker's shard.
    pub shard: Shard,
    /// Tables with fewer rows (`pg_class.reltuples` in the first region) go whole to one
    /// shard (`--shard-split-rows`, default 100 000).
    pub split_min_rows: u64,
}

impl ShardOptions {
    /// Shard `shard` with the default split size.
    pub fn new(shard: Shard) -> ShardOptions {
        ShardOptions {
            shard,
            split_min_rows: 100_000,
        }
    }
}

/// Where one table's work goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablePlan {
    /// Schema-qualified table.
    pub table: String,
    /// The shard that checks the whole table (small tables).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub whole_in: Option<u32>,
    /// The first key column the table is split on.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub split_on: Option<String>,
    /// The N-1 split keys, as PostgreSQL prints them, increasing in byte order.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub bounds: Vec<String>,
}

/// A table piece's key range in a shard report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRange {
    /// The whole table.
    pub whole: bool,
    /// The first key column of the range.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub column: Option<String>,
    /// Inclusive lower end (`null`: from the smallest key).
    #[serde(default)]
    pub from: Option<String>,
    /// Exclusive upper end (`null`: to the largest key, NULL keys included).
    #[serde(default)]
    pub to: Option<String>,
}

/// The `shard` object of a shard's report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShardReport {
    /// This shard's index (0-based).
    pub index: u32,
    /// Number of shards.
    pub count: u32,
    /// Every table of the run and where its work goes (identical in every shard).
    pub plan: Vec<TablePlan>,
}

/// FNV-1a, 64 bits: a hash that never changes between builds or platforms.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The plan of one table from the first region's statistics (`key0`: its first key
/// column, `None` for a table without a usable key).
pub(crate) async fn plan_table(
    client: &Client,
    table: &TableName,
    key0: Option<&Column>,
    opts: &ShardOptions,
) -> TablePlan {
    let n = opts.shard.count;
    let whole = TablePlan {
        table: table.to_string(),
        whole_in: Some((fnv1a(&table.to_string()) % n as u64) as u32),
        split_on: None,
        bounds: Vec::new(),
    };
    let Some(k) = key0.filter(|_| n > 1) else {
        return whole;
    };
    let rows = match client
        .query_one(
            "SELECT COALESCE((SELECT sum(GREATEST(c.reltuples, 0)) FROM pg_class c \
               WHERE c.oid = $1::text::regclass \
                  OR c.oid IN (SELECT relid FROM pg_partition_tree($1::text::regclass))), 0)::float8",
            &[&table.quoted()],
        )
        .await
    {
        Ok(r) => r.get::<_, f64>(0),
        Err(_) => return whole,
    };
    if rows < opts.split_min_rows as f64 {
        return whole;
    }
    let coll = if k.collation.is_some() && !k.is_array {
        " COLLATE \"C\""
    } else {
        ""
    };
    let sql = format!(
        "SELECT u.x::text AS bound FROM (SELECT unnest(h::text::{ty}[]) AS x FROM \
           (SELECT histogram_bounds AS h FROM pg_stats WHERE schemaname = $1 AND tablename = $2 AND attname = $3 \
            ORDER BY inherited DESC LIMIT 1) s) u WHERE u.x IS NOT NULL ORDER BY u.x{coll}",
        ty = k.type_name
    );
    let bounds: Vec<String> = match client
        .query(&sql, &[&table.schema, &table.name, &k.name])
        .await
    {
        Ok(r) => r.iter().map(|r| r.get::<_, String>(0)).collect(),
        Err(_) => return whole,
    };
    if bounds.len() < n as usize {
        return whole;
    }
    let mut picked: Vec<String> = Vec::new();
    for i in 1..n as usize {
        let b = &bounds[i * bounds.len() / n as usize];
        if picked.last() == Some(b) {
            return whole;
        }
        picked.push(b.clone());
    }
    TablePlan {
        table: table.to_string(),
        whole_in: None,
        split_on: Some(k.name.clone()),
        bounds: picked,
    }
}

impl TablePlan {
    /// Whether shard `index` checks (part of) this table.
    pub fn in_shard(&self, index: u32) -> bool {
        self.whole_in.is_none_or(|w| w == index)
    }

    /// The key range shard `index` covers.
    pub fn range(&self, index: u32) -> ShardRange {
        match &self.split_on {
            None => ShardRange {
                whole: true,
                column: None,
                from: None,
                to: None,
            },
            Some(c) => {
                let i = index as usize;
                ShardRange {
                    whole: false,
                    column: Some(c.clone()),
                    from: if i == 0 {
                        None
                    } else {
                        self.bounds.get(i - 1).cloned()
                    },
                    to: self.bounds.get(i).cloned(),
                }
            }
        }
    }
}

/// `filter AND <the range>` on the first key column `k` (byte order for text, the NULL
/// keys in the last range).
pub(crate) fn with_range(filter: Option<String>, range: &ShardRange, k: &Column) -> Option<String> {
    if range.whole {
        return filter;
    }
    let col = format!("t.{}", quote_ident(&k.name));
    let coll = if k.collation.is_some() && !k.is_array {
        " COLLATE \"C\""
    } else {
        ""
    };
    let mut parts = Vec::new();
    if let Some(f) = &range.from {
        parts.push(format!(
            "{col}{coll} >= {}::{}",
            quote_literal(f),
            k.type_name
        ));
    }
    if let Some(t) = &range.to {
        parts.push(format!(
            "{col}{coll} < {}::{}",
            quote_literal(t),
            k.type_name
        ));
    }
    let mut cond = parts.join(" AND ");
    if range.to.is_none() && !cond.is_empty() {
        cond = format!("({cond} OR {col} IS NULL)");
    }
    match (filter, cond.is_empty()) {
        (f, true) => f,
        (None, false) => Some(cond),
        (Some(f), false) => Some(format!("({f}) AND {cond}")),
    }
}

fn usage(m: String) -> Error {
    Error::Usage(m)
}

/// Combines the shard reports `inputs` (`(file name, report)`) into one report of the
/// shape of an unsharded `check`, after checking that they tile the work exactly.
pub fn merge_reports(inputs: &[(String, Json)]) -> Result<Json> {
    if inputs.is_empty() {
        return Err(usage(
            "merge-reports needs the shard reports to combine".into(),
        ));
    }
    struct In<'a> {
        file: &'a str,
        doc: &'a Map<String, Json>,
        index: u32,
        count: u32,
        plan: &'a Json,
    }
    let mut ins: Vec<In<'_>> = Vec::new();
    for (file, doc) in inputs {
        let d = doc
            .as_object()
            .ok_or_else(|| usage(format!("{file} is not a check report (not a JSON object)")))?;
        let sh = d.get("shard").and_then(Json::as_object).ok_or_else(|| {
            usage(format!(
                "{file} is not the report of a sharded check (no \"shard\" object; run check --shard I/N --format json)"
            ))
        })?;
        let num = |k: &str| {
            sh.get(k)
                .and_then(Json::as_u64)
                .map(|x| x as u32)
                .ok_or_else(|| usage(format!("{file}: \"shard\" has no numeric {k}")))
        };
        let plan = sh
            .get("plan")
            .filter(|p| p.is_array())
            .ok_or_else(|| usage(format!("{file}: \"shard\" has no plan")))?;
        ins.push(In {
            file,
            doc: d,
            index: num("index")?,
            count: num("count")?,
            plan,
        });
    }
    let n = ins[0].count;
    for i in &ins[1..] {
        if i.count != n {
            return Err(usage(format!(
                "{} is a shard of {} but {} is a shard of {n}; give the reports of one sharded run",
                i.file, i.count, ins[0].file
            )));
        }
    }
    let mut by_index: BTreeMap<u32, &In<'_>> = BTreeMap::new();
    for i in &ins {
        if i.index >= n {
            return Err(usage(format!(
                "{}: shard index {} is not below {n}",
                i.file, i.index
            )));
        }
        if let Some(o) = by_index.insert(i.index, i) {
            return Err(usage(format!(
                "shard {}/{n} is given twice ({} and {})",
                i.index, o.file, i.file
            )));
        }
    }
    if let Some(missing) = (0..n).find(|x| !by_index.contains_key(x)) {
        return Err(usage(format!(
            "shard {missing}/{n} is missing; give all {n} shard reports"
        )));
    }
    let first = by_index[&0];
    for k in ["database", "databases", "regions", "kind"] {
        for i in by_index.values() {
            if i.doc.get(k) != first.doc.get(k) {
                return Err(usage(format!(
                    "{} and {} are reports of different databases or regions ({k} differs)",
                    first.file, i.file
                )));
            }
        }
    }
    for i in by_index.values() {
        if i.plan != first.plan {
            return Err(usage(format!(
                "{} and {} split the tables differently (the statistics changed between the workers' starts, or the tables or options differ); run all shards again",
                first.file, i.file
            )));
        }
    }
    let plan: Vec<TablePlan> = serde_json::from_value(first.plan.clone())
        .map_err(|e| usage(format!("{}: unreadable shard plan ({e})", first.file)))?;
    // Each shard's table pieces, by table name.
    let mut pieces: Vec<BTreeMap<String, &Map<String, Json>>> = Vec::new();
    for i in by_index.values() {
        let mut m = BTreeMap::new();
        for t in i
            .doc
            .get("tables")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let t = t
                .as_object()
                .ok_or_else(|| usage(format!("{}: a table entry is not an object", i.file)))?;
            let name = t
                .get("table")
                .and_then(Json::as_str)
                .ok_or_else(|| usage(format!("{}: a table entry has no name", i.file)))?;
            if !plan.iter().any(|p| p.table == name) {
                return Err(usage(format!(
                    "{} reports table {name}, which is not in the shard plan",
                    i.file
                )));
            }
            if m.insert(name.to_string(), t).is_some() {
                return Err(usage(format!("{} reports table {name} twice", i.file)));
            }
        }
        pieces.push(m);
    }
    let mut tables = Vec::new();
    for p in &plan {
        if p.split_on.is_some() && p.bounds.len() + 1 != n as usize {
            return Err(usage(format!(
                "the shard plan splits table {} into {} ranges, not {n}",
                p.table,
                p.bounds.len() + 1
            )));
        }
        let mut parts: Vec<&Map<String, Json>> = Vec::new();
        for (idx, shard_pieces) in pieces.iter().enumerate() {
            let idx = idx as u32;
            let got = shard_pieces.get(&p.table);
            let want = p.in_shard(idx);
            match (got, want) {
                (None, true) => {
                    return Err(usage(format!(
                        "table {} is missing from shard {idx}/{n} ({})",
                        p.table, by_index[&idx].file
                    )));
                }
                (Some(_), false) => {
                    return Err(usage(format!(
                        "table {} appears in shard {idx}/{n} ({}) but the plan puts it whole in shard {}/{n}",
                        p.table,
                        by_index[&idx].file,
                        p.whole_in.unwrap_or_default()
                    )));
                }
                (Some(t), true) => {
                    let range: Option<ShardRange> = t
                        .get("shard_range")
                        .and_then(|r| serde_json::from_value(r.clone()).ok());
                    let expect = p.range(idx);
                    if range.as_ref() != Some(&expect) {
                        return Err(usage(format!(
                            "table {} in shard {idx}/{n} ({}) covers {} but the plan gives it {}; the key ranges do not fit together",
                            p.table,
                            by_index[&idx].file,
                            range.map_or("no range".to_string(), |r| describe(&r)),
                            describe(&expect)
                        )));
                    }
                    parts.push(t);
                }
                (None, false) => {}
            }
        }
        tables.push(merge_table(&parts));
    }
    let consistent = tables.iter().all(|t| t["status"] == "consistent");
    let in_flight: u64 = tables
        .iter()
        .map(|t| t["in_flight_count"].as_u64().unwrap_or(0))
        .sum();
    let run_ids: Vec<&Json> = by_index.values().map(|i| &i.doc["run_id"]).collect();
    let run_id = if run_ids.iter().all(|r| *r == run_ids[0]) {
        run_ids[0].clone()
    } else {
        Json::String(uuid::Uuid::new_v4().to_string())
    };
    let mut out = Map::new();
    for k in ["database", "kind", "databases", "regions"] {
        if let Some(v) = first.doc.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    out.insert("consistent".into(), json!(consistent));
    out.insert("tables".into(), Json::Array(tables));
    out.insert("in_flight_count".into(), json!(in_flight));
    if let Some(m) = first.doc.get("mode") {
        out.insert("mode".into(), m.clone());
    }
    out.insert("run_id".into(), run_id);
    let docs: Vec<&Map<String, Json>> = by_index.values().map(|i| i.doc).collect();
    out.insert(
        "stats".into(),
        sum_region_maps(docs.iter().map(|d| d.get("stats"))),
    );
    out.insert(
        "elapsed_ms".into(),
        json!(
            docs.iter()
                .filter_map(|d| d.get("elapsed_ms").and_then(Json::as_u64))
                .max()
                .unwrap_or(0)
        ),
    );
    out.insert(
        "merged_from".into(),
        Json::Array(
            by_index
                .values()
                .map(|i| json!({"shard": format!("{}/{n}", i.index), "file": i.file, "run_id": i.doc.get("run_id")}))
                .collect(),
        ),
    );
    Ok(Json::Object(out))
}

fn describe(r: &ShardRange) -> String {
    if r.whole {
        return "the whole table".into();
    }
    format!(
        "{} in [{}, {})",
        r.column.as_deref().unwrap_or("?"),
        r.from.as_deref().unwrap_or("-inf"),
        r.to.as_deref().unwrap_or("+inf")
    )
}

/// Sums maps of region → number or region → object of numbers.
fn sum_region_maps<'a>(maps: impl Iterator<Item = Option<&'a Json>>) -> Json {
    let mut out = Map::new();
    for m in maps.flatten().filter_map(Json::as_object) {
        for (region, v) in m {
            let slot = out.entry(region.clone()).or_insert(Json::Null);
            *slot = add_json(slot, v);
        }
    }
    Json::Object(out)
}

fn add_json(a: &Json, b: &Json) -> Json {
    match (a, b) {
        (Json::Null, b) => b.clone(),
        (Json::Number(x), Json::Number(y)) => match (x.as_u64(), y.as_u64()) {
            (Some(x), Some(y)) => json!(x + y),
            _ => json!(x.as_f64().unwrap_or(0.0) + y.as_f64().unwrap_or(0.0)),
        },
        (Json::Object(x), Json::Object(y)) => {
            let mut o = x.clone();
            for (k, v) in y {
                let s = o.get(k).cloned().unwrap_or(Json::Null);
                o.insert(k.clone(), add_json(&s, v));
            }
            Json::Object(o)
        }
        (a, _) => a.clone(),
    }
}

fn status_rank(s: &str) -> u8 {
    match s {
        "error" => 4,
        "schema_mismatch" => 3,
        "skipped" => 2,
        "divergent" => 1,
        _ => 0,
    }
}

/// One table's report from its pieces, in key order.
fn merge_table(parts: &[&Map<String, Json>]) -> Json {
    let first = parts[0];
    let worst = parts
        .iter()
        .max_by_key(|p| status_rank(p.get("status").and_then(Json::as_str).unwrap_or("")))
        .copied()
        .unwrap_or(first);
    let status = worst["status"].as_str().unwrap_or("consistent").to_string();
    let sum = |k: &str| -> u64 {
        parts
            .iter()
            .map(|p| p.get(k).and_then(Json::as_u64).unwrap_or(0))
            .sum()
    };
    let difference_count = sum("difference_count");
    let mut out = Map::new();
    out.insert("table".into(), first["table"].clone());
    let key_columns = parts
        .iter()
        .map(|p| &p["key_columns"])
        .find(|k| k.as_array().is_some_and(|a| !a.is_empty()))
        .cloned()
        .unwrap_or_else(|| first["key_columns"].clone());
    out.insert("key_columns".into(), key_columns);
    out.insert("status".into(), json!(status));
    let message = if status == "divergent" {
        Some(json!(format!(
            "{difference_count} row{} differ{} between regions",
            if difference_count == 1 { "" } else { "s" },
            if difference_count == 1 { "s" } else { "" }
        )))
    } else {
        worst.get("message").cloned()
    };
    if let Some(m) = message {
        out.insert("message".into(), m);
    }
    out.insert(
        "row_counts".into(),
        sum_region_maps(parts.iter().map(|p| p.get("row_counts"))),
    );
    out.insert("difference_count".into(), json!(difference_count));
    out.insert(
        "differences".into(),
        Json::Array(
            parts
                .iter()
                .flat_map(|p| {
                    p.get("differences")
                        .and_then(Json::as_array)
                        .cloned()
                        .unwrap_or_default()
                })
                .collect(),
        ),
    );
    out.insert("in_flight_count".into(), json!(sum("in_flight_count")));
    if let Some(sd) = worst.get("schema_differences") {
        out.insert("schema_differences".into(), sd.clone());
    }
    let mode = parts
        .iter()
        .filter_map(|p| p.get("mode").and_then(Json::as_str))
        .find(|m| !m.is_empty())
        .unwrap_or("");
    out.insert("mode".into(), json!(mode));
    out.insert(
        "stats".into(),
        sum_region_maps(parts.iter().map(|p| p.get("stats"))),
    );
    out.insert(
        "elapsed_ms".into(),
        json!(
            parts
                .iter()
                .filter_map(|p| p.get("elapsed_ms").and_then(Json::as_u64))
                .max()
                .unwrap_or(0)
        ),
    );
    let incs: Vec<&Map<String, Json>> = parts
        .iter()
        .filter_map(|p| p.get("incremental").and_then(Json::as_object))
        .collect();
    if !incs.is_empty() {
        let mut inc = Map::new();
        inc.insert(
            "full_pass".into(),
            json!(
                incs.iter()
                    .all(|i| i.get("full_pass") == Some(&json!(true)))
            ),
        );
        let mut reasons: Vec<&str> = incs
            .iter()
            .filter_map(|i| i.get("reason").and_then(Json::as_str))
            .collect();
        reasons.dedup();
        inc.insert("reason".into(), json!(reasons.join("; ")));
        for k in [
            "chunks_total",
            "chunks_rehashed",
            "chunks_changed",
            "chunks_count_changed",
            "chunks_differing_before",
        ] {
            inc.insert(
                k.into(),
                json!(
                    incs.iter()
                        .filter_map(|i| i.get(k).and_then(Json::as_u64))
                        .sum::<u64>()
                ),
            );
        }
        // Present for incremental passes only.
        for k in ["count_ranges", "count_ranges_refined"] {
            let vals: Vec<u64> = incs
                .iter()
                .filter_map(|i| i.get(k).and_then(Json::as_u64))
                .collect();
            if !vals.is_empty() {
                inc.insert(k.into(), json!(vals.iter().sum::<u64>()));
            }
        }
        for k in ["tracking_column", "changes_since", "last_full_pass_at"] {
            if let Some(v) = incs
                .iter()
                .filter_map(|i| i.get(k).and_then(Json::as_str))
                .min()
            {
                inc.insert(k.into(), json!(v));
            }
        }
        inc.insert(
            "runs_since_full_pass".into(),
            json!(
                incs.iter()
                    .filter_map(|i| i.get("runs_since_full_pass").and_then(Json::as_u64))
                    .max()
                    .unwrap_or(0)
            ),
        );
        out.insert("incremental".into(), Json::Object(inc));
    }
    Json::Object(out)
}

/// The exit code of a (merged) report: 2 when a table could not be checked, 1 when not
/// consistent, else 0.
pub fn report_exit_code(report: &Json) -> i32 {
    let error = report["tables"]
        .as_array()
        .is_some_and(|ts| ts.iter().any(|t| t["status"] == "error"));
    if error {
        2
    } else if report["consistent"] == json!(true) {
        0
    } else {
        1
    }
}

impl super::Checker {
    /// With `--shard`: the plan of every table (from the first region) and the tables
    /// this shard checks; without: the tables unchanged.
    pub(super) async fn shard_tables(
        &self,
        tables: Vec<TableName>,
        opts: &super::CheckOptions,
    ) -> Result<Vec<TableName>> {
        let Some(so) = &opts.shard else {
            *self.shard_plan.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return Ok(tables);
        };
        let first = self.regions.first().ok_or_else(|| {
            Error::Usage("no region to check: give --region NAME=CONNINFO".into())
        })?;
        let mut plan = Vec::new();
        let mut mine = Vec::new();
        for t in tables {
            let schema = self.first_schema(&t).await?;
            let key0 = schema.as_ref().and_then(|s| {
                s.key
                    .as_ref()
                    .and_then(|k| k.first())
                    .and_then(|k| s.column(k))
                    .cloned()
            });
            let p = plan_table(&first.client, &t, key0.as_ref(), so).await;
            if p.in_shard(so.shard.index) {
                mine.push(t);
            }
            plan.push(p);
        }
        *self.shard_plan.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::sync::Arc::new(plan));
        Ok(mine)
    }

    /// This shard's range of `table` (`None` without `--shard`).
    pub(super) fn shard_range(
        &self,
        table: &TableName,
        opts: &super::CheckOptions,
    ) -> Option<(ShardRange, Option<String>)> {
        let so = opts.shard.as_ref()?;
        let plan = self
            .shard_plan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        let name = table.to_string();
        let p = plan.iter().find(|p| p.table == name)?;
        Some((p.range(so.shard.index), p.split_on.clone()))
    }

    /// The report's `shard` object.
    pub(super) fn shard_report(&self, opts: &super::CheckOptions) -> Option<ShardReport> {
        let so = opts.shard.as_ref()?;
        let plan = self
            .shard_plan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(ShardReport {
            index: so.shard.index,
            count: so.shard.count,
            plan: plan.as_ref().clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_shards() {
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
        assert!("4/4".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    #[test]
    fn ranges_tile() {
        let p = TablePlan {
            table: "public.t".into(),
            whole_in: None,
            split_on: Some("id".into()),
            bounds: vec!["10".into(), "20".into()],
        };
        assert_eq!(p.range(0).to.as_deref(), Some("10"));
        assert_eq!(p.range(1).from.as_deref(), Some("10"));
        assert_eq!(p.range(2).to, None);
        assert!(p.in_shard(2));
    }
}
