//! `validate-config`: everything about a config that can be checked, the file alone or
//! against the live schema of every region.
//!
//! Loading a [`Config`] already refuses what the file alone gets wrong (unknown rules,
//! missing settings, undefined regions, expression syntax). This goes further, per table rule
//! of the node group of one database:
//!
//! - the table exists in every region and has a key (or `key_columns` name one);
//! - the columns a rule names exist (`tracking_column`, `column`, `columns`, the columns of a
//!   custom expression, `exclude_columns`, the soft-delete column) and have usable types;
//! - a `custom_rust` resolver is registered (services register theirs; the CLI has none);
//! - a `custom` expression behaves as an order on sampled rows of every region (and on
//!   synthetic rows): a warning when it is not antisymmetric or not transitive, since then
//!   the outcome of repairing regions two at a time could depend on the order of repairs.

use tokio_postgres::Client;

use crate::config::{Config, Resolution, TableRule};
use crate::error::{Error, Result};
use crate::pg::connect::Region;
use crate::pg::ident::quote_ident;
use crate::pg::schema::{self, TableSchema};
use crate::pg::{decode, expr};
use crate::resolve::{self, Registry, Resolver, Row, Version};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The config cannot work as written.
    Error,
    /// It works, but probably not as intended.
    Warning,
}

/// One thing found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// The table the finding is about, as written in the config.
    pub table: Option<String>,
    /// One sentence.
    pub message: String,
}

/// What `validate-config` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Validation {
    /// The regions checked against (empty when offline).
    pub regions: Vec<String>,
    /// Table rules looked at.
    pub rules_checked: usize,
    /// Everything found, in config order.
    pub findings: Vec<Finding>,
}

impl Validation {
    /// True when there is at least one error.
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// True when there is at least one warning.
    pub fn has_warnings(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.severity == Severity::Warning)
    }

    fn push(&mut self, severity: Severity, table: Option<&str>, message: String) {
        self.findings.push(Finding {
            severity,
            table: table.map(str::to_string),
            message,
        });
    }
}

/// Rows sampled per region for the order check of a custom expression.
const SAMPLE_ROWS: i64 = 32;

/// Checks the file alone (what loading did not already refuse): custom expressions on
/// synthetic rows, and `custom_rust` names against `registry`.
pub fn validate_offline(config: &Config, registry: &Registry) -> Validation {
    let mut v = Validation::default();
    let regions: Vec<String> = config.regions.iter().map(|r| r.name.clone()).collect();
    for group in &config.node_groups {
        for rule in &group.tables {
            v.rules_checked += 1;
            unknown_key_warnings(&mut v, rule);
            if let Err(m) = Resolver::new(&rule.resolution, rule.tombstone.as_ref(), &[], registry)
            {
                v.push(Severity::Error, Some(&rule.table), m.to_string());
                continue;
            }
            if let Resolution::Custom { expression } = &rule.resolution {
                let samples = resolve::synthetic_samples(expression, &regions);
                for w in resolve::check_expression_order(expression, &samples) {
                    v.push(Severity::Warning, Some(&rule.table), w);
                }
            }
        }
    }
    v
}

/// Checks every table rule of the node group of database `db` against the live schema of
/// every connected region (see the module docs). Errors of the connection itself are
/// returned as `Err`; everything about the config is a [`Finding`].
pub async fn validate_against(
    config: &Config,
    db: &str,
    regions: &[Region],
    registry: &Registry,
) -> Result<Validation> {
    let mut v = Validation {
        regions: regions.iter().map(|r| r.name.clone()).collect(),
        ..Validation::default()
    };
    let Some(group) = config.node_group(db) else {
        v.push(
            Severity::Warning,
            None,
            format!(
                "no node group has database {db:?}: every table follows the default rule ({})",
                config.default_resolution().name()
            ),
        );
        return Ok(v);
    };
    for rule in &group.tables {
        v.rules_checked += 1;
        unknown_key_warnings(&mut v, rule);
        check_rule(&mut v, rule, regions, registry).await?;
    }
    accident_warnings(&mut v, config, db, regions).await?;
    Ok(v)
}

