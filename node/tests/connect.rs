//! Encrypted connections between tern nodes on 127.0.0.1: listen, connect through the
//! relays that hold the server's announcement, an echoed transfer checked end to end,
//! half-close, and the server's firewall refusing a client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::stream::{pattern, round_trip};

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::{eventually, localhost, tern_bootstrapper, tern_firewalled_node, tern_node};
use tern::{Dht, DhtError, KeyPair, NodeDriver, SecureStream};

/// Echoes every accepted stream until the peer ends it.
fn echo(mut stream: SecureStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = stream.close_blocking();
        // Keep the handle until the END is out.
        std::thread::sleep(Duration::from_secs(2));
    });
}

struct Net {
    _driver: NodeDriver,
    _nodes: Vec<Dht>,
    server: Dht,
    client: Dht,
}

fn network(port: u16) -> Net {
    network_with(port, tern_node)
}

fn network_with(port: u16, peer: fn(&NodeDriver, std::net::SocketAddrV4, u16) -> Dht) -> Net {
    let driver = tern::node_driver(1, "connect-test").unwrap();
    let boot = tern_bootstrapper(&driver, port);
    let mut nodes: Vec<Dht> =
        (1..=5).map(|i| tern_node(&driver, localhost(port), port + i)).collect();
    assert!(eventually(Duration::from_secs(20), || nodes.iter().all(Dht::is_persistent)));
    nodes.push(boot);
    let server = peer(&driver, localhost(port), port + 6);
    let client = peer(&driver, localhost(port), port + 7);
    server.ready().wait().unwrap();
    client.ready().wait().unwrap();
    Net { _driver: driver, _nodes: nodes, server, client }
}

#[test]
fn c1_tern_client_to_tern_server_echo_4_mib() {
    let net = network(27_300);
    let server_kp = KeyPair::from_seed(&[7; 32]);
    let mut server = net.server.listen(&server_kp).wait().unwrap();
    assert_eq!(server.public_key(), *server_kp.public_key().as_bytes());
    let client_pk = *net.client.default_key_pair().public_key().as_bytes();
    let accept = std::thread::spawn(move || {
        let s = server.accept_blocking().expect("a connection");
        assert_eq!(s.remote_public_key(), client_pk);
        assert!(!s.is_initiator());
        let hash = s.handshake_hash();
        echo(s);
        (server, hash)
    });
    let stream = net.client.connect(server_kp.public_key().as_bytes().to_owned()).wait().unwrap();
    assert_eq!(stream.remote_public_key(), *server_kp.public_key().as_bytes());
    assert!(stream.is_initiator());
    let client_hash = stream.handshake_hash();
    // The server counts the open connection against its connection limits ...
    let served = |dht: &Dht| dht.stats().wait().unwrap().conn.served;
    assert_eq!(served(&net.server), 1);
    let data = pattern(4 << 20);
    let back = round_trip(stream, &data);
    assert_eq!(back.len(), data.len(), "every byte came back");
    assert_eq!(Sha256::digest(&back), Sha256::digest(&data), "intact and in order");
    let (_server, server_hash) = accept.join().unwrap();
    assert_eq!(client_hash, server_hash, "both ends agree on the handshake hash");
    // ... and frees the place once both sides ended and the stream closed.
    assert!(eventually(Duration::from_secs(10), || served(&net.server) == 0));
    assert_eq!(served(&net.client), 0, "a client's own connects are not counted");
}

