//! Bulk transfers through the virtual-time harness under loss, reordering, duplication
//! and MTU changes: every byte must arrive in order, and both sides close cleanly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{App, Link, MS, Net, fnv, run_transfer};
use tern_udx::{CloseReason, UdxConfig, UdxEvent};

const MIB: usize = 1 << 20;

fn transfer(link: Link, seed: u64, len: [usize; 2], limit_s: u64) -> Net {
    let mut net = Net::new(UdxConfig::default(), link, seed);
    net.pair(1, 2);
    let mut apps = [App::new(&mut net.rng, len[0]), App::new(&mut net.rng, len[1])];
    let end = run_transfer(&mut net, [1, 2], &mut apps, limit_s * 1000 * MS);
    eprintln!(
        "end {} ms; recv {} / {}; stats A {:?} B {:?}; events A {:?} B {:?}; timeouts {:?}",
        end / MS,
        apps[1].received.len(),
        apps[0].received.len(),
        net.udx[0].stream_stats(1),
        net.udx[1].stream_stats(2),
        net.events[0]
            .iter()
            .filter(|e| !matches!(e, UdxEvent::Readable { .. }))
            .collect::<Vec<_>>(),
        net.events[1]
            .iter()
            .filter(|e| !matches!(e, UdxEvent::Readable { .. }))
            .collect::<Vec<_>>(),
        [net.udx[0].poll_timeout(), net.udx[1].poll_timeout()],
    );
    for side in 0..2 {
        let other = 1 - side;
        assert_eq!(apps[other].received.len(), apps[side].data.len(), "side {side} bytes lost");
        assert_eq!(fnv(&apps[other].received), fnv(&apps[side].data), "side {side} corrupted");
        let ev = &net.events[other];
        let re = ev.iter().position(|e| matches!(e, UdxEvent::ReadEnded { .. }));
        let cl = ev.iter().position(|e| matches!(e, UdxEvent::Closed { .. }));
        assert!(re.is_some() && re < cl, "side {other}: ReadEnded, then Closed");
    }
    assert_eq!(net.closed(0, 1), Some(CloseReason::Clean));
    assert_eq!(net.closed(1, 2), Some(CloseReason::Clean));
    eprintln!("virtual time {} ms", end / MS);
    net
}

#[test]
fn clean_link_4mib_both_ways() {
    transfer(Link::new(10), 1, [4 * MIB, 4 * MIB + 17], 60);
}

#[test]
fn loss_5_percent() {
    let mut l = Link::new(10);
    l.loss = 0.05;
    transfer(l, 2, [4 * MIB, 3 * MIB + 5], 300);
}

#[test]
fn loss_20_percent() {
    let mut l = Link::new(10);
    l.loss = 0.20;
    transfer(l, 3, [MIB, MIB + 999], 900);
}

#[test]
fn reordering() {
    let mut l = Link::new(20);
    l.reorder = 0.1;
    transfer(l, 4, [2 * MIB, 2 * MIB], 300);
}

#[test]
fn duplication() {
    let mut l = Link::new(5);
    l.dup = 0.1;
    transfer(l, 5, [2 * MIB, 2 * MIB], 300);
}

#[test]
fn loss_reorder_dup_combined() {
    let mut l = Link::new(15);
    l.loss = 0.05;
    l.reorder = 0.05;
    l.dup = 0.05;
    transfer(l, 6, [MIB, MIB], 600);
}