/// The keys a table rule understands (for "did you mean" hints).
const RULE_KEYS: &[&str] = &[
    "table",
    "resolution",
    "tracking_column",
    "column",
    "regions",
    "expression",
    "key_columns",
    "exclude_columns",
    "columns",
    "custom_rust",
    "name",
    "tombstone",
    "missing_rows",
    "unique_collisions",
    "redact_columns",
];

/// Edit distance between two short words.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A warning per key of a table rule that the tool does not know: a typo such as
/// `traking_column:` would otherwise silently leave the rule without its setting.
fn unknown_key_warnings(v: &mut Validation, rule: &TableRule) {
    for key in &rule.unknown_keys {
        let hint = RULE_KEYS
            .iter()
            .map(|k| (distance(key, k), *k))
            .min()
            .filter(|(d, _)| *d <= 3)
            .map(|(_, k)| format!(" (did you mean {k}?)"))
            .unwrap_or_default();
        v.push(
            Severity::Warning,
            Some(&rule.table),
            format!("unknown key {key:?} in the table's rule is ignored{hint}"),
        );
    }
}

/// Warnings about decisions that would be made by accident: tables whose rule orders
/// versions by commit timestamps while `track_commit_timestamp` is off in a region (the
/// region order would decide; `fix` refuses that unless `--allow-tiebreak`), and tables
/// without a usable key (they are skipped).
async fn accident_warnings(
    v: &mut Validation,
    config: &Config,
    db: &str,
    regions: &[Region],
) -> Result<()> {
    let Some(first) = regions.first() else {
        return Ok(());
    };
    let mut ts_off = Vec::new();
    for r in regions {
        let on: String = r
            .client
            .query_one("SHOW track_commit_timestamp", &[])
            .await
            .map_err(|e| Error::query(&r.name, "reading track_commit_timestamp", &e))?
            .get(0);
        if on != "on" {
            ts_off.push(r.name.clone());
        }
    }
    let pglogical = config.provider.as_deref() == Some("pglogical");
    let own = vec![crate::store::conflicts::table_name(
        config
            .node_group(db)
            .and_then(|g| g.conflicts_schema.as_deref()),
    )];
    let tables = schema::covered_tables(&first.client, &first.name, pglogical, &own).await?;
    for t in tables {
        let rule = config.table_rule(db, &t);
        let resolution = rule
            .map(|r| r.resolution.clone())
            .unwrap_or_else(|| config.default_resolution());
        let by_commit_ts = matches!(
            &resolution,
            Resolution::LastWriteWins {
                tracking_column: None
            } | Resolution::FirstWriteWins {
                tracking_column: None
            }
        );
        if by_commit_ts && !ts_off.is_empty() {
            let whose = if rule.is_some() {
                "its rule"
            } else {
                "global.conflict_resolution (it has no rule of its own)"
            };
            v.push(
                Severity::Warning,
                Some(&t.to_string()),
                format!(
                    "{whose} decides by commit timestamps ({}), but track_commit_timestamp is off in {}: \
                     versions would tie and the region order would decide, so fix leaves such keys \
                     unresolved unless --allow-tiebreak; set tracking_column or turn track_commit_timestamp on",
                    resolution.name(),
                    ts_off.join(", ")
                ),
            );
        }
        let key_columns = rule.and_then(|r| r.key_columns.as_deref());
        if let Ok(Some(loaded)) =
            schema::load_table(&first.client, &first.name, &t, key_columns).await
        {
            if loaded.key.is_none() {
                v.push(
                    Severity::Warning,
                    Some(&t.to_string()),
                    loaded.skip_message(),
                );
            }
        }
    }
    Ok(())
}

