//! Live interop with the JS reference (hyperdht 6.34.0 from npm, `interop/peer.js`) on
//! 127.0.0.1: a JS peer must not be able to tell a tern node from a JS node.
//!
//! I1 tern bootstrap + JS nodes · I2 JS bootstrap + tern nodes · I3 announce/lookup both
//! ways + unannounce · I4 mutable/immutable both ways, seq rules, forged writes refused ·
//! I5 two firewalled JS peers connect through tern relays. Each test owns a port range,
//! below the kernel's ephemeral range (32768–60999) so that no randomly bound socket (a
//! JS peer's, a client socket) can take a fixed port first.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;
use tern::{Dht, DhtError, KeyPair, OpError};

fn hexs(b: &[u8]) -> String {
    hex::encode(b)
}

#[test]
fn i1_js_nodes_bootstrap_from_a_tern_bootstrapper() {
    let driver = tern::node_driver(1, "i1").unwrap();
    let boot = tern_bootstrapper(&driver, 26_100);
    let mut js = JsPeer::start(json!({
        "bootstrap": ["127.0.0.1:26100"], "nodes": 10, "ephemeral": false, "firewalled": false
    }));
    let status = js.ok("status", json!({}));
    let all_persistent = status.as_array().unwrap().iter().all(|n| n["persistent"] == json!(true));
    assert!(all_persistent, "JS nodes persistent: {status}");
    // The tern bootstrapper learned them all (they send valid ids).
    let stats = boot.stats().wait().unwrap();
    assert!(stats.table_len >= 10, "tern bootstrapper table {}", stats.table_len);

    let topic = [0x11u8; 32];
    js.ok("announce", json!({"node": 0, "topic": hexs(&topic), "seed": hexs(&[0x21; 32])}));
    let found = js.ok("lookup", json!({"node": 9, "topic": hexs(&topic)}));
    let pk = hexs(KeyPair::from_seed(&[0x21; 32]).public_key().as_bytes());
    let peers = found["peers"].as_array().unwrap();
    assert!(
        peers.iter().any(|p| p["publicKey"] == json!(pk)),
        "JS lookup finds JS announce: {found}"
    );
    drop(js);
    boot.destroy().unwrap();
}

#[test]
fn i2_tern_nodes_join_a_js_network() {
    let mut js = JsPeer::start(json!({
        "bootstrapper": {"port": 26200}, "bootstrap": ["127.0.0.1:26200"],
        "nodes": 3, "ephemeral": false, "firewalled": false
    }));
    let driver = tern::node_driver(1, "i2").unwrap();
    let nodes: Vec<Dht> =
        (0..5).map(|i| tern_node(&driver, localhost(26_200), 26_201 + i)).collect();
    for n in &nodes {
        n.ready().wait().unwrap();
    }
    assert!(
        eventually(Duration::from_secs(20), || nodes.iter().all(Dht::is_persistent)),
        "tern nodes persistent"
    );
    for n in &nodes {
        let addr = n.local_addr().unwrap();
        assert_eq!(n.id().unwrap().0, tern_crypto::node_id(addr), "id = H32(observed address)");
    }
    // A JS FIND_NODE walk gets answers with valid ids from the tern nodes, and their
    // closer nodes are real, live nodes of the network.
    let target = [0x77u8; 32];
    let replies = js.ok("findNode", json!({"node": 1, "target": hexs(&target)}));
    let tern_addrs: Vec<String> =
        nodes.iter().map(|n| n.local_addr().unwrap().to_string()).collect();
    let mut live: Vec<String> = tern_addrs.clone();
    live.extend(js.nodes.iter().map(|n| format!("{}:{}", n["host"].as_str().unwrap(), n["port"])));
    let from_tern: Vec<_> = replies
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| tern_addrs.contains(&r["from"].as_str().unwrap().to_owned()))
        .collect();
    assert!(!from_tern.is_empty(), "tern nodes answered the JS walk: {replies}");
    for r in &from_tern {
        assert!(r["id"].is_string(), "JS accepted the tern node's id: {r}");
        let closer = r["closerNodes"].as_array().unwrap();
        assert!(!closer.is_empty(), "closer nodes returned: {r}");
        for c in closer {
            assert!(
                live.contains(&c.as_str().unwrap().to_owned()),
                "closer node {c} is a live node"
            );
        }
    }
    // And JS routing tables hold tern nodes.
    let status = js.ok("status", json!({}));
    let tables: u64 = status.as_array().unwrap().iter().map(|n| n["table"].as_u64().unwrap()).sum();
    assert!(tables >= 10, "JS tables hold tern nodes: {status}");
    drop(js);
    for n in nodes {
        n.destroy().unwrap();
    }
}

