//! Live interop of encrypted connections with the JS reference (hyperdht 6.34.0 from
//! `interop/`, driven through `interop/stream.js`) on 127.0.0.1: a JS client through a
//! tern server's echo and a tern client through a JS server's echo, 64 MiB each way and
//! checksummed, and a JS server's firewall refusing a tern client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::stream::{pattern, round_trip};

use std::io::{Read, Write};
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{
    eventually, localhost, spawn_js, tern_bootstrapper, tern_firewalled_node, tern_node,
};
use tern::{Dht, DhtError, KeyPair};

const MIB64: usize = 64 << 20;
const MIB8: usize = 8 << 20;

/// Echoes an accepted stream until the peer ends it; returns the bytes echoed.
fn echo_all(mut s: tern::SecureStream) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut echoed = 0usize;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                s.write_all(&buf[..n]).unwrap();
                echoed += n;
            }
        }
    }
    s.close_blocking().unwrap();
    // Keep the handle until the END is out.
    std::thread::sleep(Duration::from_secs(1));
    echoed
}

/// `interop/stream.js` in one mode; its JSON lines arrive on a channel.
struct JsStream {
    child: Child,
    lines: Receiver<String>,
}

impl JsStream {
    fn start(mode: &str, options: Value) -> JsStream {
        let (child, lines) = spawn_js(&["stream.js", mode, &options.to_string()]);
        JsStream { child, lines }
    }

    /// The next line whose `event` is `event` (≤ `limit`).
    fn expect(&self, event: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| panic!("no {event} line"));
            // stream.js prints JSON lines only; anything else is not an event.
            let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
            if v["event"] == event || v["event"] == "error" {
                return v;
            }
        }
    }
}

impl Drop for JsStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct Net {
    _driver: tern::NodeDriver,
    _nodes: Vec<Dht>,
    peer: Dht,
    port: u16,
}

/// A tern bootstrapper, 5 persistent tern relays, and one more tern node to use.
fn network(port: u16) -> Net {
    network_with(port, tern_node)
}

fn network_with(port: u16, peer: fn(&tern::NodeDriver, std::net::SocketAddrV4, u16) -> Dht) -> Net {
    let driver = tern::node_driver(1, "interop-connect").unwrap();
    let boot = tern_bootstrapper(&driver, port);
    let mut nodes: Vec<Dht> =
        (1..=5).map(|i| tern_node(&driver, localhost(port), port + i)).collect();
    assert!(eventually(Duration::from_secs(20), || nodes.iter().all(Dht::is_persistent)));
    nodes.push(boot);
    let peer = peer(&driver, localhost(port), port + 6);
    peer.ready().wait().unwrap();
    Net { _driver: driver, _nodes: nodes, peer, port }
}

#[test]
fn j1_js_client_through_tern_server_echo_64_mib() {
    let net = network(26_600);
    let kp = KeyPair::from_seed(&[0x31; 32]);
    let mut server = net.peer.listen(&kp).wait().unwrap();
    let accept = std::thread::spawn(move || {
        let s = server.accept_blocking().expect("the JS client connects");
        let remote = s.remote_public_key();
        (remote, echo_all(s))
    });
    let js = JsStream::start(
        "connect",
        json!({ "bootstrap": [format!("127.0.0.1:{}", net.port)], "publicKey": hex(kp.public_key().as_bytes()), "bytes": MIB64 }),
    );
    let done = js.expect("done", Duration::from_secs(240));
    assert_eq!(done["ok"], json!(true), "JS client got its 64 MiB back intact: {done}");
    assert_eq!(done["remotePublicKey"], json!(hex(kp.public_key().as_bytes())));
    let (remote, echoed) = accept.join().unwrap();
    assert_eq!(echoed, MIB64);
    assert_eq!(hex(&remote).len(), 64);
    eprintln!(
        "JS client -> tern server: open {} ms, 64 MiB echoed in {} ms",
        done["openMs"], done["transferMs"]
    );
}

