//! The deployment files in `deploy/` against the code: the Prometheus rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`), every query of the
//! rules and of the Grafana dashboard names only metrics the tool emits
//! ([`eden_consistency::metrics::METRICS`]), the CronJob runs the nightly job the way the
//! README says, and its ConfigMap holds a config the tool loads.

use std::path::{Path, PathBuf};
use std::process::Command;

use eden_consistency::Config;
use eden_consistency::metrics::{METRICS, metric};
use serde_json::Value;

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

fn promtool(args: &[&str], dir: &Path) {
    let promtool = "/usr/bin/promtool";
    assert!(
        Path::new(promtool).exists(),
        "promtool is missing: install the Debian package prometheus (scripts/test-deps.sh does this)"
    );
    let out = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = deploy().join("prometheus");
    promtool(&["check", "rules", "eden-reconcile-rules.yaml"], &dir);
    promtool(&["test", "rules", "eden-reconcile-rules.test.yaml"], &dir);
    // The four alerts the nightly job needs are there.
    let rules = &yaml_docs(&dir.join("eden-reconcile-rules.yaml"))[0];
    let names: Vec<&str> = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for a in [
        "EdenReconcileNotSucceeded",
        "EdenDatabaseInconsistent",
        "EdenReplicationLagHigh",
        "EdenUnresolvedConflictsGrowing",
    ] {
        assert!(names.contains(&a), "missing alert {a}: {names:?}");
    }
}

