//! The admin listener of the real binary (`--admin`): `/healthz`, `/readyz` and
//! `/metrics` answered over raw HTTP/1.1, the metrics parse as Prometheus text with
//! the expected names, only GET is served, and `--log-format json` writes JSON lines.
//! Loopback only (ports 27200–27299; the testnets take `--port` up to `--port` +
//! `--nodes`, so each test owns a disjoint range); every wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

const TERN: &str = env!("CARGO_BIN_EXE_tern");

/// Stops the child (SIGTERM, then kill) when the test ends.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tern --admin 127.0.0.1:<admin> testnet` and waits (≤ 60 s) until it is up.
fn start(nodes: u16, port: u16, admin: u16, extra: &[&str]) -> (Stopped, Receiver<String>) {
    let mut child = Command::new(TERN)
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(extra)
        .args(["testnet", "--nodes", &nodes.to_string(), "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (up_tx, up_rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("testnet up") {
                let _ = up_tx.send(());
            }
        }
    });
    if let Err(e) = up_rx.recv_timeout(Duration::from_secs(60)) {
        let status = child.try_wait();
        std::thread::sleep(Duration::from_millis(200));
        let log: Vec<String> = rx.try_iter().collect();
        panic!("testnet up within 60 s: {e}; exit {status:?}; stderr:\n{}", log.join("\n"));
    }
    (Stopped(child), rx)
}

/// Sends `request` raw and returns (status, body).
fn http(port: u16, request: &str) -> (u16, String) {
    // The listener starts right after the testnet prints that it is up: retry briefly.
    let mut tries = 0;
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("connect: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("admin listener on {port}: {e}"),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn get(port: u16, path: &str) -> (u16, String) {
    http(port, &format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"))
}

/// Checks Prometheus text format line by line; returns the metric names sampled.
fn parse_prometheus(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let kw = rest.split_whitespace().next().unwrap();
            assert!(kw == "HELP" || kw == "TYPE", "comment line: {line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        value.parse::<f64>().unwrap_or_else(|_| panic!("value of {line}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name}"
        );
        if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "labels of {line}");
            for pair in labels[1..labels.len() - 1].split(',') {
                let (k, v) = pair.split_once('=').expect("label k=v");
                assert!(!k.is_empty() && v.starts_with('"') && v.ends_with('"'), "{line}");
            }
        }
        names.push(name.to_owned());
    }
    names
}

#[test]
fn health_metrics_and_json_logs() {
    let (guard, stderr) = start(3, 27200, 27290, &["--log-format", "json"]);
    assert_eq!(get(27290, "/healthz").0, 200);
    let (status, body) = get(27290, "/readyz");
    assert_eq!(status, 503, "3 nodes know fewer than k = 20 nodes: {body}");

    let (status, metrics) = get(27290, "/metrics");
    assert_eq!(status, 200);
    let names = parse_prometheus(&metrics);
    for expected in [
        "tern_io_backend",
        "tern_nodes",
        "tern_requests_total",
        "tern_drops_total",
        "tern_store_refused_total",
        "tern_routing_table_nodes",
        "tern_records",
        "tern_record_bytes",
        "tern_persistent",
        "tern_shard_requests_total",
        "tern_shard_cpu_seconds_total",
        "tern_shard_mailbox_depth",
        "tern_replies_capped_total",
        "tern_replies_total",
        "tern_error_replies_total",
        "tern_connections_total",
        "tern_holepunches_total",
        "tern_holepunch_probes_total",
        "tern_handshakes_refused_total",
        "tern_connections_refused_total",
        "tern_connections_served",
        "tern_udx_bytes_total",
        "tern_udx_retransmits_total",
        "tern_udx_loss_events_total",
        "tern_udx_flow_control_total",
        "tern_udx_held_bytes",
        "tern_udx_unread_bytes",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing:\n{metrics}");
    }
    assert!(metrics.contains("tern_nodes 4"), "{metrics}");
    assert!(metrics.contains("command=\"find_node\""), "{metrics}");
    assert!(metrics.contains("reason=\"decode_error\""), "{metrics}");
    assert!(metrics.contains("kind=\"rto\""), "{metrics}");
    let cpu = metrics
        .lines()
        .find(|l| l.starts_with("tern_shard_cpu_seconds_total{"))
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse::<f64>().unwrap());
    assert!(cpu.is_some_and(|s| s > 0.0), "a driver thread has run: {metrics}");

    assert_eq!(http(27290, "POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(get(27290, "/nope").0, 404);
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(http(27290, &huge).0, 431);

    drop(guard);
    let lines: Vec<String> = stderr.iter().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        assert!(v.get("level").is_some(), "{line}");
    }
}

