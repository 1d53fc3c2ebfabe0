//! Remote input never panics and never grows state past its bounds: arbitrary
//! datagrams (random bytes, and valid-looking headers with random fields) are fed into
//! connected streams, interleaved with timer runs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::prelude::*;
use tern_base::{SocketId, Timestamp, TxQueue};
use tern_udx::{Udx, UdxConfig, UdxEvent};

const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
/// Out-of-order bytes the three streams may hold between them (each alone may hold its
/// whole receive buffer).
const HELD_BUDGET: usize = 24 * 1024;
/// In-order budget, below what the 3 streams could buffer (64 KiB each).
const UNREAD_BUDGET: usize = 40 * 1024;

fn header(t: u8, off: u8, id: u32, rwnd: u32, seq: u32, ack: u32, body: &[u8]) -> Vec<u8> {
    let mut d = vec![0xff, 0x01, t, off];
    for x in [id, rwnd, seq, ack] {
        d.extend_from_slice(&x.to_le_bytes());
    }
    d.extend_from_slice(body);
    d
}

fn engine(recv_buffer: usize) -> (Udx, TxQueue) {
    let cfg = UdxConfig {
        recv_buffer,
        send_buffer: 64 * 1024,
        max_held_total: HELD_BUDGET,
        max_unread_total: UNREAD_BUDGET,
        min_recv_window: 4 * 1024,
        ..UdxConfig::default()
    };
    let mut u = Udx::new(cfg);
    let mut tx = TxQueue::new(32);
    let now = Timestamp::ZERO;
    for id in 1..=3 {
        u.create_stream(now, id).unwrap();
    }
    u.connect(now, 1, SocketId::SERVER, 100, PEER, &mut tx).unwrap();
    u.connect(now, 2, SocketId::SERVER, 200, PEER, &mut tx).unwrap();
    u.write(now, 1, &[1u8; 20_000], &mut tx).unwrap();
    u.connect_on_first_packet(3, 300).unwrap();
    (u, tx)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(dgrams in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1600), 1..40)) {
        let (mut u, mut tx) = engine(64 * 1024);
        let mut t = 0u64;
        for d in dgrams {
            t += 1_000_000;
            let now = Timestamp::from_nanos(t);
            let _ = u.handle_datagram(now, SocketId::SERVER, PEER, &d, &mut tx);
            tx.clear();
            u.handle_timeout(now, &mut tx);
            tx.clear();
        }
        prop_assert!(u.len() <= 3);
    }

    #[test]
    fn hostile_headers_keep_bounds(
        pkts in prop::collection::vec(
            (0u8..64, any::<u8>(), 1u32..4, any::<u32>(), any::<u32>(), any::<u32>(), 0usize..1500, 0u64..3_000_000_000),
            1..200,
        ),
        small_seq in any::<bool>(),
    ) {
        let (mut u, mut tx) = engine(16 * 1024);
        let mut t = 0u64;
        let body = vec![0x5au8; 1500];
        for (ty, off, id, rwnd, seq, ack, len, dt) in pkts {
            t += dt / 1000;
            let now = Timestamp::from_nanos(t);
            let seq = if small_seq { seq % 64 } else { seq };
            let ack = if small_seq { ack % 64 } else { ack };
            let d = header(ty, off, id, rwnd, seq, ack, &body[..len]);
            prop_assert!(u.handle_datagram(now, SocketId::SERVER, PEER, &d, &mut tx) || !u.contains(id));
            prop_assert!(tx.len() <= 32);
            prop_assert!(u.held_bytes() <= HELD_BUDGET);
            // In-order bytes: the budget, plus at most each stream's floor past it.
            prop_assert!(u.unread_bytes() <= UNREAD_BUDGET + 3 * 4 * 1024);
            tx.clear();
            if u.poll_timeout() <= now {
                u.handle_timeout(now, &mut tx);
                tx.clear();
            }
            let mut buf = [0u8; 4096];
            for sid in 1..=3 {
                let _ = u.read(sid, &mut buf);
                if let Some(s) = u.stream_stats(sid) {
                    // Nothing the peer sends can grow our windows past the limits.
                    prop_assert!(s.cwnd <= 1 << 20);
                    prop_assert!(s.mtu <= 1500);
                }
            }
            let mut messages = 0;
            while let Some(e) = u.poll_event() {
                if matches!(e, UdxEvent::Message { .. }) {
                    messages += 1;
                }
            }
            prop_assert!(messages <= 4096);
        }
        // Every stream's share goes back when it closes (the count would underflow, and
        // panic in this debug build, if any were returned twice).
        for id in 1..=3 {
            u.destroy(Timestamp::from_nanos(t), id, &mut tx);
            tx.clear();
        }
        prop_assert_eq!(u.held_bytes(), 0);
        prop_assert_eq!(u.unread_bytes(), 0);
    }
}
