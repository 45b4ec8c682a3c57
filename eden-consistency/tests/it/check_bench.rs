//! A manual timing harness against the bench clusters of `/work/shared/bench` (ignored by
//! default): `EDEN_BENCH_MODE=pushdown cargo test --release -p eden-consistency --test
//! check_bench -- --ignored --nocapture`.
use eden_consistency::Config;
use eden_consistency::{CheckOptions, Checker};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_vault_secrets() {
    let mut cfg = Config::default();
    cfg.apply_region_flag("us-east-1=postgres://postgres@127.0.0.1:55432/eden_vault")
        .unwrap();
    cfg.apply_region_flag("us-west-2=postgres://postgres@127.0.0.1:55433/eden_vault")
        .unwrap();
    let mode = std::env::var("EDEN_BENCH_MODE")
        .unwrap_or_else(|_| "auto".into())
        .parse()
        .unwrap();
    let t0 = std::time::Instant::now();
    let c = Checker::connect(cfg, "eden_vault").await.unwrap();
    let chunks = std::env::var("EDEN_BENCH_CHUNKS")
        .ok()
        .and_then(|c| c.parse().ok());
    let opts = CheckOptions {
        tables: vec!["vault_secrets".into()],
        mode,
        chunks,
        ..Default::default()
    };
    let r = c.run(&opts).await.unwrap();
    let el = t0.elapsed();
    let t = &r.tables[0];
    println!("{:?}", t.message);
    println!(
        "mode={} elapsed={:.3}s diffs={} status={:?}",
        t.mode,
        el.as_secs_f64(),
        t.difference_count,
        t.status
    );
    println!("{}", serde_json::to_string(&t.stats).unwrap());
    if let Ok(exp) = std::fs::read_to_string("/tmp/eden-bench/expected_keys") {
        let mut want: Vec<i64> = exp.lines().filter_map(|l| l.trim().parse().ok()).collect();
        want.sort();
        let mut got: Vec<i64> = t
            .differences
            .iter()
            .map(|d| d.key["id"].as_i64().unwrap())
            .collect();
        got.sort();
        println!("exact key set: {}", want == got);
    }
}