#[test]
fn readyz_flips_once_the_table_holds_k_nodes() {
    let (_guard, _stderr) = start(22, 27210, 27291, &[]);
    let start = Instant::now();
    let mut last = (0, String::new());
    while start.elapsed() < Duration::from_secs(30) {
        last = get(27291, "/readyz");
        if last.0 == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(last.0, 200, "ready within 30 s: {}", last.1);
}

/// The value of the sample `series` (name and labels exactly as rendered, without the
/// `node` label) in `metrics`.
fn sample(metrics: &str, name: &str, labels: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

#[test]
fn metrics_count_the_requests_and_replies_that_were_sent() {
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
    use tern_wire::Encode;
    use tern_wire::rpc::{Message, Request};

    // Outside 27210..=27231, the 22-node testnet of the readyz test running alongside.
    const NODE: u16 = 27260;
    const ADMIN: u16 = 27292;
    let child = Command::new(TERN)
        .args(["--admin", &format!("127.0.0.1:{ADMIN}")])
        .args(["bootstrap", "--host", "127.0.0.1", "--port", &NODE.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _guard = Stopped(child);
    assert_eq!(get(ADMIN, "/healthz").0, 200);

    // Known numbers of each kind, every one answered before the next is sent.
    let node = SocketAddrV4::new(Ipv4Addr::LOCALHOST, NODE);
    let socket = UdpSocket::bind("127.0.0.3:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let target = [7u8; 32];
    let mut tid = 0u16;
    let mut ask = |internal: bool, command: u64| {
        tid += 1;
        let req = Request {
            tid,
            to: node,
            id: None,
            token: None,
            internal,
            command,
            target: Some(&target),
            value: None,
        };
        socket.send_to(&req.to_vec(), node).unwrap();
        let mut buf = [0u8; 2048];
        let n = socket.recv(&mut buf).expect("every request is answered");
        match tern_wire::Decode::decode(&buf[..n]) {
            Ok(Message::Response(r)) => assert_eq!(r.tid, tid),
            other => panic!("not a response: {other:?}"),
        }
    };
    let counts =
        [(true, 2, "find_node", 37), (false, 3, "lookup", 23), (false, 2, "find_peer", 11)];
    for &(internal, command, _, n) in &counts {
        for _ in 0..n {
            ask(internal, command);
        }
    }
    // An app command number hyperdht does not have: answered with an error.
    ask(false, 77);

    let (_, metrics) = get(ADMIN, "/metrics");
    for (internal, _, name, n) in counts {
        let kind = if internal { "internal" } else { "app" };
        let labels = format!("command=\"{name}\",kind=\"{kind}\"");
        assert_eq!(sample(&metrics, "tern_requests_total", &labels), Some(n), "{name} requests");
        assert_eq!(sample(&metrics, "tern_replies_total", &labels), Some(n), "{name} replies");
    }
    let other = "command=\"other_app\",kind=\"app\"";
    assert_eq!(sample(&metrics, "tern_requests_total", other), Some(1));
    assert_eq!(sample(&metrics, "tern_error_replies_total", ""), Some(1), "{metrics}");
    // The driver's own counters, summed over the shards (as many as the machine has
    // cores; one client socket's requests all land on one of them): every request came
    // in and every reply went out through a shard's loop (maintenance may add a few).
    let asked: u64 = counts.iter().map(|c| c.3).sum::<u64>() + 1;
    let total = |name: &str, labels: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    };
    assert!(total("tern_shard_datagrams_total", "direction=\"in\"") >= asked, "{metrics}");
    assert!(total("tern_shard_datagrams_total", "direction=\"out\"") >= asked, "{metrics}");
    let turns = total("tern_shard_loop_turns_total", "shard=");
    assert!(turns >= asked, "one request at a time: a turn each: {metrics}");
}