#[test]
fn c2_firewall_refuses_a_client_and_unknown_keys_are_not_found() {
    let net = network(27_320);
    let server_kp = KeyPair::from_seed(&[8; 32]);
    let refused = *net.client.default_key_pair().public_key().as_bytes();
    let _server = net
        .server
        .listen_with_firewall(&server_kp, move |pk, payload, _addr| {
            assert_eq!(payload.version, 1);
            *pk.as_bytes() == refused
        })
        .wait()
        .unwrap();
    let started = Instant::now();
    let err = net.client.connect(*server_kp.public_key().as_bytes()).wait().unwrap_err();
    assert!(matches!(err, DhtError::Connect(_)), "refused: {err:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // Another identity on the same client node is let in.
    let other = KeyPair::from_seed(&[9; 32]);
    let ok = net.client.connect_as(*server_kp.public_key().as_bytes(), &other).wait();
    assert!(ok.is_ok(), "a different key is accepted: {ok:?}");
    // Nobody listens on this key.
    let nobody = KeyPair::from_seed(&[10; 32]);
    let err = net.client.connect(*nobody.public_key().as_bytes()).wait().unwrap_err();
    assert!(matches!(err, DhtError::Connect(tern::ConnectError::PeerNotFound)), "{err:?}");
}

#[test]
fn c3_two_firewalled_peers_holepunch() {
    // Both sides say UNKNOWN (firewalled, ephemeral): no direct path is offered, so the
    // connection exists only if the PEER_HOLEPUNCH rounds and the probes work.
    let net = network_with(27_340, tern_firewalled_node);
    let server_kp = KeyPair::from_seed(&[11; 32]);
    let mut server = net.server.listen(&server_kp).wait().unwrap();
    let accept = std::thread::spawn(move || {
        let s = server.accept_blocking().expect("a connection");
        echo(s);
        server
    });
    let started = Instant::now();
    let stream = net.client.connect(*server_kp.public_key().as_bytes()).wait().unwrap();
    let opened = started.elapsed();
    let data = pattern(1 << 20);
    let back = round_trip(stream, &data);
    assert_eq!(Sha256::digest(&back), Sha256::digest(&data), "intact and in order");
    let _server = accept.join().unwrap();
    eprintln!("holepunched connection opened in {opened:?}");
    let client = net.client.stats().wait().unwrap().conn;
    let server = net.server.stats().wait().unwrap().conn;
    assert_eq!((client.holepunches, client.holepunched), (1, 1), "client punched: {client:?}");
    assert_eq!((server.holepunches, server.holepunched), (1, 1), "server punched: {server:?}");
    assert!(client.probes_received >= 1 && server.probes_received >= 1);
}

#[test]
fn c4_a_server_sharded_over_two_cores_serves_connections() {
    // The server node runs two shards on one SO_REUSEPORT port: the handshake must reach
    // the listening shard (not the target's record owner), and UDX packets the kernel
    // hands to the other shard must find the stream by the shard bits of its id.
    let net = network(27_360);
    let config = tern::NodeConfig {
        rpc: tern::RpcConfig {
            bootstrap: vec![localhost(27_360)],
            ephemeral: Some(false),
            firewalled: false,
            ..tern::RpcConfig::default()
        },
        host: std::net::Ipv4Addr::LOCALHOST,
        port: 27_368,
        ..tern::NodeConfig::default()
    };
    let io = tern::io_mode_from_env().unwrap();
    let sharded = Dht::start_sharded(config, 2, io).unwrap();
    sharded.ready().wait().unwrap();
    for (i, seed) in [21u8, 22, 23, 24].into_iter().enumerate() {
        // Several keys, so the targets' record owners cover both shards.
        let kp = KeyPair::from_seed(&[seed; 32]);
        let mut server = sharded.listen(&kp).wait().unwrap();
        let accept = std::thread::spawn(move || {
            let s = server.accept_blocking().expect("a connection");
            echo(s);
            server
        });
        let stream = net.client.connect(*kp.public_key().as_bytes()).wait().unwrap();
        let data = pattern((256 << 10) * (i + 1));
        let back = round_trip(stream, &data);
        assert_eq!(Sha256::digest(&back), Sha256::digest(&data), "key {i}: intact and in order");
        let _server = accept.join().unwrap();
    }
    // Every shard released the places of its closed connections (the stats sum them).
    let served = || sharded.stats().wait().unwrap().conn.served;
    assert!(eventually(Duration::from_secs(10), || served() == 0), "{} still served", served());
}

#[test]
fn c5_a_close_after_everything_was_sent_still_ends_the_stream() {
    // The node thread moves written bytes to UDX as soon as it can; a close that comes
    // after that finds nothing buffered and must still make the node send the END (it
    // once only set a flag, and the END waited for some later event that never came:
    // the peer, waiting for EOF, hung).
    let net = network(27_370);
    let kp = KeyPair::from_seed(&[31; 32]);
    let mut server = net.server.listen(&kp).wait().unwrap();
    let accept = std::thread::spawn(move || {
        let mut s = server.accept_blocking().expect("a connection");
        let mut got = Vec::new();
        let ended = s.read_to_end(&mut got).map(|_| got);
        (server, ended)
    });
    let mut stream = net.client.connect(*kp.public_key().as_bytes()).wait().unwrap();
    stream.write_all(b"all of it").unwrap();
    stream.flush().unwrap();
    // Long enough for the node to have sent and the peer to have acknowledged it all.
    std::thread::sleep(Duration::from_millis(300));
    stream.close_blocking().unwrap();
    let start = Instant::now();
    while !accept.is_finished() {
        assert!(start.elapsed() < Duration::from_secs(10), "the server never read EOF");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_server, ended) = accept.join().unwrap();
    assert_eq!(ended.unwrap(), b"all of it");
}

#[test]
fn c6_a_reader_that_stalls_closes_the_window_and_reopens_it() {
    // Received bytes go straight into the handle's pipe and count against UDX's receive
    // window. A reader that stops lets pipe and window fill (the sender stops); when it
    // reads again, the window must reopen and the rest arrive intact (a missing window
    // update would leave the sender on its zero-window probes: far slower than this
    // test's bound).
    let net = network(27_380);
    let kp = KeyPair::from_seed(&[32; 32]);
    let mut server = net.server.listen(&kp).wait().unwrap();
    let total = 24 << 20;
    let accept = std::thread::spawn(move || {
        let mut s = server.accept_blocking().expect("a connection");
        std::thread::sleep(Duration::from_millis(700));
        let mut got = Vec::with_capacity(total);
        let mut buf = vec![0u8; 256 * 1024];
        let mut since_pause = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    since_pause += n;
                    if since_pause >= 4 << 20 {
                        // Stall again, once the window is full.
                        std::thread::sleep(Duration::from_millis(200));
                        since_pause = 0;
                    }
                }
            }
        }
        (server, got)
    });
    let mut stream = net.client.connect(*kp.public_key().as_bytes()).wait().unwrap();
    let data = pattern(total);
    let start = Instant::now();
    stream.write_all(&data).unwrap();
    stream.close_blocking().unwrap();
    let (_server, got) = accept.join().unwrap();
    assert_eq!(got.len(), data.len(), "every byte arrived");
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data), "intact and in order");
    assert!(start.elapsed() < Duration::from_secs(20), "stalled: {:?}", start.elapsed());
    eprintln!("24 MiB with a stalling reader in {:?}", start.elapsed());
}

