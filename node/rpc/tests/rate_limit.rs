//! The per-IP rate limit of incoming requests: a PING flood from one address is cut
//! to its burst plus its refill, counted as `rate_limited`, while another address is
//! answered throughout; loopback is exempt by default; the bucket table stays bounded
//! under a flood of distinct (spoofed) sources. Virtual time; every loop is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{SocketId, Timestamp, TxQueue};
use tern_rpc::{NoApplication, RateLimit, Rpc, RpcConfig};
use tern_wire::Encode;
use tern_wire::rpc::{InternalCommand, Request};

const ME: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 9, 9, 9), 49737);

fn node(limit: RateLimit) -> Rpc {
    let config = RpcConfig {
        public_addr: Some(ME),
        server_port: ME.port(),
        rate_limit: limit,
        ..RpcConfig::default()
    };
    Rpc::new(config, Timestamp::ZERO, 7, [3; 32])
}

fn ping(tid: u16) -> Vec<u8> {
    let req = Request {
        tid,
        to: ME,
        id: None,
        token: None,
        internal: true,
        command: InternalCommand::Ping as u64,
        target: None,
        value: None,
    };
    let mut buf = vec![0u8; 128];
    let n = req.encode(&mut buf).unwrap();
    buf.truncate(n);
    buf
}

/// Delivers one PING from `from` at `now`; whether it was answered.
fn answered(rpc: &mut Rpc, now: Timestamp, from: SocketAddrV4) -> bool {
    let mut tx = TxQueue::new(64);
    rpc.handle_datagram(now, SocketId::SERVER, from, &ping(1), &mut NoApplication, &mut tx);
    tx.iter().any(|(meta, _)| meta.dest == from)
}

#[test]
fn a_flood_from_one_ip_is_limited_while_another_is_served() {
    let limit = RateLimit { per_second: 100, burst: 50, ..RateLimit::default() };
    let mut rpc = node(limit);
    let flooder = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 1), 5000);
    let honest = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 7), 6000);
    let mut flood_ok = 0;
    let mut honest_ok = 0;
    // One simulated second: the flooder sends 10 000 pings (10 per 1 ms), the honest
    // peer one every 10 ms.
    for ms in 0..1000u64 {
        let now = Timestamp::from_millis(ms);
        for _ in 0..10 {
            flood_ok += usize::from(answered(&mut rpc, now, flooder));
        }
        if ms % 10 == 0 {
            honest_ok += usize::from(answered(&mut rpc, now, honest));
        }
    }
    // Burst 50 + 100/s over ~1 s.
    assert!((140..=160).contains(&flood_ok), "flooder answered {flood_ok} times");
    assert_eq!(honest_ok, 100, "the honest peer is always answered");
    assert_eq!(rpc.stats().rate_limited, 10_000 - flood_ok as u64);
    assert_eq!(rpc.stats().internal_requests[0], (flood_ok + honest_ok) as u64);

    // After a quiet second the flooder's bucket has refilled.
    let later = Timestamp::from_millis(1000).saturating_add(Duration::from_secs(1));
    assert!(answered(&mut rpc, later, flooder));
}

#[test]
fn loopback_is_exempt_by_default_and_zero_disables() {
    // The library default mirrors dht-rpc: no limit (the binary turns it on).
    assert_eq!(RpcConfig::default().rate_limit, RateLimit::OFF);
    let mut rpc = node(RateLimit { per_second: 1, burst: 1, ..RateLimit::default() });
    let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 7000);
    assert!((0..1000).all(|_| answered(&mut rpc, Timestamp::ZERO, local)));
    let mut off = node(RateLimit { per_second: 0, ..RateLimit::default() });
    let remote = SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 2), 7000);
    assert!((0..1000).all(|_| answered(&mut off, Timestamp::ZERO, remote)));
    assert_eq!(off.stats().rate_limited, 0);
}

#[test]
fn spoofed_sources_cost_bounded_state() {
    let limit = RateLimit { per_second: 10, burst: 10, max_tracked: 1000, ..RateLimit::default() };
    let mut limiter = tern_rpc::RateLimiter::new(limit);
    for i in 0..50_000u32 {
        let ip = Ipv4Addr::from(0xc612_0000 + i);
        assert!(
            limiter.allow(Timestamp::from_millis(u64::from(i)), ip),
            "a new source starts full"
        );
    }
    assert_eq!(limiter.tracked(), 1000);
}