/// A mixed network: tern bootstrapper + 5 tern nodes + 5 JS persistent nodes + 1 JS client.
struct Mixed {
    _driver: tern::NodeDriver,
    boot: Dht,
    tern: Vec<Dht>,
    js: JsPeer,
}

fn mixed(port: u16) -> Mixed {
    let driver = tern::node_driver(1, "mixed").unwrap();
    let boot = tern_bootstrapper(&driver, port);
    let tern: Vec<Dht> =
        (0..5).map(|i| tern_node(&driver, localhost(port), port + 1 + i)).collect();
    for n in &tern {
        n.ready().wait().unwrap();
    }
    let js = JsPeer::start(json!({
        "bootstrap": [format!("127.0.0.1:{port}")], "nodes": 5, "ephemeral": false, "firewalled": false
    }));
    assert!(eventually(Duration::from_secs(20), || tern.iter().all(Dht::is_persistent)));
    Mixed { _driver: driver, boot, tern, js }
}

#[test]
fn i3_announce_lookup_both_ways_and_unannounce() {
    let mut m = mixed(26_300);
    let tern_kp = KeyPair::from_seed(&[0x31; 32]);
    let tern_pk = hexs(tern_kp.public_key().as_bytes());
    let topic = [0x33u8; 32];
    let stored = m.tern[0].announce(topic, &tern_kp, &[localhost(26_301)]).wait().unwrap();
    assert!(stored >= 5, "tern announce stored on {stored} nodes");
    let found = m.js.ok("lookup", json!({"node": 4, "topic": hexs(&topic)}));
    let hit = found["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["publicKey"] == json!(tern_pk))
        .cloned();
    let hit = hit.unwrap_or_else(|| panic!("JS finds the tern announce: {found}"));
    assert_eq!(hit["relays"], json!(["127.0.0.1:26301"]), "relay addresses survive");

    let js_topic = [0x34u8; 32];
    m.js.ok("announce", json!({"node": 2, "topic": hexs(&js_topic), "seed": hexs(&[0x35; 32])}));
    let js_pk = *KeyPair::from_seed(&[0x35; 32]).public_key().as_bytes();
    let replies = m.tern[3].lookup(js_topic).collect_blocking();
    assert!(
        replies.iter().flat_map(|r| &r.peers).any(|p| p.public_key == js_pk),
        "tern finds the JS announce"
    );

    m.tern[0].unannounce(topic, &tern_kp).wait().unwrap();
    let after = m.js.ok("lookup", json!({"node": 1, "topic": hexs(&topic)}));
    let still = after["peers"].as_array().unwrap().iter().any(|p| p["publicKey"] == json!(tern_pk));
    assert!(!still, "unannounce removed the record everywhere: {after}");
    drop(m.js);
    m.boot.destroy().unwrap();
}

#[test]
fn i4_mutable_and_immutable_both_ways() {
    let mut m = mixed(26_400);
    // JS put -> tern get.
    let js_seed = [0x41u8; 32];
    let js_pk = *KeyPair::from_seed(&js_seed).public_key().as_bytes();
    m.js.ok(
        "mutablePut",
        json!({"node": 0, "seed": hexs(&js_seed), "value": hexs(b"from js"), "seq": 3}),
    );
    let got =
        m.tern[1].mutable_get(js_pk, 0, true).wait().unwrap().expect("tern gets the JS value");
    assert_eq!((got.seq, got.value.as_slice()), (3, &b"from js"[..]));
    // tern put -> JS get, with seq ordering.
    let kp = KeyPair::from_seed(&[0x42; 32]);
    let pk = hexs(kp.public_key().as_bytes());
    m.tern[2].mutable_put(&kp, b"tern v1", 1).wait().unwrap();
    m.tern[2].mutable_put(&kp, b"tern v2", 2).wait().unwrap();
    let r = m.js.ok("mutableGet", json!({"node": 3, "publicKey": pk, "seq": 0, "latest": true}));
    assert_eq!(
        (r["seq"].as_u64(), r["value"].as_str()),
        (Some(2), Some(hexs(b"tern v2").as_str()))
    );
    assert_eq!(
        m.tern[2].mutable_put(&kp, b"tern v1", 1).wait(),
        Err(DhtError::Op(OpError::SeqTooLow))
    );
    // A JS write below the stored seq is refused by every tern node holding seq 2
    // (SEQ_TOO_LOW; the JS client resolves regardless, so ask the nodes what they hold).
    // The putting node itself is skipped: a query never asks its own node.
    m.js.ok(
        "mutablePut",
        json!({"node": 0, "seed": hexs(&[0x42; 32]), "value": hexs(b"old"), "seq": 1}),
    );
    let target = tern_crypto::hash32(kp.public_key().as_bytes());
    for (i, n) in m.tern.iter().enumerate().filter(|(i, _)| *i != 2) {
        let to = n.local_addr().unwrap().to_string();
        let r = m
            .js
            .ok("request", json!({"to": to, "command": 7, "target": hexs(&target), "value": "00"}));
        let stored = hex::decode(r["value"].as_str().expect("tern node holds the record")).unwrap();
        assert_eq!(stored[0], 2, "tern node {i} at {to} kept seq 2, refused the stale seq 1");
    }

    // A forged MUTABLE_PUT sent straight to a tern node is dropped silently.
    let to = m.tern[0].local_addr().unwrap().to_string();
    let token_reply =
        m.js.ok("request", json!({"to": to, "command": 7, "target": hexs(&target), "value": "00"}));
    let token = token_reply["token"].as_str().unwrap().to_owned();
    let mut forged = Vec::new();
    forged.extend_from_slice(kp.public_key().as_bytes());
    forged.extend_from_slice(&[9, 6]);
    forged.extend_from_slice(b"forged");
    forged.extend_from_slice(&[0u8; 64]);
    let r = m.js.call("request", json!({"to": to, "command": 6, "target": hexs(&target), "token": token, "value": hexs(&forged)}));
    assert!(r.is_err(), "a bad signature gets no reply: {r:?}");
    let r = m.js.ok("mutableGet", json!({"node": 3, "publicKey": pk, "seq": 0, "latest": true}));
    assert_eq!(r["seq"].as_u64(), Some(2), "the forged write changed nothing");

    // Immutable both ways.
    let h = m.js.ok("immutablePut", json!({"node": 1, "value": hexs(b"js immutable")}));
    let hash: [u8; 32] = hex::decode(h["hash"].as_str().unwrap()).unwrap().try_into().unwrap();
    assert_eq!(
        m.tern[4].immutable_get(hash).wait().unwrap().as_deref(),
        Some(&b"js immutable"[..])
    );
    let hash = m.tern[0].immutable_put(b"tern immutable").wait().unwrap();
    let r = m.js.ok("immutableGet", json!({"node": 2, "hash": hexs(&hash)}));
    assert_eq!(r["value"].as_str(), Some(hexs(b"tern immutable").as_str()));
    drop(m.js);
    m.boot.destroy().unwrap();
}

#[test]
fn i5_js_peers_connect_through_tern_relays() {
    let driver = tern::node_driver(1, "i5").unwrap();
    let boot = tern_bootstrapper(&driver, 26_500);
    let tern: Vec<Dht> =
        (0..6).map(|i| tern_node(&driver, localhost(26_500), 26_501 + i)).collect();
    for n in &tern {
        n.ready().wait().unwrap();
    }
    assert!(eventually(Duration::from_secs(20), || tern.iter().all(Dht::is_persistent)));
    // Two firewalled JS clients; the only persistent nodes (the relays) are tern nodes.
    let mut js = JsPeer::start(json!({
        "bootstrap": ["127.0.0.1:26500"], "nodes": 2, "firewalled": true, "quickFirewall": false
    }));
    let server = js.ok("listen", json!({"node": 0, "seed": hexs(&[0x51; 32])}));
    let msg = b"hello through tern relays";
    let r = js
        .ok("connect", json!({"node": 1, "publicKey": server["publicKey"], "message": hexs(msg)}));
    assert_eq!(r["echoed"].as_str(), Some(hexs(msg).as_str()), "echo over the holepunched stream");
    assert_eq!(r["remotePublicKey"], server["publicKey"]);
    let relayed: u64 = tern.iter().map(|n| n.stats().wait().unwrap().store.relayed).sum();
    assert!(relayed > 0, "the handshake was relayed by tern nodes");
    drop(js);
    boot.destroy().unwrap();
}
