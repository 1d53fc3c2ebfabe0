//! The engine-wide bound on out-of-order data (`UdxConfig::max_held_total`): many
//! streams whose peers only ever send far-ahead packets hold no more than the budget
//! between them, filling a gap releases its stream's share, closing a stream releases
//! the rest, and in-order data keeps flowing while the budget is spent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};

use tern_base::{SocketId, Timestamp, TxQueue};
use tern_udx::{Udx, UdxConfig};
use tern_wire::Encode;
use tern_wire::udx::{UDX_DATA, UdxHeader};

const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
const STREAMS: u32 = 16;
const BUDGET: usize = 200_000;

/// A DATA packet from the peer of stream `id`, with a wide-open window.
fn data(id: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let header = UdxHeader { type_flags: UDX_DATA, data_offset: 0, id, rwnd: 1 << 20, seq, ack: 0 };
    let mut d = header.to_vec();
    d.extend_from_slice(body);
    d
}

fn engine() -> (Udx, TxQueue) {
    // Each stream alone could hold 256 KiB out of order; together they may hold BUDGET.
    let cfg = UdxConfig { recv_buffer: 256 * 1024, max_held_total: BUDGET, ..UdxConfig::default() };
    let mut u = Udx::new(cfg);
    let mut tx = TxQueue::new(64);
    for id in 1..=STREAMS {
        u.create_stream(Timestamp::ZERO, id).unwrap();
        u.connect(Timestamp::ZERO, id, SocketId::SERVER, id + 1000, PEER, &mut tx).unwrap();
    }
    tx.clear();
    (u, tx)
}

#[test]
fn far_ahead_data_of_many_streams_stays_within_the_engine_budget() {
    let (mut u, mut tx) = engine();
    let now = Timestamp::from_nanos(1_000_000);
    let body = [0x5a; 1000];
    // Every stream's peer withholds seq 0 and sends 100 packets after it: 1.6 MB offered,
    // each stream's own buffer would take all of its 100 KB.
    for seq in 1..=100 {
        for id in 1..=STREAMS {
            assert!(u.handle_datagram(now, SocketId::SERVER, PEER, &data(id, seq, &body), &mut tx));
            assert!(u.held_bytes() <= BUDGET, "{} held", u.held_bytes());
            tx.clear();
        }
    }
    assert!(u.held_bytes() > BUDGET - 2 * 1100, "the budget fills up: {}", u.held_bytes());
    let totals = u.totals();
    assert!(totals.packets_refused > 1000, "{} refused", totals.packets_refused);
    assert_eq!(totals.held_bytes, u.held_bytes() as u64, "the gauge is the engine's count");

    // In-order data still gets in while the budget is spent: stream 1's gap filler
    // releases what stream 1 held.
    let held_1 = u.held_bytes();
    assert!(u.handle_datagram(now, SocketId::SERVER, PEER, &data(1, 0, &body), &mut tx));
    tx.clear();
    assert!(u.held_bytes() < held_1, "filling the gap frees stream 1's share");
    assert!(u.readable(1) >= 1000);
    let mut buf = vec![0u8; 256 * 1024];
    let read = u.read(1, &mut buf).unwrap();
    assert_eq!(read % 1000, 0);
    assert!(buf[..read].iter().all(|&b| b == 0x5a));

    // The freed room goes to whoever asks next.
    let before = u.held_bytes();
    assert!(u.handle_datagram(now, SocketId::SERVER, PEER, &data(2, 500, &body), &mut tx));
    tx.clear();
    assert!(u.held_bytes() > before);

    // Closing streams returns their held data to the budget.
    for id in 1..=STREAMS {
        u.destroy(now, id, &mut tx);
        tx.clear();
    }
    assert_eq!(u.held_bytes(), 0);
    assert_eq!(u.totals().held_bytes, 0, "closed streams leave the gauge");
}