/// The metric names a PromQL expression selects: identifiers that are not functions,
/// keywords, label names (inside `{}` or `by (...)`-style lists) or durations.
fn metric_names(expr: &str) -> Vec<String> {
    const LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "group_left",
        "group_right",
        "by",
        "without",
        "on",
        "ignoring",
        "inf",
        "nan",
        // aggregation operators, also written `max by (l) (expr)`
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    let c: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    let skip_to = |i: &mut usize, close: char| {
        while *i < c.len() && c[*i] != close {
            if c[*i] == '"' {
                *i += 1;
                while *i < c.len() && c[*i] != '"' {
                    if c[*i] == '\\' {
                        *i += 1;
                    }
                    *i += 1;
                }
            }
            *i += 1;
        }
        *i += 1;
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' || ch == '`' {
            i += 1;
            while i < c.len() && c[i] != ch {
                if c[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if ch == '{' {
            skip_to(&mut i, '}');
        } else if ch == '[' {
            skip_to(&mut i, ']');
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
        } else if ch.is_ascii_alphabetic() || ch == '_' || ch == ':' {
            let start = i;
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '_' || c[i] == ':') {
                i += 1;
            }
            let ident: String = c[start..i].iter().collect();
            let mut j = i;
            while j < c.len() && c[j].is_whitespace() {
                j += 1;
            }
            let call = j < c.len() && c[j] == '(';
            if call && LISTS.contains(&ident.as_str()) {
                i = j + 1;
                skip_to(&mut i, ')');
            } else if call || KEYWORDS.contains(&ident.to_ascii_lowercase().as_str()) {
                // a function (its arguments are read on) or a keyword
            } else {
                names.push(ident);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_expression_reader_finds_metric_names() {
    assert_eq!(
        metric_names(
            "max by (database, region) (eden_reconcile_replication_lag_seconds{region=~\"a|b\"}) > on (database) group_left max by (database) (x_y[5m] offset 1d) > 26 * 3600"
        ),
        vec!["eden_reconcile_replication_lag_seconds", "x_y"]
    );
    assert_eq!(metric_names("time() - foo"), vec!["foo"]);
}

/// Every PromQL expression of the rules and the dashboard (and its variables).
fn queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let rules = &yaml_docs(&deploy().join("prometheus/eden-reconcile-rules.yaml"))[0];
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            out.push((
                format!("rule {name}"),
                r["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    let path = deploy().join("grafana/eden-reconcile-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            out.push((
                format!("panel {}", p["title"]),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let q = v["definition"].as_str().unwrap();
            // label_values(METRIC, LABEL): the metric is the first argument.
            let metric = q
                .strip_prefix("label_values(")
                .and_then(|r| r.split(',').next())
                .unwrap_or(q);
            out.push((format!("variable {}", v["name"]), metric.to_string()));
        }
    }
    out
}

#[test]
fn rules_and_dashboard_name_only_metrics_the_tool_emits() {
    let mut used = std::collections::BTreeSet::new();
    for (place, expr) in queries() {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{place}: no metric in {expr}");
        for n in names {
            assert!(
                metric(&n).is_some(),
                "{place}: {n} is not a metric eden-reconcile emits (see metrics::METRICS): {expr}"
            );
            used.insert(n);
        }
    }
    // The dashboard and rules together show every metric of the contract's table.
    for m in [
        "eden_reconcile_run_timestamp_seconds",
        "eden_reconcile_run_exit_code",
        "eden_reconcile_last_success_timestamp_seconds",
        "eden_reconcile_consistent",
        "eden_reconcile_differences",
        "eden_reconcile_replication_lag_seconds",
        "eden_reconcile_conflicts_unresolved",
    ] {
        assert!(used.contains(m), "{m} is used nowhere in deploy/");
    }
}

#[test]
fn the_readme_lists_every_metric() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    for m in METRICS {
        assert!(
            readme.contains(&format!("`{}`", m.name)),
            "README.md does not list {}",
            m.name
        );
    }
}

#[test]
fn cronjob_runs_the_nightly_job_from_the_configmap_and_secret() {
    let k8s = deploy().join("kubernetes");
    let jobs = yaml_docs(&k8s.join("cronjob.yaml"));
    let cm = &yaml_docs(&k8s.join("configmap.yaml"))[0];
    let secret = &yaml_docs(&k8s.join("secret.yaml"))[0];
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(secret["kind"], "Secret");
    let nightly = jobs
        .iter()
        .find(|d| d["metadata"]["name"] == "eden-reconcile-nightly")
        .expect("the nightly CronJob");
    for job in &jobs {
        assert_eq!(job["kind"], "CronJob");
        let spec = &job["spec"];
        assert_eq!(
            spec["concurrencyPolicy"], "Forbid",
            "{}",
            job["metadata"]["name"]
        );
        let pod = &spec["jobTemplate"]["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        let script = c["args"][0].as_str().unwrap();
        assert!(script.contains("--metrics-push"), "{script}");
        // Config from the ConfigMap, mounted where EDEN_RECONCILE_CONFIG points.
        let vol = &pod["volumes"][0];
        assert_eq!(vol["configMap"]["name"], cm["metadata"]["name"]);
        let mount = c["volumeMounts"][0]["mountPath"].as_str().unwrap();
        let env = c["env"].as_array().unwrap();
        let config_path = env
            .iter()
            .find(|e| e["name"] == "EDEN_RECONCILE_CONFIG")
            .unwrap()["value"]
            .as_str()
            .unwrap();
        let file = config_path
            .strip_prefix(&format!("{mount}/"))
            .expect("config under the mount");
        let yaml = cm["data"][file]
            .as_str()
            .expect("the config in the ConfigMap");
        let cfg = Config::from_yaml_str(yaml, file).unwrap();
        assert_eq!(cfg.regions.len(), 2);
        assert!(cfg.node_group("eden_vault").is_some());
        // Passwords only from the Secret, by keys it has.
        for e in env {
            if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                assert_eq!(r["name"], secret["metadata"]["name"]);
                let key = r["key"].as_str().unwrap();
                assert!(
                    secret["stringData"][key].is_string(),
                    "secret key {key} missing"
                );
            }
        }
        assert!(
            env.iter()
                .any(|e| e["name"] == "PGPASSWORD" && e["valueFrom"]["secretKeyRef"].is_object())
        );
        assert!(!yaml.contains("password"));
    }
    let script =
        nightly["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][0]
            .as_str()
            .unwrap();
    for step in [
        "eden-reconcile status",
        "eden-reconcile check",
        "eden-reconcile fix",
    ] {
        assert!(script.contains(step), "{step} missing from the nightly job");
    }
}

#[test]
fn sharded_check_is_an_indexed_job_with_a_merger() {
    let docs = yaml_docs(&deploy().join("kubernetes").join("sharded-check.yaml"));
    let pvc = docs
        .iter()
        .find(|d| d["kind"] == "PersistentVolumeClaim")
        .expect("a volume for the reports");
    assert_eq!(pvc["spec"]["accessModes"][0], "ReadWriteMany");
    let job = docs.iter().find(|d| d["kind"] == "Job").expect("the Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let c = &spec["template"]["spec"]["containers"][0];
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_string)
    };
    let shards: u64 = env("SHARDS").unwrap().parse().unwrap();
    assert_eq!(
        spec["completions"].as_u64(),
        Some(shards + 1),
        "shards + the merger"
    );
    assert_eq!(spec["parallelism"].as_u64(), Some(shards + 1));
    let script = c["args"][0].as_str().unwrap();
    for needle in [
        "--shard \"$i/$SHARDS\"",
        "JOB_COMPLETION_INDEX",
        "merge-reports --format json",
        "--incremental",
        "mv \"$run/.shard-$i.json.tmp\"",
    ] {
        assert!(
            script.contains(needle),
            "the script lacks {needle}:\n{script}"
        );
    }
    let claim = &spec["template"]["spec"]["volumes"][1]["persistentVolumeClaim"]["claimName"];
    assert_eq!(claim, &pvc["metadata"]["name"]);
}
