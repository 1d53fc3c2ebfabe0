//! The engine-wide bound on in-order bytes waiting for their readers
//! (`UdxConfig::max_unread_total`): streams whose readers do not read buffer no more than
//! the budget between them, each keeps at least `min_recv_window`, the squeezed ones
//! advertise the smaller window, and room comes back when a reader drains — through
//! `read`, or on the reader's own thread behind a sink, which the engine only sees when
//! it recounts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tern_base::{SocketId, Timestamp, TxQueue};
use tern_udx::{RecvSink, Udx, UdxConfig};
use tern_wire::Encode;
use tern_wire::udx::{UDX_DATA, UdxHeader, UdxPacket};

const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
const STREAMS: u32 = 16;
const BUFFER: usize = 256 * 1024;
const BUDGET: usize = 1_000_000;
const FLOOR: usize = 32 * 1024;
const BODY: usize = 1000;

/// DATA packet `seq` from the peer of stream `id`, with a wide-open window.
fn data(id: u32, seq: u32) -> Vec<u8> {
    let header = UdxHeader { type_flags: UDX_DATA, data_offset: 0, id, rwnd: 1 << 20, seq, ack: 0 };
    let mut d = header.to_vec();
    d.extend_from_slice(&[0x5a; BODY]);
    d
}

fn engine() -> (Udx, TxQueue) {
    let cfg = UdxConfig {
        recv_buffer: BUFFER,
        max_unread_total: BUDGET,
        min_recv_window: FLOOR,
        ..UdxConfig::default()
    };
    let mut u = Udx::new(cfg);
    let mut tx = TxQueue::new(1024);
    for id in 1..=STREAMS {
        u.create_stream(Timestamp::ZERO, id).unwrap();
        u.connect(Timestamp::ZERO, id, SocketId::SERVER, id + 1000, PEER, &mut tx).unwrap();
    }
    tx.clear();
    (u, tx)
}

/// Offers stream `id` its next packets (from `next[id]`) until one is refused or `max`
/// went in; returns how many went in.
fn feed(u: &mut Udx, tx: &mut TxQueue, now: Timestamp, next: &mut [u32], id: u32, max: u32) -> u32 {
    let mut taken = 0;
    while taken < max {
        let before = u.totals().packets_refused;
        assert!(u.handle_datagram(now, SocketId::SERVER, PEER, &data(id, next[id as usize]), tx));
        if u.totals().packets_refused > before {
            break;
        }
        next[id as usize] += 1;
        taken += 1;
    }
    taken
}

/// The receive window of the last ACK stream `id` sent (to its peer's id `id + 1000`).
fn last_window(tx: &TxQueue, id: u32) -> Option<u32> {
    tx.iter()
        .filter_map(|(_, b)| UdxPacket::decode(&b).ok().map(|p| p.header))
        .filter(|h| h.id == id + 1000)
        .map(|h| h.rwnd)
        .last()
}

