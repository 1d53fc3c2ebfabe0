//! The zero-copy send path: whole buffers handed to `write_chunk`, packets queued by
//! reference into a zero-copy `TxQueue` (header in the arena, payload a slice of the
//! buffer, joined only "on the wire"), under loss, reordering and duplication. Every
//! byte must arrive in order and intact, retransmissions included, and acknowledged
//! buffers must come back for reuse.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;

use harness::{App, Link, MS, Net, fnv, run_transfer};
use tern_udx::{CloseReason, UdxConfig};

const MIB: usize = 1 << 20;

/// A transfer both ways, side 0 writing whole chunks (1..20 000 bytes: packets both
/// inside one chunk and spanning several), side 1 copying.
fn transfer(link: Link, seed: u64, len: [usize; 2], limit_s: u64) {
    let mut net = Net::new(UdxConfig::default(), link, seed).zero_copy();
    net.pair(1, 2);
    let mut apps = [App::new(&mut net.rng, len[0]), App::new(&mut net.rng, len[1])];
    apps[0].chunked = true;
    run_transfer(&mut net, [1, 2], &mut apps, limit_s * 1000 * MS);
    for side in 0..2 {
        let other = 1 - side;
        assert_eq!(apps[other].received.len(), apps[side].data.len(), "side {side} bytes lost");
        assert_eq!(fnv(&apps[other].received), fnv(&apps[side].data), "side {side} corrupted");
    }
    assert_eq!(net.closed(0, 1), Some(CloseReason::Clean));
    assert_eq!(net.closed(1, 2), Some(CloseReason::Clean));
    assert!(apps[0].spent > 0, "acknowledged chunks come back");
    assert_eq!(apps[1].spent, 0, "copied writes hand nothing back");
    let retransmits = net.udx[0].stream_stats(1).map_or(0, |s| s.retransmits);
    eprintln!("spent {} chunks, {retransmits} retransmits", apps[0].spent);
}

#[test]
fn clean_link() {
    transfer(Link::new(10), 21, [4 * MIB, MIB], 60);
}

#[test]
fn loss_5_percent() {
    let mut l = Link::new(10);
    l.loss = 0.05;
    transfer(l, 22, [3 * MIB, MIB], 300);
}

#[test]
fn loss_20_percent() {
    let mut l = Link::new(10);
    l.loss = 0.20;
    transfer(l, 23, [MIB, MIB / 2], 900);
}

#[test]
fn loss_reorder_dup_combined() {
    let mut l = Link::new(15);
    l.loss = 0.05;
    l.reorder = 0.05;
    l.dup = 0.05;
    transfer(l, 24, [2 * MIB, MIB], 600);
}
