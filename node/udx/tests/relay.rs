//! relayTo through a third engine (spec §1.7): A <-> R1 relayTo R2 <-> B, end to end.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};

use tern_base::{SocketId, Timestamp, TxQueue};
use tern_udx::{CloseReason, Udx, UdxConfig, UdxEvent};

fn addr(last: u8) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), 1000)
}

/// Delivers every queued datagram to the engine owning its destination, until quiet.
/// Each datagram is a batch of its own: the engine's end-of-batch work (owed ACKs,
/// sent by `handle_timeout` once `poll_timeout` is due) follows it, as in a driver.
fn pump(
    engines: &mut [(SocketAddrV4, Udx)],
    tx: &mut TxQueue,
    now: Timestamp,
    from: usize,
) -> usize {
    let mut queue: Vec<(usize, SocketAddrV4, Vec<u8>)> =
        tx.iter().map(|(m, d)| (from, m.dest, d.to_vec())).collect();
    tx.clear();
    let mut n = 0;
    while let Some((src, dest, data)) = queue.pop() {
        n += 1;
        assert!(n < 1000);
        let from_addr = engines[src].0;
        let Some(to) = engines.iter().position(|(a, _)| *a == dest) else { continue };
        let u = &mut engines[to].1;
        assert!(u.handle_datagram(now, SocketId::SERVER, from_addr, &data, tx));
        if u.poll_timeout() <= now {
            u.handle_timeout(now, tx);
        }
        queue.extend(tx.iter().map(|(m, d)| (to, m.dest, d.to_vec())));
        tx.clear();
    }
    n
}

#[test]
fn relay_forwards_end_to_end() {
    let now = Timestamp::from_millis(1);
    let mut tx = TxQueue::new(64);
    let mut e = vec![
        (addr(1), Udx::new(UdxConfig::default())),
        (addr(2), Udx::new(UdxConfig::default())),
        (addr(3), Udx::new(UdxConfig::default())),
    ];
    let (a, r1, r2, b) = (0xa001, 0xe001, 0xe002, 0xb001);
    e[0].1.create_stream(now, a).unwrap();
    e[0].1.connect(now, a, SocketId::SERVER, r1, addr(2), &mut tx).unwrap();
    for id in [r1, r2] {
        e[1].1.create_stream(now, id).unwrap();
    }
    e[1].1.connect(now, r1, SocketId::SERVER, a, addr(1), &mut tx).unwrap();
    e[1].1.connect(now, r2, SocketId::SERVER, b, addr(3), &mut tx).unwrap();
    e[1].1.relay_to(r1, r2).unwrap();
    e[1].1.relay_to(r2, r1).unwrap();
    e[2].1.create_stream(now, b).unwrap();
    e[2].1.connect(now, b, SocketId::SERVER, r2, addr(2), &mut tx).unwrap();
    assert!(tx.is_empty());

    e[0].1.write(now, a, b"through-relay", &mut tx).unwrap();
    let n = pump(&mut e, &mut tx, now, 0);
    assert_eq!(n, 4, "DATA A->R, R->B, ACK B->R, R->A");
    let mut buf = [0u8; 64];
    let got = e[2].1.read(b, &mut buf).unwrap();
    assert_eq!(&buf[..got], b"through-relay");
    assert_eq!(e[0].1.stream_stats(a).unwrap().inflight, 0, "A got B's ACK via the relay");

    e[0].1.destroy(now, a, &mut tx);
    pump(&mut e, &mut tx, now, 0);
    let mut ev = Vec::new();
    while let Some(x) = e[1].1.poll_event() {
        ev.push(x);
    }
    assert!(ev.contains(&UdxEvent::Closed { id: r1, reason: CloseReason::Reset }));
    let mut evb = Vec::new();
    while let Some(x) = e[2].1.poll_event() {
        evb.push(x);
    }
    assert!(evb.contains(&UdxEvent::Closed { id: b, reason: CloseReason::Reset }));
}
