//! Redis caches: check and fix across regions, against real `redis-server`s started by the
//! tests (standalone and a 3-master Redis Cluster).

use std::collections::BTreeMap;
use std::time::Duration;

use eden_consistency::redis::digest::{self, DigestCtx};
use eden_consistency::redis::{
    CacheCheckOptions, CacheChecker, CacheFixOptions, CacheReport, RedisConfig, RedisConnectOptions,
};
use eden_test_util::redis::{TestRedis, TestRedisCluster};
use redis::Commands;

fn con(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

async fn checker(urls: &[String]) -> CacheChecker {
    let mut cfg = RedisConfig::default();
    for (i, u) in urls.iter().enumerate() {
        cfg.apply_region_flag(&format!("r{i}"), u).unwrap();
    }
    CacheChecker::connect(&cfg, "eden_cache", &RedisConnectOptions::default())
        .await
        .unwrap()
}

fn fast() -> CacheCheckOptions {
    CacheCheckOptions {
        round_pause: Duration::from_millis(30),
        rounds: 2,
        ..CacheCheckOptions::default()
    }
}

/// key → (missing_in, changed, in_flight)
fn diffs(r: &CacheReport) -> BTreeMap<String, (Vec<String>, Vec<String>, bool)> {
    r.differences
        .iter()
        .map(|d| {
            (
                d.key.clone(),
                (d.missing_in.clone(), d.changed.clone(), d.in_flight),
            )
        })
        .collect()
}

const TYPES: &[&str] = &["string", "hash", "list", "set", "zset", "stream"];

/// Writes a value of type `t`; `v` picks the variant (different content).
fn put(c: &mut redis::Connection, t: &str, key: &str, v: u32) {
    let _: () = c.del(key).unwrap();
    let x = format!("v{v}");
    let _: () = match t {
        "string" => c.set(key, &x).unwrap(),
        "hash" => c
            .hset_multiple(key, &[("f1", "a"), ("f2", x.as_str())])
            .unwrap(),
        "list" => c.rpush(key, &["a", x.as_str()]).unwrap(),
        "set" => c.sadd(key, &["a", x.as_str()]).unwrap(),
        "zset" => c
            .zadd_multiple(key, &[(1.0, "a"), (2.0, x.as_str())])
            .unwrap(),
        "stream" => redis::cmd("XADD")
            .arg(key)
            .arg("1-1")
            .arg("f")
            .arg(&x)
            .query(c)
            .unwrap(),
        _ => unreachable!(),
    };
}

fn other_type(t: &str) -> &'static str {
    if t == "string" { "hash" } else { "string" }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_and_every_kind_of_difference() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    let (mut ca, mut cb) = (con(&a.url()), con(&b.url()));
    let mut expected = BTreeMap::new();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for t in TYPES {
        // identical, with and without expiry
        put(&mut ca, t, &format!("{t}:same"), 0);
        put(&mut cb, t, &format!("{t}:same"), 0);
        put(&mut ca, t, &format!("{t}:same_ttl"), 0);
        put(&mut cb, t, &format!("{t}:same_ttl"), 0);
        let at = 4_102_444_800_000i64;
        let _: () = ca.pexpire_at(format!("{t}:same_ttl"), at).unwrap();
        let _: () = cb.pexpire_at(format!("{t}:same_ttl"), at + 1000).unwrap();
        // only in a / only in b
        put(&mut ca, t, &format!("{t}:only_a"), 0);
        expected.insert(format!("{t}:only_a"), (s(&["r1"]), s(&[]), false));
        put(&mut cb, t, &format!("{t}:only_b"), 0);
        expected.insert(format!("{t}:only_b"), (s(&["r0"]), s(&[]), false));
        // content
        put(&mut ca, t, &format!("{t}:value"), 0);
        put(&mut cb, t, &format!("{t}:value"), 1);
        expected.insert(format!("{t}:value"), (s(&[]), s(&["value"]), false));
        // expiry vs none
        put(&mut ca, t, &format!("{t}:ttl_none"), 0);
        put(&mut cb, t, &format!("{t}:ttl_none"), 0);
        let _: () = ca.expire(format!("{t}:ttl_none"), 1000).unwrap();
        expected.insert(format!("{t}:ttl_none"), (s(&[]), s(&["ttl"]), false));
        // expiries 600 s apart
        put(&mut ca, t, &format!("{t}:ttl_far"), 0);
        put(&mut cb, t, &format!("{t}:ttl_far"), 0);
        let _: () = ca.pexpire_at(format!("{t}:ttl_far"), at).unwrap();
        let _: () = cb.pexpire_at(format!("{t}:ttl_far"), at + 600_000).unwrap();
        expected.insert(format!("{t}:ttl_far"), (s(&[]), s(&["ttl"]), false));
        // type
        put(&mut ca, t, &format!("{t}:type"), 0);
        put(&mut cb, other_type(t), &format!("{t}:type"), 0);
        expected.insert(format!("{t}:type"), (s(&[]), s(&["type"]), false));
        // type and expiry
        put(&mut ca, t, &format!("{t}:type_ttl"), 0);
        put(&mut cb, other_type(t), &format!("{t}:type_ttl"), 0);
        let _: () = cb.expire(format!("{t}:type_ttl"), 1000).unwrap();
        expected.insert(
            format!("{t}:type_ttl"),
            (s(&[]), s(&["type", "ttl"]), false),
        );
        // value and expiry
        put(&mut ca, t, &format!("{t}:value_ttl"), 0);
        put(&mut cb, t, &format!("{t}:value_ttl"), 2);
        let _: () = cb.expire(format!("{t}:value_ttl"), 1000).unwrap();
        expected.insert(
            format!("{t}:value_ttl"),
            (s(&[]), s(&["value", "ttl"]), false),
        );
    }
    // Finer content differences: list order, score only, field value only, stream id.
    let _: () = ca.rpush("list:order", &["a", "b"]).unwrap();
    let _: () = cb.rpush("list:order", &["b", "a"]).unwrap();
    let _: () = ca.zadd("zset:score", "m", 1.0).unwrap();
    let _: () = cb.zadd("zset:score", "m", 1.000_000_000_1).unwrap();
    let _: () = ca.hset("hash:swap", "a", "b").unwrap();
    let _: () = cb.hset("hash:swap", "b", "a").unwrap();
    let _: () = redis::cmd("XADD")
        .arg("stream:id")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .query(&mut ca)
        .unwrap();
    let _: () = redis::cmd("XADD")
        .arg("stream:id")
        .arg("1-2")
        .arg("f")
        .arg("v")
        .query(&mut cb)
        .unwrap();
    for k in ["list:order", "zset:score", "hash:swap", "stream:id"] {
        expected.insert(k.to_string(), (s(&[]), s(&["value"]), false));
    }
    let chk = checker(&[a.url(), b.url()]).await;
    for client_side in [false, true] {
        let opts = CacheCheckOptions {
            client_side_only: client_side,
            ..fast()
        };
        let r = chk.check(&opts).await.unwrap();
        assert_eq!(diffs(&r), expected, "client_side_only={client_side}");
        assert_eq!(r.difference_count as usize, expected.len());
        assert!(!r.consistent);
        assert_eq!(r.in_flight_count, 0);
    }
    // --match narrows the keys compared (and counted).
    let r = chk
        .check(&CacheCheckOptions {
            matches: vec!["zset:*".into()],
            ..fast()
        })
        .await
        .unwrap();
    assert!(r.differences.iter().all(|d| d.key.starts_with("zset:")));
    assert_eq!(r.key_counts.get("r0"), Some(&10));
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_and_differently_encoded_content_is_consistent() {
    let a = TestRedis::start();
    let b = TestRedis::start_with(&[
        "--hash-max-listpack-entries",
        "0",
        "--zset-max-listpack-entries",
        "0",
        "--set-max-intset-entries",
        "0",
        "--list-max-listpack-size",
        "1",
    ]);
    let (mut ca, mut cb) = (con(&a.url()), con(&b.url()));
    for i in 0..50 {
        let fields: Vec<(String, String)> = (0..20)
            .map(|j| (format!("f{j}"), format!("v{i}-{j}")))
            .collect();
        let mut rev = fields.clone();
        rev.reverse();
        let _: () = ca.hset_multiple(format!("h{i}"), &fields).unwrap();
        let _: () = cb.hset_multiple(format!("h{i}"), &rev).unwrap();
        let members: Vec<i64> = (0..20).map(|j| j * 7 + i).collect();
        let mut rm = members.clone();
        rm.reverse();
        let _: () = ca.sadd(format!("s{i}"), &members).unwrap();
        let _: () = cb.sadd(format!("s{i}"), &rm).unwrap();
        let z: Vec<(f64, String)> = (0..20).map(|j| (j as f64 / 3.0, format!("m{j}"))).collect();
        let mut rz = z.clone();
        rz.reverse();
        let _: () = ca.zadd_multiple(format!("z{i}"), &z).unwrap();
        let _: () = cb.zadd_multiple(format!("z{i}"), &rz).unwrap();
        let _: () = ca.rpush(format!("l{i}"), &members).unwrap();
        let _: () = cb.rpush(format!("l{i}"), &members).unwrap();
        let _: () = ca.set(format!("n{i}"), i).unwrap(); // int encoding
        let _: () = cb.set(format!("n{i}"), i.to_string()).unwrap();
    }
    let enc = |c: &mut redis::Connection, k: &str| -> String {
        redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(k)
            .query(c)
            .unwrap()
    };
    assert_eq!(enc(&mut ca, "h0"), "listpack");
    assert_eq!(enc(&mut cb, "h0"), "hashtable");
    assert_eq!(enc(&mut ca, "s0"), "intset");
    assert_eq!(enc(&mut cb, "s0"), "hashtable");
    assert_eq!(enc(&mut cb, "z0"), "skiplist");
    let chk = checker(&[a.url(), b.url()]).await;
    for client_side in [false, true] {
        let r = chk
            .check(&CacheCheckOptions {
                client_side_only: client_side,
                ..fast()
            })
            .await
            .unwrap();
        assert!(r.consistent, "{:?}", diffs(&r));
        assert_eq!(r.difference_count, 0);
        assert_eq!(r.key_counts.get("r1"), Some(&250));
        assert_eq!(r.rounds, 0, "no differences, no re-reads");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn server_and_client_digests_are_the_same_function() {
    let a = TestRedis::start();
    let mut c = con(&a.url());
    for t in TYPES {
        put(&mut c, t, &format!("k:{t}"), 3);
    }
    let _: () = c.set("k:bin", b"\x00\xff\r\n".as_slice()).unwrap();
    let chk = checker(&[a.url()]).await;
    let region = &chk.regions[0];
    let mut conn = region.nodes[0].conn.clone();
    let server = DigestCtx {
        big_elements: 1024,
        big_bytes: 1 << 20,
        has_pexpiretime: true,
        server_side: true,
    };
    let client = DigestCtx {
        server_side: false,
        ..server.clone()
    };
    let script = digest::digest_script(true);
    let mut keys: Vec<String> = TYPES.iter().map(|t| format!("k:{t}")).collect();
    keys.push("k:bin".into());
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let s = digest::read_keys(&mut conn, &server, &script, &refs)
        .await
        .unwrap();
    let cl = digest::read_keys(&mut conn, &client, &script, &refs)
        .await
        .unwrap();
    assert_eq!(s, cl);
    assert!(s.iter().all(Option::is_some));
}

#[tokio::test(flavor = "multi_thread")]
async fn non_utf8_keys_are_escaped_and_given_in_base64() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    let (mut ca, mut cb) = (con(&a.url()), con(&b.url()));
    let only: &[u8] = b"bin:\xff\xfe\x00k";
    let changed: &[u8] = b"bin:\x80";
    let _: () = ca.set(only, "x").unwrap();
    let _: () = ca.set(changed, "1").unwrap();
    let _: () = cb.set(changed, "2").unwrap();
    let _: () = ca.set("caf\u{e9}", "same").unwrap();
    let _: () = cb.set("caf\u{e9}", "same").unwrap();
    let r = checker(&[a.url(), b.url()])
        .await
        .check(&fast())
        .await
        .unwrap();
    let j = serde_json::to_value(&r).unwrap();
    let d = j["differences"].as_array().unwrap();
    assert_eq!(d.len(), 2);
    assert_eq!(d[0]["key"], "bin:\\x80");
    assert_eq!(d[0]["key_base64"], "YmluOoA=");
    assert_eq!(d[1]["key"], "bin:\\xff\\xfe\\x00k");
    assert_eq!(d[1]["missing_in"], serde_json::json!(["r1"]));
    assert!(d[1]["key_base64"].is_string());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200k_field_hash_differing_in_one_field() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    for s in [&a, &b] {
        let mut c = con(&s.url());
        for chunk in 0..200 {
            let fields: Vec<(String, String)> = (0..1000)
                .map(|j| {
                    let i = chunk * 1000 + j;
                    (format!("field:{i}"), format!("value-{i}"))
                })
                .collect();
            let _: () = c.hset_multiple("big", &fields).unwrap();
        }
        let _: () = c.set("small", "x").unwrap();
    }
    let _: () = con(&b.url())
        .hset("big", "field:123456", "changed")
        .unwrap();
    let r = checker(&[a.url(), b.url()])
        .await
        .check(&fast())
        .await
        .unwrap();
    let d = diffs(&r);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d["big"].1, vec!["value".to_string()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_written_during_the_check_is_in_flight() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    let (mut ca, mut cb) = (con(&a.url()), con(&b.url()));
    let _: () = ca.set("cold", "1").unwrap();
    let _: () = cb.set("cold", "2").unwrap();
    let _: () = ca.set("hot", 0).unwrap();
    let _: () = cb.set("hot", 0).unwrap();
    let url = a.url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut c = con(&url);
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let _: () = c.incr("hot", 1).unwrap();
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    let r = checker(&[a.url(), b.url()])
        .await
        .check(&CacheCheckOptions {
            rounds: 3,
            round_pause: Duration::from_millis(150),
            ..CacheCheckOptions::default()
        })
        .await
        .unwrap();
    let d = diffs(&r);
    assert!(!d["cold"].2);
    assert!(d["hot"].2);
    assert_eq!((r.difference_count, r.in_flight_count), (1, 1));
    // fix leaves the key in flight alone and says so.
    let dir = tempfile::tempdir().unwrap();
    let fixed = checker(&[a.url(), b.url()])
        .await
        .fix(&CacheFixOptions {
            check: CacheCheckOptions {
                rounds: 3,
                round_pause: Duration::from_millis(150),
                ..CacheCheckOptions::default()
            },
            archive: Some(dir.path().join("a.jsonl")),
            ..Default::default()
        })
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(!fixed.consistent);
    assert_eq!(fixed.exit_code(), 1);
    assert_eq!(fixed.tables[0].in_flight, 1);
    assert!(fixed.tables[0].actions.iter().all(|a| a.key == "cold"));
    assert!(ca.exists::<_, bool>("hot").unwrap());
    assert!(!ca.exists::<_, bool>("cold").unwrap());
    let _: () = cb.set("cold", "2").unwrap();
    let _: () = ca.set("cold", "1").unwrap();
    // A difference that vanishes during the rounds is not reported.
    let _: () = cb.set("cold", "1").unwrap();
    let _: () = ca.set("late", "1").unwrap();
    let url = b.url();
    let healer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let _: () = con(&url).set("late", "1").unwrap();
    });
    let r = checker(&[a.url(), b.url()])
        .await
        .check(&CacheCheckOptions {
            rounds: 2,
            round_pause: Duration::from_millis(200),
            ..CacheCheckOptions::default()
        })
        .await
        .unwrap();
    healer.join().unwrap();
    assert!(
        r.differences.iter().all(|d| d.key != "late"),
        "{:?}",
        diffs(&r)
    );
}

fn snapshot(s: &TestRedis) -> String {
    s.cli(&["debug", "digest"])
}

#[tokio::test(flavor = "multi_thread")]
async fn fix_invalidates_by_default_and_archives_restorable_payloads() {
    let (a, b) = (TestRedis::start(), TestRedis::start());
    let (mut ca, mut cb) = (con(&a.url()), con(&b.url()));
    for t in TYPES {
        put(&mut ca, t, &format!("{t}:value"), 0);
        put(&mut cb, t, &format!("{t}:value"), 1);
        put(&mut ca, t, &format!("{t}:same"), 0);
        put(&mut cb, t, &format!("{t}:same"), 0);
    }
    let _: () = ca.set_ex("session:1", "x", 1000).unwrap();
    let _: () = ca.set(b"bin:\xff".as_slice(), "y").unwrap();
    let chk = checker(&[a.url(), b.url()]).await;
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive.jsonl");
    // --dry-run writes nothing anywhere.
    let (da, db) = (snapshot(&a), snapshot(&b));
    let plan = chk
        .fix(&CacheFixOptions {
            check: fast(),
            dry_run: true,
            archive: Some(archive.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((snapshot(&a), snapshot(&b)), (da, db));
    assert!(!archive.exists());
    assert!(!plan.consistent);
    assert_eq!(plan.tables[0].actions.len(), 14);
    assert!(plan.tables[0].actions.iter().all(|a| a.status == "planned"));
    // Before images, to compare with what the archive restores.
    let mut before = BTreeMap::new();
    let chk_regions = &chk.regions;
    let ctx = DigestCtx {
        big_elements: 1024,
        big_bytes: 1 << 20,
        has_pexpiretime: true,
        server_side: false,
    };
    for (ri, r) in chk_regions.iter().enumerate() {
        let mut conn = r.nodes[0].conn.clone();
        for t in TYPES {
            let k = format!("{t}:value");
            let rec = digest::client_digest(&mut conn, k.as_bytes(), &ctx)
                .await
                .unwrap();
            before.insert((ri, k), rec.unwrap().digest);
        }
    }
    let fixed = chk
        .fix(&CacheFixOptions {
            check: fast(),
            archive: Some(archive.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(fixed.consistent);
    let t = &fixed.tables[0];
    assert_eq!((t.applied, t.unresolved), (14, 0));
    assert_eq!(t.resolution, "invalidate");
    assert!(
        t.actions
            .iter()
            .all(|a| a.action == "delete" && a.winner_region.is_none())
    );
    for t in TYPES {
        let k = format!("{t}:value");
        assert!(!ca.exists::<_, bool>(&k).unwrap() && !cb.exists::<_, bool>(&k).unwrap());
        assert!(ca.exists::<_, bool>(format!("{t}:same")).unwrap());
    }
    // Every archive line restores the key as it was.
    let text = std::fs::read_to_string(&archive).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 14);
    use base64::Engine;
    for (n, l) in lines.iter().enumerate() {
        assert_eq!(l["run_id"], fixed.run_id.as_str());
        let ri = if l["region"] == "r0" { 0 } else { 1 };
        let key = match l.get("key_base64") {
            Some(b) => base64::engine::general_purpose::STANDARD
                .decode(b.as_str().unwrap())
                .unwrap(),
            None => l["key"].as_str().unwrap().as_bytes().to_vec(),
        };
        let payload = base64::engine::general_purpose::STANDARD
            .decode(l["dump_base64"].as_str().unwrap())
            .unwrap();
        let pttl = l["pttl"].as_i64().unwrap();
        let target = format!("restored:{n}");
        let c = if ri == 0 { &mut ca } else { &mut cb };
        let _: () = redis::cmd("RESTORE")
            .arg(&target)
            .arg(pttl.max(0))
            .arg(payload)
            .query(c)
            .unwrap();
        if key == b"session:1" {
            assert!(pttl > 990_000 && pttl <= 1_000_000);
        }
        let k = String::from_utf8_lossy(&key).to_string();
        if let Some(d) = before.get(&(ri, k)) {
            let mut conn = chk_regions[ri].nodes[0].conn.clone();
            let rec = digest::client_digest(&mut conn, target.as_bytes(), &ctx)
                .await
                .unwrap();
            assert_eq!(rec.unwrap().digest, *d);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fix_from_a_region_copies_value_and_expiry() {
    let (a, b, c) = (TestRedis::start(), TestRedis::start(), TestRedis::start());
    let (mut ca, mut cb, mut cc) = (con(&a.url()), con(&b.url()), con(&c.url()));
    for t in TYPES {
        put(&mut ca, t, &format!("{t}:v"), 0);
        put(&mut cb, t, &format!("{t}:v"), 1);
        put(&mut cc, other_type(t), &format!("{t}:v"), 0);
    }
    let _: () = ca.set("only:a", "1").unwrap();
    let _: () = cb.set("only:b", "1").unwrap();
    let _: () = ca.set_ex("ttl", "1", 3000).unwrap();
    let _: () = cb.set("ttl", "1").unwrap();
    let _: () = cc.set("ttl", "1").unwrap();
    let chk = checker(&[a.url(), b.url(), c.url()]).await;
    let dir = tempfile::tempdir().unwrap();
    let fixed = chk
        .fix(&CacheFixOptions {
            check: fast(),
            from: Some("r0".into()),
            archive: Some(dir.path().join("a.jsonl")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(fixed.consistent, "{:?}", fixed.tables[0].actions);
    let acts: BTreeMap<(String, String), &str> = fixed.tables[0]
        .actions
        .iter()
        .map(|a| ((a.key.clone(), a.region.clone()), a.action))
        .collect();
    assert_eq!(acts[&("only:a".to_string(), "r1".to_string())], "insert");
    assert_eq!(acts[&("only:b".to_string(), "r1".to_string())], "delete");
    assert_eq!(acts[&("hash:v".to_string(), "r2".to_string())], "update");
    assert_eq!(fixed.tables[0].resolution, "from:r0");
    assert!(
        fixed.tables[0]
            .actions
            .iter()
            .all(|a| a.winner_region.as_deref() == Some("r0"))
    );
    let pa: i64 = redis::cmd("PEXPIRETIME").arg("ttl").query(&mut ca).unwrap();
    let pb: i64 = redis::cmd("PEXPIRETIME").arg("ttl").query(&mut cb).unwrap();
    assert_eq!(pa, pb);
    let r = chk.check(&fast()).await.unwrap();
    assert!(r.consistent && r.differences.is_empty());
    assert_eq!(r.key_counts.get("r2"), Some(&8));
}

/// Writes through the master that owns the key (following MOVED).
fn cluster_set(conns: &mut [redis::Connection], ports: &[u16], cmd: &redis::Cmd) {
    let mut i = 0;
    loop {
        match cmd.query::<()>(&mut conns[i]) {
            Ok(()) => return,
            Err(e) if e.to_string().to_uppercase().contains("MOVED") => {
                let text = e.to_string();
                let port: u16 = text
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.trim().parse().ok())
                    .unwrap_or_else(|| panic!("cannot parse {text}"));
                i = ports.iter().position(|p| *p == port).unwrap();
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_region_is_read_through_every_master() {
    let cluster = TestRedisCluster::start(3);
    let single = TestRedis::start();
    let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port).collect();
    let mut conns: Vec<redis::Connection> = cluster.nodes.iter().map(|n| con(&n.url())).collect();
    let mut cs = con(&single.url());
    for i in 0..300 {
        let k = format!("session:{i}");
        let mut cmd = redis::cmd("SET");
        cmd.arg(&k).arg(format!("v{i}"));
        cluster_set(&mut conns, &ports, &cmd);
        let _: () = cmd.query(&mut cs).unwrap();
        let k = format!("tenant:{i}");
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&k).arg("plan").arg("pro").arg("seats").arg(i);
        cluster_set(&mut conns, &ports, &cmd);
        let _: () = cmd.query(&mut cs).unwrap();
    }
    let per_node: Vec<u64> = conns
        .iter_mut()
        .map(|c| redis::cmd("DBSIZE").query(c).unwrap())
        .collect();
    assert!(per_node.iter().all(|n| *n > 0), "{per_node:?}");
    let chk = checker(&[cluster.url(), single.url()]).await;
    assert_eq!(chk.regions[0].nodes.len(), 3);
    let r = chk.check(&fast()).await.unwrap();
    assert!(r.consistent, "{:?}", diffs(&r));
    assert_eq!(r.key_counts.get("r0"), Some(&600));
    // Drift on both sides.
    let _: () = cs.del("session:7").unwrap();
    let _: () = cs.set("session:8", "other").unwrap();
    let mut cmd = redis::cmd("SET");
    cmd.arg("only:cluster").arg("1");
    cluster_set(&mut conns, &ports, &cmd);
    let mut cmd = redis::cmd("EXPIRE");
    cmd.arg("tenant:9").arg(1000);
    cluster_set(&mut conns, &ports, &cmd);
    let r = chk.check(&fast()).await.unwrap();
    let d = diffs(&r);
    assert_eq!(
        d.keys().cloned().collect::<Vec<_>>(),
        vec!["only:cluster", "session:7", "session:8", "tenant:9"]
    );
    assert_eq!(d["tenant:9"].1, vec!["ttl".to_string()]);
    let dir = tempfile::tempdir().unwrap();
    let fixed = chk
        .fix(&CacheFixOptions {
            check: fast(),
            from: Some("r1".into()),
            archive: Some(dir.path().join("a.jsonl")),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(fixed.consistent, "{:?}", fixed.tables[0].actions);
    assert!(chk.check(&fast()).await.unwrap().consistent);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// One region's version of a key: (type, variant, expiry slot); None = absent.
    type Version = Option<(u8, u8, u8)>;

    fn version() -> impl Strategy<Value = Version> {
        prop_oneof![
            1 => Just(None),
            4 => (0u8..3, 0u8..2, 0u8..3).prop_map(Some),
        ]
    }

    fn write(c: &mut redis::Connection, key: &str, v: (u8, u8, u8)) {
        let t = ["string", "hash", "zset"][v.0 as usize];
        put(c, t, key, v.1 as u32);
        let at = 4_102_444_800_000i64;
        match v.2 {
            0 => {}
            1 => {
                let _: () = c.pexpire_at(key, at).unwrap();
            }
            _ => {
                let _: () = c.pexpire_at(key, at + 3_600_000).unwrap();
            }
        }
    }

    /// The oracle: what a check must report for one key.
    fn expect(vs: &[Version], names: &[String]) -> Option<(Vec<String>, Vec<String>)> {
        let missing: Vec<String> = vs
            .iter()
            .zip(names)
            .filter(|(v, _)| v.is_none())
            .map(|(_, n)| n.clone())
            .collect();
        let present: Vec<(u8, u8, u8)> = vs.iter().flatten().copied().collect();
        let mut changed = Vec::new();
        if let Some(f) = present.first() {
            if present.iter().any(|p| p.0 != f.0) {
                changed.push("type".to_string());
            } else if present.iter().any(|p| p.1 != f.1) {
                changed.push("value".to_string());
            }
            if present.iter().any(|p| p.2 != f.2) {
                changed.push("ttl".to_string());
            }
        }
        (!missing.is_empty() || !changed.is_empty()).then_some((missing, changed))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
        #[test]
        fn random_keyspaces_give_exactly_the_oracles_differences(
            n in 2usize..=3,
            keys in proptest::collection::vec(proptest::collection::vec(version(), 3), 1..25),
            from in proptest::option::of(0usize..3),
        ) {
            thread_local! {
                static SERVERS: Vec<TestRedis> = (0..3).map(|_| TestRedis::start()).collect();
            }
            let urls: Vec<String> = SERVERS.with(|s| s[..n].iter().map(|x| x.url()).collect());
            let rt = tokio::runtime::Runtime::new().unwrap();
            let mut conns: Vec<redis::Connection> = urls.iter().map(|u| con(u)).collect();
            for c in &mut conns {
                let _: () = redis::cmd("FLUSHALL").query(c).unwrap();
            }
            let names: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
            let mut oracle = BTreeMap::new();
            for (i, vs) in keys.iter().enumerate() {
                let key = format!("k{i:02}");
                for (r, v) in vs[..n].iter().enumerate() {
                    if let Some(v) = v {
                        write(&mut conns[r], &key, *v);
                    }
                }
                if let Some(e) = expect(&vs[..n], &names) {
                    if vs[..n].iter().any(Option::is_some) {
                        oracle.insert(key, e);
                    }
                }
            }
            let chk = rt.block_on(checker(&urls));
            let opts = CacheCheckOptions { rounds: 1, round_pause: Duration::from_millis(5), ..CacheCheckOptions::default() };
            let r = rt.block_on(chk.check(&opts)).unwrap();
            let got: BTreeMap<String, (Vec<String>, Vec<String>)> = r.differences.iter()
                .map(|d| (d.key.clone(), (d.missing_in.clone(), d.changed.clone()))).collect();
            prop_assert_eq!(&got, &oracle);
            let dir = tempfile::tempdir().unwrap();
            let fixed = rt.block_on(chk.fix(&CacheFixOptions {
                check: opts.clone(),
                from: from.filter(|f| *f < n).map(|f| format!("r{f}")),
                archive: Some(dir.path().join("a.jsonl")),
                ..Default::default()
            })).unwrap();
            prop_assert!(fixed.consistent);
            let after = rt.block_on(chk.check(&opts)).unwrap();
            prop_assert!(after.consistent && after.differences.is_empty());
        }
    }
}
