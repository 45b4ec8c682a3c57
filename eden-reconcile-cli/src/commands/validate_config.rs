//! `validate-config`: the config file, then every rule against the live schema.

use std::io::Write;

use anyhow::{Result, bail};
use eden_consistency::Config;
use eden_consistency::ConnectOptions;

use super::Outcome;
use crate::cli::{Format, ValidateArgs};

/// `validate-config`: the file, then (unless `--offline`) every rule against the live schema
/// of every region. Findings go to stdout; exit 2 on errors, 1 on warnings only, else 0.
pub async fn run(config: Config, args: &ValidateArgs, format: Format) -> Result<Outcome> {
    use eden_consistency::Registry;
    use eden_consistency::validate::{self, Severity, Validation};

    let registry = Registry::new();
    let file = config
        .file
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(no config file)".into());
    let mut results: Vec<(Option<String>, Validation)> =
        vec![(None, validate::validate_offline(&config, &registry))];
    if !args.offline {
        config.validate()?;
        let databases: Vec<String> = match &args.db.db {
            Some(db) => vec![db.clone()],
            None => config
                .node_groups
                .iter()
                .map(|g| g.database.clone())
                .collect(),
        };
        results.clear();
        for db in databases {
            let regions =
                eden_consistency::connect_all(&config, Some(&db), &ConnectOptions::default())
                    .await?;
            results.push((
                Some(db.clone()),
                validate::validate_against(&config, &db, &regions, &registry).await?,
            ));
        }
    }
    let findings: Vec<(&Option<String>, &validate::Finding)> = results
        .iter()
        .flat_map(|(db, v)| v.findings.iter().map(move |f| (db, f)))
        .collect();
    let errors: Vec<_> = findings
        .iter()
        .filter(|(_, f)| f.severity == Severity::Error)
        .collect();
    let warnings = findings.len() - errors.len();
    let rules: usize = results.iter().map(|(_, v)| v.rules_checked).sum();
    let mut out = crate::output::stdout();
    match format {
        Format::Json => {
            let dbs: Vec<_> = results
                .iter()
                .map(|(db, v)| serde_json::json!({"database": db, "regions": v.regions, "rules_checked": v.rules_checked, "findings": v.findings}))
                .collect();
            let doc = serde_json::json!({"config": file, "valid": errors.is_empty(), "errors": errors.len(), "warnings": warnings, "databases": dbs});
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Format::Human => {
            for (db, f) in &findings {
                let level = if f.severity == Severity::Error {
                    "error"
                } else {
                    "warning"
                };
                let table = f
                    .table
                    .as_deref()
                    .map(|t| format!("table {t}: "))
                    .unwrap_or_default();
                let db = db.as_deref().map(|d| format!("[{d}] ")).unwrap_or_default();
                writeln!(out, "{level}: {db}{table}{}", f.message)?;
            }
            let scope = if args.offline {
                "file only".to_string()
            } else {
                format!("{} database(s) checked against the regions", results.len())
            };
            writeln!(
                out,
                "{file}: {rules} table rule(s), {} error(s), {warnings} warning(s) ({scope})",
                errors.len()
            )?;
        }
    }
    if let Some((_, first)) = errors.first() {
        let table = first
            .table
            .as_deref()
            .map(|t| format!("table {t}: "))
            .unwrap_or_default();
        let more = if errors.len() > 1 {
            format!(" (and {} more error(s))", errors.len() - 1)
        } else {
            String::new()
        };
        bail!("{file}: {table}{}{more}", first.message);
    }
    Ok(if warnings > 0 {
        Outcome::Differences
    } else {
        Outcome::Clean
    })
}