#[test]
fn j2_tern_client_through_js_server_echo_64_mib() {
    let net = network(26_620);
    let seed = [0x32u8; 32];
    let js = JsStream::start(
        "listen",
        json!({ "bootstrap": [format!("127.0.0.1:{}", net.port)], "seed": hex(&seed) }),
    );
    let listening = js.expect("listening", Duration::from_secs(60));
    let pk = KeyPair::from_seed(&seed).public_key();
    assert_eq!(listening["publicKey"], json!(hex(pk.as_bytes())));
    let started = Instant::now();
    let mut stream = net.peer.connect(*pk.as_bytes()).wait().unwrap();
    let open = started.elapsed();
    assert_eq!(stream.remote_public_key(), *pk.as_bytes());
    // Unordered messages: the JS server echoes each one (loopback loses none).
    let sent: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + usize::from(i) * 40]).collect();
    for m in &sent {
        stream.send_message(m).unwrap();
    }
    let mut echoed = Vec::new();
    assert!(eventually(Duration::from_secs(10), || {
        while let Some(m) = stream.try_recv_message() {
            echoed.push(m);
        }
        echoed.len() == sent.len()
    }));
    echoed.sort();
    assert_eq!(echoed, sent, "every message came back intact");
    let data = pattern(MIB64);
    let t = Instant::now();
    let back = round_trip(stream, &data);
    let transfer = t.elapsed();
    assert_eq!(back.len(), data.len(), "every byte came back");
    assert_eq!(Sha256::digest(&back), Sha256::digest(&data), "intact and in order");
    let conn = js.expect("connection", Duration::from_secs(5));
    assert_eq!(
        conn["remotePublicKey"],
        json!(hex(net.peer.default_key_pair().public_key().as_bytes()))
    );
    let closed = js.expect("closed", Duration::from_secs(30));
    assert_eq!(closed["bytes"], json!(MIB64), "the JS server saw all 64 MiB: {closed}");
    assert_eq!(closed["sha256"], json!(hex(&Sha256::digest(&data))));
    eprintln!("tern client -> JS server: open {open:?}, 64 MiB echoed in {transfer:?}");
}

#[test]
fn j3_js_server_firewall_refuses_a_tern_client() {
    let net = network(26_640);
    let seed = [0x33u8; 32];
    let refused = KeyPair::from_seed(&[0x34; 32]);
    let js = JsStream::start(
        "listen",
        json!({
            "bootstrap": [format!("127.0.0.1:{}", net.port)],
            "seed": hex(&seed),
            "rejectKey": hex(refused.public_key().as_bytes()),
        }),
    );
    js.expect("listening", Duration::from_secs(60));
    let pk = *KeyPair::from_seed(&seed).public_key().as_bytes();
    let err = net.peer.connect_as(pk, &refused).wait().unwrap_err();
    assert!(matches!(err, DhtError::Connect(_)), "refused: {err:?}");
    let ok = net.peer.connect(pk).wait();
    assert!(ok.is_ok(), "the default identity is accepted: {ok:?}");
}

/// Both sides behind "NATs" (firewalled for good): the connection exists only through
/// the holepunch rounds, and tern's counters show the session that made it.
#[test]
fn j4_js_client_holepunches_to_a_firewalled_tern_server() {
    let net = network_with(26_660, tern_firewalled_node);
    let kp = KeyPair::from_seed(&[0x34; 32]);
    let mut server = net.peer.listen(&kp).wait().unwrap();
    let accept = std::thread::spawn(move || {
        let s = server.accept_blocking().expect("the JS client connects");
        echo_all(s)
    });
    let js = JsStream::start(
        "connect",
        json!({ "bootstrap": [format!("127.0.0.1:{}", net.port)], "publicKey": hex(kp.public_key().as_bytes()), "bytes": MIB8, "behindNat": true }),
    );
    let done = js.expect("done", Duration::from_secs(120));
    assert_eq!(done["ok"], json!(true), "JS client got its 8 MiB back intact: {done}");
    assert_eq!(accept.join().unwrap(), MIB8);
    let stats = net.peer.stats().wait().unwrap().conn;
    assert_eq!((stats.holepunches, stats.holepunched), (1, 1), "{stats:?}");
    // On loopback the JS client connects during its probe round (tern echoes its
    // opening probe), before hyperdht counts a punch strategy.
    eprintln!(
        "JS client -> firewalled tern server: open {} ms, JS punches {}",
        done["openMs"], done["punches"]
    );
}

#[test]
fn j5_tern_client_holepunches_to_a_firewalled_js_server() {
    let net = network_with(26_680, tern_firewalled_node);
    let seed = [0x35u8; 32];
    let js = JsStream::start(
        "listen",
        json!({ "bootstrap": [format!("127.0.0.1:{}", net.port)], "seed": hex(&seed), "behindNat": true }),
    );
    js.expect("listening", Duration::from_secs(60));
    let pk = KeyPair::from_seed(&seed).public_key();
    let started = Instant::now();
    let stream = net.peer.connect(*pk.as_bytes()).wait().unwrap();
    let open = started.elapsed();
    let data = pattern(MIB8);
    let back = round_trip(stream, &data);
    assert_eq!(Sha256::digest(&back), Sha256::digest(&data), "intact and in order");
    let conn = js.expect("connection", Duration::from_secs(5));
    let stats = net.peer.stats().wait().unwrap().conn;
    assert_eq!((stats.holepunches, stats.holepunched), (1, 1), "tern punched: {stats:?}");
    let closed = js.expect("closed", Duration::from_secs(30));
    assert_eq!(closed["bytes"], json!(MIB8), "the JS server saw all 8 MiB: {closed}");
    eprintln!("tern client -> firewalled JS server: open {open:?}, JS punches {}", conn["punches"]);
}
