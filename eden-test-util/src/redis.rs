//! Throwaway Redis servers for tests: a standalone server or a Redis Cluster of N masters,
//! each `redis-server` started by the test on free ports of 127.0.0.1 with its files in a
//! temporary folder. Dropping one stops it; servers left behind by a crashed test run
//! (their owner process is gone) are stopped and removed by the next start.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// One `redis-server` on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct TestRedis {
    /// Its TCP port.
    pub port: u16,
    /// Its folder (log, pid file, cluster config); deleted on drop.
    pub dir: TempDir,
    child: Child,
}

fn port_free(p: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
}

/// A port that is free together with port + 10000 (Redis Cluster's bus port).
fn free_port_pair() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(37) % 9000;
    NEXT.compare_exchange(0, 21000 + seed, Ordering::SeqCst, Ordering::SeqCst)
        .ok();
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        let p = if p >= 31000 {
            NEXT.store(21000, Ordering::SeqCst);
            21000
        } else {
            p
        };
        if port_free(p) && port_free(p + 10000) {
            return p;
        }
    }
}

/// Stops servers whose test process died and removes their folders.
fn reap_orphans() {
    for path in crate::orphaned_dirs("eden-redis-") {
        if let Ok(pid) = std::fs::read_to_string(path.join("redis.pid")) {
            let pid = pid.trim();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("redis-server") {
                let _ = Command::new("kill").arg("-9").arg(pid).status();
            }
        }
        let _ = std::fs::remove_dir_all(&path);
    }
}

impl TestRedis {
    /// Starts a standalone server.
    pub fn start() -> TestRedis {
        TestRedis::start_with(&[])
    }

    /// Starts a server with extra `--name value` settings, e.g.
    /// `&["--hash-max-listpack-entries", "0"]`.
    pub fn start_with(extra: &[&str]) -> TestRedis {
        reap_orphans();
        for attempt in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("eden-redis-")
                .tempdir()
                .expect("eden-test-util: temp dir");
            std::fs::write(dir.path().join("owner.pid"), std::process::id().to_string())
                .expect("owner.pid");
            let port = free_port_pair();
            let mut cmd = Command::new("redis-server");
            cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path())
                .arg("--pidfile")
                .arg(dir.path().join("redis.pid"))
                .arg("--logfile")
                .arg(dir.path().join("redis.log"))
                .args(["--enable-debug-command", "local"])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = cmd
                .spawn()
                .expect("eden-test-util: cannot run redis-server");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let ok = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "ping"])
                    .stderr(Stdio::null())
                    .output()
                    .map(|o| {
                        let t = String::from_utf8_lossy(&o.stdout);
                        t.contains("PONG") || t.contains("NOAUTH")
                    })
                    .unwrap_or(false);
                if ok {
                    return TestRedis { port, dir, child };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            if attempt == 4 {
                let log = std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default();
                panic!("eden-test-util: redis-server did not start:\n{log}");
            }
        }
        unreachable!()
    }

    /// Starts a server that also listens with TLS, on the returned port: a throwaway CA and a
    /// certificate for `localhost`/`127.0.0.1` are made with `openssl` in the server's folder
    /// (`ca.crt` there is the CA to trust).
    pub fn start_tls() -> (TestRedis, u16) {
        let certs = tempfile::Builder::new()
            .prefix("eden-redis-certs-")
            .tempdir()
            .expect("temp dir");
        let d = certs.path();
        let sh = |args: &[&str]| {
            let ok = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "eden-test-util: openssl {args:?} failed");
        };
        sh(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=eden-test-ca",
        ]);
        sh(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("ext.cnf");
        sh(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let tls_port = free_port_pair();
        let p = |f: &str| d.join(f).display().to_string();
        let (cert, key, ca) = (p("server.crt"), p("server.key"), p("ca.crt"));
        let tls_port_s = tls_port.to_string();
        let server = TestRedis::start_with(&[
            "--tls-port",
            &tls_port_s,
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
            "--tls-auth-clients",
            "no",
        ]);
        for f in ["ca.crt", "server.crt", "server.key"] {
            std::fs::copy(d.join(f), server.dir.path().join(f)).expect("copy cert");
        }
        (server, tls_port)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli -p <port> ARGS...` and returns its stdout (panics on failure).
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, false, args)
    }
}

fn redis_cli(port: u16, cluster: bool, args: &[&str]) -> String {
    let mut c = Command::new("redis-cli");
    if cluster {
        c.arg("-c");
    }
    let out = c
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("eden-test-util: cannot run redis-cli");
    assert!(
        out.status.success(),
        "redis-cli {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of N masters (no replicas), made with `redis-cli --cluster create`.
#[derive(Debug)]
pub struct TestRedisCluster {
    /// The masters.
    pub nodes: Vec<TestRedis>,
}

impl TestRedisCluster {
    /// Starts `masters` servers in cluster mode and joins them; waits for `cluster_state:ok`.
    pub fn start(masters: usize) -> TestRedisCluster {
        let nodes: Vec<TestRedis> = (0..masters)
            .map(|_| {
                TestRedis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut args: Vec<&str> = vec!["--cluster", "create"];
        args.extend(addrs.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        redis_cli(nodes[0].port, false, &args);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = nodes.iter().all(|n| {
                let info = n.cli(&["cluster", "info"]);
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{masters}"))
            });
            if ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "eden-test-util: the Redis cluster did not become ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        TestRedisCluster { nodes }
    }

    /// The URL of the first master (the tool discovers the others).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Runs `redis-cli -c` (following redirections) against the first master.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.nodes[0].port, true, args)
    }
}