/// Checks one table rule in every region.
async fn check_rule(
    v: &mut Validation,
    rule: &TableRule,
    regions: &[Region],
    registry: &Registry,
) -> Result<()> {
    let name = rule.table.as_str();
    let mut first: Option<(String, TableSchema)> = None;
    let mut samples = Vec::new();
    for region in regions {
        let Some(table) = schema::resolve_table(&region.client, &region.name, name).await? else {
            v.push(
                Severity::Error,
                Some(name),
                format!("table {name} does not exist in region {}", region.name),
            );
            continue;
        };
        let key_columns = rule.key_columns.as_deref();
        let loaded =
            match schema::load_table(&region.client, &region.name, &table, key_columns).await {
                Ok(Some(s)) => s,
                Ok(None) => {
                    v.push(
                        Severity::Error,
                        Some(name),
                        format!("table {table} does not exist in region {}", region.name),
                    );
                    continue;
                }
                Err(Error::Table { message, .. }) => {
                    v.push(
                        Severity::Error,
                        Some(name),
                        format!("in region {}: {message}", region.name),
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
        if loaded.key.is_none() {
            v.push(
                Severity::Error,
                Some(name),
                format!("in region {}: {}", region.name, loaded.skip_message()),
            );
        }
        if let Resolution::Custom { .. } = &rule.resolution {
            samples.extend(
                sample_versions(&region.client, region, &loaded, &rule.exclude_columns).await?,
            );
        }
        if first.is_none() {
            first = Some((region.name.clone(), loaded));
        }
    }
    let Some((_, table)) = first else {
        return Ok(());
    };

    for col in &rule.exclude_columns {
        if table.column(col).is_none() {
            v.push(
                Severity::Error,
                Some(name),
                format!(
                    "exclude_columns names {col:?}, which {} does not have",
                    table.name
                ),
            );
        }
    }
    let columns: Vec<String> = table
        .columns
        .iter()
        .filter(|c| !rule.exclude_columns.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    let resolver = match Resolver::new(
        &rule.resolution,
        rule.tombstone.as_ref(),
        &columns,
        registry,
    ) {
        Ok(r) => r,
        Err(m) => {
            v.push(Severity::Error, Some(name), m.to_string());
            return Ok(());
        }
    };
    let types: Vec<(String, String)> = table
        .columns
        .iter()
        .map(|c| (c.name.clone(), c.type_name.clone()))
        .collect();
    if let Err(m) = resolver.check_column_types(&types) {
        v.push(Severity::Error, Some(name), m.to_string());
    }
    if let Resolution::Custom { expression } = &rule.resolution {
        let region_names: Vec<String> = regions.iter().map(|r| r.name.clone()).collect();
        samples.extend(resolve::synthetic_samples(expression, &region_names));
        for w in resolve::check_expression_order(expression, &samples) {
            v.push(Severity::Warning, Some(name), w);
        }
    }
    Ok(())
}

/// Up to [`SAMPLE_ROWS`] rows of a table in one region, as resolver versions.
async fn sample_versions(
    client: &Client,
    region: &Region,
    table: &TableSchema,
    exclude: &[String],
) -> Result<Vec<Version>> {
    let cols: Vec<&schema::Column> = table
        .columns
        .iter()
        .filter(|c| !exclude.contains(&c.name))
        .collect();
    if cols.is_empty() {
        return Ok(Vec::new());
    }
    let select: Vec<String> = cols
        .iter()
        .map(|c| expr::select_expr(*c, Some("t")))
        .collect();
    let sql = format!(
        "SELECT {} FROM {} AS {} LIMIT {SAMPLE_ROWS}",
        select.join(", "),
        table.name.quoted(),
        quote_ident("t")
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| Error::query(&region.name, format!("sampling {}", table.name), e))?;
    let names: std::sync::Arc<[String]> = cols.iter().map(|c| c.name.clone()).collect();
    let owned: Vec<schema::Column> = cols.iter().map(|c| (*c).clone()).collect();
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let values = decode::decode_row(row, 0, &owned).map_err(|m| Error::Table {
            table: table.name.to_string(),
            message: format!("region {}: {m}", region.name),
        })?;
        let row = Row::new(names.clone(), values).map_err(|m| Error::Table {
            table: table.name.to_string(),
            message: m.to_string(),
        })?;
        out.push(Version::present(region.name.clone(), region.index, row));
    }
    Ok(out)
}
