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
    for side in 0..2 {
        let other = 1 - side;
        assert_eq!(apps[other].received.len(), apps[side].data.len(), "side {side} bytes lost");
        assert_eq!(fnv(&apps[other].received), fnv(&apps[side].data), "side {side} corrupted");
        assert!(apps[other].read_ended, "side {other} saw no ReadEnded");
        let ev = &net.events[other];
        let re = ev.iter().position(|e| matches!(e, UdxEvent::ReadEnded { .. }));
        let cl = ev.iter().position(|e| matches!(e, UdxEvent::Closed { .. }));
        assert!(re < cl, "ReadEnded before Closed");
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