#[test]
fn unread_bytes_of_many_streams_stay_within_the_budget() {
    let (mut u, mut tx) = engine();
    let now = Timestamp::from_nanos(1_000_000);
    let mut next = vec![0u32; STREAMS as usize + 1];
    // Nobody reads. Each stream alone could buffer 256 KiB (4 MiB in all); round after
    // round every stream is offered 8 more packets.
    for _ in 0..64 {
        for id in 1..=STREAMS {
            feed(&mut u, &mut tx, now, &mut next, id, 8);
            assert!(u.unread_bytes() <= BUDGET, "{} unread", u.unread_bytes());
        }
        tx.clear();
    }
    assert!(u.unread_bytes() > BUDGET - 2 * BODY, "the budget fills: {}", u.unread_bytes());
    assert_eq!(u.totals().unread_bytes, u.unread_bytes() as u64, "the gauge is the count");
    for id in 1..=STREAMS {
        let got = u.readable(id);
        assert!(got >= FLOOR - BODY, "stream {id} has only {got}: none starves");
        assert!(got < BUFFER / 2, "stream {id} has {got}: the budget, not its buffer, binds");
    }

    // A squeezed stream says so in its window: stream 3 is offered one more packet and
    // refuses it, and its ACK advertises no room for it.
    assert_eq!(feed(&mut u, &mut tx, now, &mut next, 3, 1), 0);
    u.handle_timeout(now, &mut tx);
    let window = last_window(&tx, 3).expect("stream 3 acknowledged");
    assert!((window as usize) < BODY, "window {window} while squeezed");
    tx.clear();

    // A reader that drains returns its bytes to the budget, and another stream may use
    // them: stream 1 reads everything, stream 2 takes more than it had.
    let mut buf = vec![0u8; BUFFER];
    let read = u.read(1, &mut buf).unwrap();
    assert!(read > FLOOR - BODY);
    assert!(u.unread_bytes() <= BUDGET - read + BODY);
    let had = u.readable(2);
    assert!(feed(&mut u, &mut tx, now, &mut next, 2, 1000) > 0);
    assert!(u.readable(2) > had + read / 2, "stream 2 grew into the freed room");
    assert!(u.unread_bytes() <= BUDGET);

    // Closing streams returns everything.
    for id in 1..=STREAMS {
        u.destroy(now, id, &mut tx);
    }
    assert_eq!(u.unread_bytes(), 0);
    assert_eq!(u.totals().unread_bytes, 0);
}

/// A sink whose reader runs elsewhere: `buffered` drops when the test "reads".
#[derive(Debug)]
struct Sink(Arc<AtomicUsize>);

impl RecvSink for Sink {
    fn deliver(&mut self, data: &[u8]) -> bool {
        self.0.fetch_add(data.len(), Ordering::Relaxed);
        true
    }

    fn buffered(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

#[test]
fn a_reader_draining_behind_a_sink_frees_room_once_the_engine_recounts() {
    let (mut u, mut tx) = engine();
    let mut now = Timestamp::from_nanos(1_000_000);
    let held: Vec<Arc<AtomicUsize>> =
        (0..=STREAMS).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for id in 1..=STREAMS {
        u.set_sink(id, Box::new(Sink(held[id as usize].clone()))).unwrap();
    }
    let mut next = vec![0u32; STREAMS as usize + 1];
    for _ in 0..64 {
        for id in 1..=STREAMS {
            feed(&mut u, &mut tx, now, &mut next, id, 8);
        }
        tx.clear();
    }
    let total: usize = held.iter().map(|h| h.load(Ordering::Relaxed)).sum();
    assert!(total <= BUDGET && total > BUDGET - 2 * BODY, "{total} in the sinks");
    assert_eq!(feed(&mut u, &mut tx, now, &mut next, 2, 1), 0, "stream 2 is squeezed");

    // Streams 3..=16's readers drain on their own threads; the engine has not looked.
    for h in &held[3..] {
        h.store(0, Ordering::Relaxed);
    }
    // Within the recount interval stream 2 is still held to its old share ...
    now = Timestamp::from_nanos(now.as_nanos() + 10_000_000);
    assert_eq!(feed(&mut u, &mut tx, now, &mut next, 2, 1), 0, "not recounted yet");
    // ... and once it has passed, the recount finds the room.
    now = Timestamp::from_nanos(now.as_nanos() + 50_000_000);
    let before = held[2].load(Ordering::Relaxed);
    assert!(feed(&mut u, &mut tx, now, &mut next, 2, 1000) > 0, "room again");
    let grown = held[2].load(Ordering::Relaxed);
    assert!(grown > before + 4 * FLOOR, "{before} -> {grown}");
    assert!(grown <= BUFFER);
    assert_eq!(u.unread_bytes(), held.iter().map(|h| h.load(Ordering::Relaxed)).sum::<usize>());
}
