//! ACK coalescing: a receiver answers a batch of datagrams (everything a driver reads
//! in one loop turn, followed by `handle_timeout`) with one ACK per stream instead of
//! one per DATA packet, and the sender loses nothing by it: the same bytes arrive, and
//! losses inside a batch are still reported (one SACK) and recovered.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use std::net::{Ipv4Addr, SocketAddrV4};

use harness::{App, Link, MS, Net, fnv, run_transfer};
use tern_base::{SocketId, Timestamp, TxQueue};
use tern_udx::{Udx, UdxConfig};

const A: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1000);
const B: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 2000);

/// A connected pair: engine A (stream 1) and B (stream 2), and A's first flight of
/// `len` bytes as raw datagrams.
fn pair_with_flight(len: usize) -> (Udx, Udx, Vec<Vec<u8>>) {
    let now = Timestamp::from_millis(1);
    let (mut a, mut b) = (Udx::new(UdxConfig::default()), Udx::new(UdxConfig::default()));
    let mut tx = TxQueue::new(1024);
    a.create_stream(now, 1).unwrap();
    b.create_stream(now, 2).unwrap();
    a.connect(now, 1, SocketId::SERVER, 2, B, &mut tx).unwrap();
    b.connect(now, 2, SocketId::SERVER, 1, A, &mut tx).unwrap();
    assert!(tx.is_empty());
    a.write(now, 1, &vec![7u8; len], &mut tx).unwrap();
    let flight = tx.iter().map(|(_, d)| d.to_vec()).collect();
    (a, b, flight)
}

/// Feeds `datagrams` to `u` as one batch; returns what it sent while reading and what
/// it sent at the end of the batch.
fn batch(u: &mut Udx, from: SocketAddrV4, datagrams: &[Vec<u8>]) -> (usize, Vec<Vec<u8>>) {
    let now = Timestamp::from_millis(2);
    let mut tx = TxQueue::new(1024);
    for d in datagrams {
        assert!(u.handle_datagram(now, SocketId::SERVER, from, d, &mut tx));
    }
    let during = tx.len();
    tx.clear();
    // The driver's end of the batch: an owed ACK makes the engine due at once.
    if u.poll_timeout() <= now {
        u.handle_timeout(now, &mut tx);
    }
    (during, tx.iter().map(|(_, d)| d.to_vec()).collect())
}

fn ack_field(d: &[u8]) -> u32 {
    u32::from_le_bytes(d[16..20].try_into().unwrap())
}

#[test]
fn one_ack_answers_a_whole_batch() {
    let (mut a, mut b, flight) = pair_with_flight(10_000);
    let n = flight.len();
    assert!(n >= 8, "{n} packets");
    let (during, after) = batch(&mut b, A, &flight);
    assert_eq!(during, 0, "no ACK while the batch is being read");
    assert_eq!(after.len(), 1, "one ACK for {n} DATA packets");
    assert_eq!(after[0][2], 0, "a plain ACK");
    assert_eq!(ack_field(&after[0]), n as u32, "it acknowledges every packet");
    let mut buf = vec![0u8; 20_000];
    assert_eq!(b.read(2, &mut buf).unwrap(), 10_000);
    // The sender takes the one ACK as acknowledging everything.
    batch(&mut a, B, &after);
    assert_eq!(a.stream_stats(1).unwrap().inflight, 0);
}

#[test]
fn a_gap_in_a_batch_is_reported_by_one_sack_and_repaired() {
    let (mut a, mut b, mut flight) = pair_with_flight(10_000);
    let n = flight.len();
    let lost = flight.remove(2);
    let (_, after) = batch(&mut b, A, &flight);
    assert_eq!(after.len(), 1, "one SACK for the batch");
    assert_eq!(after[0][2] & 0x04, 0x04, "SACK flag: out-of-order data is held");
    assert_eq!(ack_field(&after[0]), 2, "cumulative ack stops at the gap");
    // The repair: the missing packet arrives; one ACK now covers all of them.
    let (_, after) = batch(&mut b, A, &[lost]);
    assert_eq!(after.len(), 1);
    assert_eq!(ack_field(&after[0]), n as u32);
    let mut buf = vec![0u8; 20_000];
    assert_eq!(b.read(2, &mut buf).unwrap(), 10_000);
    batch(&mut a, B, &after);
    assert_eq!(a.stream_stats(1).unwrap().inflight, 0);
}

/// A one-way transfer through the harness to a receiver that reads its socket once per
/// millisecond (what a busy driver thread does), so what arrived meanwhile is one
/// batch. Returns (DATA packets A sent, pure ACKs B sent).
fn one_way(loss: f64, seed: u64) -> (usize, usize) {
    let mut link = Link::new(5);
    link.loss = loss;
    link.batch = MS;
    let mut net = Net::new(UdxConfig::default(), link, seed);
    net.capture = true;
    net.pair(1, 2);
    let mut apps = [App::new(&mut net.rng, 2 << 20), App::new(&mut net.rng, 0)];
    run_transfer(&mut net, [1, 2], &mut apps, 300_000 * MS);
    assert_eq!(apps[1].received.len(), apps[0].data.len(), "loss {loss}: bytes lost");
    assert_eq!(fnv(&apps[1].received), fnv(&apps[0].data), "loss {loss}: corrupted");
    let data = net.sent[0].iter().filter(|d| d[2] & 0x01 != 0).count();
    let acks = net.sent[1].iter().filter(|d| d[2] & !0x04 == 0).count();
    (data, acks)
}