#[test]
fn c7_buffered_reads_lend_the_plaintext_in_place() {
    // `BufRead` / `AsyncBufRead` hand out the decrypted bytes where they were decrypted:
    // lines split across messages, messages split across fills, a big transfer read
    // only through fill/consume, and EOF as an empty fill.
    use futures_io::AsyncBufRead;
    use std::io::BufRead;
    use std::pin::Pin;
    let net = network(27_390);
    let kp = KeyPair::from_seed(&[33; 32]);
    let mut server = net.server.listen(&kp).wait().unwrap();
    let total = 3 << 20;
    let accept = std::thread::spawn(move || {
        let mut s = server.accept_blocking().expect("a connection");
        let mut lines = Vec::new();
        for _ in 0..3 {
            let mut line = String::new();
            s.read_line(&mut line).unwrap();
            lines.push(line);
        }
        // The rest through the async form, consuming in uneven bites.
        let mut got = Vec::with_capacity(total);
        let mut bite = 1;
        loop {
            let n = futures_executor::block_on(std::future::poll_fn(|cx| {
                Pin::new(&mut s).poll_fill_buf(cx).map_ok(|buf| {
                    let n = buf.len().min(bite);
                    got.extend_from_slice(&buf[..n]);
                    n
                })
            }))
            .unwrap();
            if n == 0 {
                break;
            }
            Pin::new(&mut s).consume(n);
            bite = bite * 7 % 100_003 + 1;
        }
        (server, lines, got)
    });
    let mut stream = net.client.connect(*kp.public_key().as_bytes()).wait().unwrap();
    // One line in two messages, then two lines in one.
    stream.write_all(b"first ").unwrap();
    stream.write_all(b"line\n").unwrap();
    stream.write_all(b"second\nthird\n").unwrap();
    let data = pattern(total);
    stream.write_all(&data).unwrap();
    stream.close_blocking().unwrap();
    let (_server, lines, got) = accept.join().unwrap();
    assert_eq!(lines, ["first line\n", "second\n", "third\n"]);
    assert_eq!(got.len(), data.len(), "every byte arrived");
    assert_eq!(Sha256::digest(&got), Sha256::digest(&data), "intact and in order");
}
