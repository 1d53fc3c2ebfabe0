//! `tern node` configuration: defaults < `--config` file < `TERN_*` variables < flags,
//! checked through `tern config print`; unknown keys are refused; and a real
//! `tern node --config FILE` runs with the file's addresses and admin listener.
//! Loopback only (ports 27300–27399); every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::bin::{Killed, TERN};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

fn write_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `tern config print` with `args` and `env`; the parsed TOML.
fn print(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let mut cmd = Command::new(TERN);
    cmd.args(["config", "print"]).args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TERN_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().parse().unwrap()
}

fn get<'a>(t: &'a toml::Table, path: &str) -> &'a toml::Value {
    let mut parts = path.split('.');
    let mut v = &t[parts.next().unwrap()];
    for p in parts {
        v = &v[p];
    }
    v
}

const FILE: &str = r#"
[node]
port = 27301
nodes = 2
io = "epoll"
[rpc]
retries = 5
[rpc.rate_limit]
per_second = 50
[store]
max_value_bytes = 1500
[store.topics]
max_per_topic = 64
[conn]
max_connections_per_ip = 16
keepalive_ms = 0
[udx]
max_unread_total = 67108864
"#;

#[test]
fn precedence_flags_over_env_over_file_over_defaults() {
    let file = write_file("precedence.toml", FILE);
    let file = file.to_str().unwrap();

    let defaults = print(&[], &[]);
    assert_eq!(get(&defaults, "node.port").as_integer(), Some(0));
    assert_eq!(get(&defaults, "rpc.retries").as_integer(), Some(3));

    let from_file = print(&["--config", file], &[]);
    assert_eq!(get(&from_file, "node.port").as_integer(), Some(27301));
    assert_eq!(get(&from_file, "node.nodes").as_integer(), Some(2));
    assert_eq!(get(&from_file, "node.io").as_str(), Some("epoll"));
    assert_eq!(get(&from_file, "rpc.retries").as_integer(), Some(5));
    assert_eq!(get(&from_file, "store.max_value_bytes").as_integer(), Some(1500));
    assert_eq!(get(&from_file, "store.topics.max_per_topic").as_integer(), Some(64));
    assert_eq!(get(&from_file, "rpc.rate_limit.per_second").as_integer(), Some(50));
    assert_eq!(get(&from_file, "rpc.rate_limit.burst").as_integer(), Some(2000));
    assert_eq!(get(&defaults, "conn.max_connections_per_ip").as_integer(), Some(256));
    assert_eq!(get(&defaults, "conn.keepalive_ms").as_integer(), Some(5000));
    assert_eq!(get(&from_file, "conn.max_connections_per_ip").as_integer(), Some(16));
    assert_eq!(get(&from_file, "conn.keepalive_ms").as_integer(), Some(0));
    // Keys the file leaves out keep their defaults.
    assert_eq!(get(&from_file, "store.topics.max_records").as_integer(), Some(65536));
    assert_eq!(get(&from_file, "conn.max_connections").as_integer(), Some(32768));
    assert_eq!(get(&from_file, "udx.max_unread_total").as_integer(), Some(64 << 20));
    assert_eq!(get(&from_file, "udx.recv_buffer").as_integer(), Some(4 << 20));

    let env = [("TERN_CONFIG", file), ("TERN_PORT", "27302"), ("TERN_IO", "uring")];
    let from_env = print(&[], &env);
    assert_eq!(get(&from_env, "node.port").as_integer(), Some(27302));
    assert_eq!(get(&from_env, "node.io").as_str(), Some("uring"));
    assert_eq!(get(&from_env, "node.nodes").as_integer(), Some(2), "file still applies");

    let from_flags = print(&["--port", "27303", "--io", "auto", "--nodes", "3"], &env);
    assert_eq!(get(&from_flags, "node.port").as_integer(), Some(27303));
    assert_eq!(get(&from_flags, "node.io").as_str(), Some("auto"));
    assert_eq!(get(&from_flags, "node.nodes").as_integer(), Some(3));
    assert_eq!(get(&from_flags, "rpc.retries").as_integer(), Some(5), "file still applies");

    // The printed configuration is itself a valid configuration file.
    let round = write_file("round.toml", &toml::to_string(&from_flags).unwrap());
    assert_eq!(print(&["--config", round.to_str().unwrap()], &[]), from_flags);
}

#[test]
fn cores_default_to_every_available_core() {
    // The child inherits this process's affinity mask and cgroup: same count.
    let all = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    assert_eq!(get(&print(&[], &[]), "node.cores").as_integer(), Some(all));
    assert_eq!(get(&print(&["--cores", "3"], &[]), "node.cores").as_integer(), Some(3));
    assert_eq!(get(&print(&[], &[("TERN_CORES", "1")]), "node.cores").as_integer(), Some(1));
    // The printed file says what the default is, right above the key.
    let out = Command::new(TERN).args(["config", "print"]).env_remove("TERN_CORES").output();
    let text = String::from_utf8(out.unwrap().stdout).unwrap();
    let note = format!("default: every available core ({all} here).\ncores = {all}\n");
    assert!(text.contains(&note), "{text}");
}

#[test]
fn unknown_keys_and_bad_values_are_refused() {
    for (name, text) in [
        ("typo.toml", "[node]\nprot = 1\n"),
        ("io.toml", "[node]\nio = \"kqueue\"\n"),
        ("section.toml", "[nope]\n"),
        // No request carrying a value this large can arrive (2 KiB receive buffers).
        ("value.toml", "[store]\nmax_value_bytes = 16384\n"),
        ("conn.toml", "[conn]\nmax_connectons = 1\n"),
        ("timeout.toml", "[conn]\nconnect_timeout_ms = 0\n"),
        ("buffer.toml", "[udx]\nrecv_buffer = 100\n"),
        ("mtu.toml", "[udx]\nmax_mtu = 9000\n"),
    ] {
        let file = write_file(name, text);
        let mut cmd = Command::new(TERN);
        cmd.args(["config", "print", "--config", file.to_str().unwrap()]);
        // The file alone decides: a TERN_IO in the test's environment would override
        // the bad `io` value and hide the refusal.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("TERN_")) {
            cmd.env_remove(k);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "{name} accepted");
    }
}

#[test]
fn node_runs_with_the_file() {
    let mut testnet = Command::new(TERN)
        .args(["testnet", "--nodes", "3", "--port", "27350"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = testnet.stdout.take().unwrap();
    let _testnet = Killed(testnet);
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("testnet up") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("testnet up");

    let file = write_file(
        "node.toml",
        "[node]\nhost = \"127.0.0.1\"\nport = 27360\nbootstrap = [\"127.0.0.1:27350\"]\n\
         [admin]\nlisten = \"127.0.0.1:27395\"\n[rpc]\nretries = 2\n",
    );
    let node = Command::new(TERN)
        .args(["node", "--config", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut node = Killed(node);
    let start = Instant::now();
    let metrics = loop {
        assert!(start.elapsed() < Duration::from_secs(30), "admin listener from the file");
        if let Ok(mut s) = TcpStream::connect("127.0.0.1:27395") {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
            let mut text = String::new();
            s.read_to_string(&mut text).unwrap();
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(metrics.contains("node=\"127.0.0.1:27360\""), "{metrics}");
    let kill = Command::new("kill").args(["-s", "TERM", &node.0.id().to_string()]).status();
    assert!(kill.unwrap().success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(12), "node stops on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
}