#[test]
fn transfers_need_far_fewer_acks_and_still_recover_from_loss() {
    for (loss, seed) in [(0.0, 11), (0.05, 12), (0.20, 13)] {
        let (data, acks) = one_way(loss, seed);
        eprintln!("loss {loss}: {data} DATA packets, {acks} ACKs");
        // Under heavy loss more batches hold a lone retransmission, each answered.
        let ratio = if loss == 0.0 { 10 } else { 2 };
        assert!(acks * ratio < data, "loss {loss}: {acks} ACKs for {data} DATA packets");
    }
}

/// A sink that records what it was given and how often it was flushed.
#[derive(Debug, Default)]
struct CountingSink {
    got: std::sync::Arc<std::sync::Mutex<(Vec<u8>, usize)>>,
}

impl tern_udx::RecvSink for CountingSink {
    fn deliver(&mut self, data: &[u8]) -> bool {
        self.got.lock().unwrap().0.extend_from_slice(data);
        true
    }

    fn flush(&mut self) {
        self.got.lock().unwrap().1 += 1;
    }

    fn buffered(&self) -> usize {
        0
    }
}

#[test]
fn a_sink_is_flushed_and_readable_raised_once_per_batch() {
    let (_a, mut b, flight) = pair_with_flight(10_000);
    let n = flight.len();
    let sink = CountingSink::default();
    let got = sink.got.clone();
    b.set_sink(2, Box::new(sink)).unwrap();
    let readable = |u: &mut Udx| {
        std::iter::from_fn(|| u.poll_event())
            .filter(|e| matches!(e, tern_udx::UdxEvent::Readable { .. }))
            .count()
    };
    // Packet by packet the sink takes the bytes, but hears of the batch's end only once.
    let now = Timestamp::from_millis(2);
    let mut tx = TxQueue::new(1024);
    for d in &flight {
        assert!(b.handle_datagram(now, SocketId::SERVER, A, d, &mut tx));
    }
    assert_eq!(got.lock().unwrap().1, 0, "no flush while the batch is being read");
    assert_eq!(readable(&mut b), 0, "no Readable while the batch is being read");
    assert!(b.poll_timeout() <= now);
    b.handle_timeout(now, &mut tx);
    assert_eq!(got.lock().unwrap().1, 1, "one flush for {n} packets");
    assert_eq!(readable(&mut b), 1, "one Readable for {n} packets");
    assert_eq!(got.lock().unwrap().0, vec![7u8; 10_000], "every byte, in order");
    // An explicit flush reaches the sink too.
    b.flush_sink(2);
    assert_eq!(got.lock().unwrap().1, 2);
}

#[test]
fn loss_and_flow_control_are_counted_and_survive_the_close() {
    // 5 % loss: retransmissions and fast recoveries on the sender, nothing refused by a
    // receiver that keeps reading. The counters outlive the streams (engine totals).
    let mut link = Link::new(5);
    link.loss = 0.05;
    let mut net = Net::new(UdxConfig::default(), link, 21);
    net.pair(1, 2);
    let mut apps = [App::new(&mut net.rng, 2 << 20), App::new(&mut net.rng, 0)];
    run_transfer(&mut net, [1, 2], &mut apps, 300_000 * MS);
    assert_eq!(fnv(&apps[1].received), fnv(&apps[0].data));
    assert!(!net.udx[0].contains(1), "the sender's stream closed");
    let (a, b) = (net.udx[0].totals(), net.udx[1].totals());
    assert_eq!(a.bytes_sent, 2 << 20);
    assert_eq!(b.bytes_received, 2 << 20);
    assert!(a.retransmits > 0 && a.fast_recoveries > 0, "sender: {a:?}");
    assert!(a.fast_recoveries <= a.retransmits, "{a:?}");
    assert_eq!(b.packets_refused, 0, "the reader kept up: {b:?}");

    // A receiver with a tiny buffer that never reads: the window closes, the sender
    // probes it, and what does not fit is refused.
    let cfg = UdxConfig { recv_buffer: 16 << 10, ..UdxConfig::default() };
    let mut net = Net::new(cfg, Link::new(5), 22);
    net.pair(1, 2);
    let now = net.t();
    net.udx[0].write(now, 1, &vec![1u8; 256 << 10], &mut net.tx).unwrap();
    net.drain(0);
    // Three seconds of virtual time: long enough for probes, short of the timeouts
    // that end a stream whose packets keep being refused.
    while net.now < 3_000 * MS && net.step() {}
    let (a, b) = (net.udx[0].stream_stats(1).unwrap(), net.udx[1].stream_stats(2).unwrap());
    assert!(a.zero_window_probes > 0, "the closed window was probed: {a:?}");
    assert!(b.bytes_received <= 16 << 10, "{b:?}");
    assert_eq!(net.udx[0].totals().zero_window_probes, a.zero_window_probes);
}
