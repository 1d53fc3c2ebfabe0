//! The shard's turn logic on a scripted backend: the paths real loopback sockets
//! cannot reach (a full send buffer: loopback hands datagrams over synchronously, so
//! `sendmmsg` never returns EAGAIN there), and the `Backend` seam itself.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tern_base::{Endpoint, SocketId, SocketSpec, Timestamp, TxQueue};
use tern_udp::{OutDatagram, RecvBatch, SendBatch, SendOutcome, SocketOptions, UdpSocket};

use super::*;

/// Accepts `room` datagrams, then reports EAGAIN; records what it "sent".
#[derive(Default)]
struct Fake {
    room: usize,
    sent: Vec<Vec<u8>>,
    writable: Vec<(u64, bool)>,
}

impl Backend for Fake {
    type Rx = RecvBatch;
    fn register_waker(&mut self, _: BorrowedFd<'_>, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn register(&mut self, _: BorrowedFd<'_>, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn set_writable(&mut self, _: BorrowedFd<'_>, token: u64, on: bool) -> io::Result<()> {
        self.writable.push((token, on));
        Ok(())
    }
    fn deregister(&mut self, _: BorrowedFd<'_>) -> io::Result<()> {
        Ok(())
    }
    fn wait(
        &mut self,
        _: Option<Duration>,
        _: &mut RecvBatch,
        _: &mut Vec<Ready>,
    ) -> io::Result<()> {
        Ok(())
    }
    fn send<'a, I>(
        &mut self,
        _: &UdpSocket,
        batch: &mut SendBatch,
        items: &mut std::iter::Peekable<I>,
    ) -> SendOutcome
    where
        I: Iterator<Item = OutDatagram<'a>>,
    {
        let mut out = SendOutcome::default();
        for d in items.by_ref().take(batch.capacity()) {
            out.loaded += 1;
            if self.room == 0 || out.would_block {
                out.would_block = true;
                continue;
            }
            self.room -= 1;
            self.sent.push(d.data.to_vec());
            out.sent += 1;
        }
        out
    }
}

/// Sends `n` numbered datagrams per command.
struct Burst {
    next: u32,
}

impl Endpoint for Burst {
    type Command = u32;
    fn sockets(&self) -> Vec<SocketSpec> {
        Vec::new()
    }
    fn bound(&mut self, _: Timestamp, _: &[SocketAddrV4], _: &mut TxQueue) {}
    fn handle_datagram(
        &mut self,
        _: Timestamp,
        _: SocketId,
        _: SocketAddrV4,
        _: &[u8],
        _: &mut TxQueue,
    ) {
    }
    fn handle_command(&mut self, _: Timestamp, n: u32, tx: &mut TxQueue) {
        let dest = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
        for _ in 0..n {
            assert!(tx.push(SocketId::SERVER, dest, &self.next.to_be_bytes()));
            self.next += 1;
        }
    }
    fn handle_timeout(&mut self, _: Timestamp, _: &mut TxQueue) {}
    fn poll_timeout(&self) -> Timestamp {
        Timestamp::NEVER
    }
}

type TestShard = Shard<Burst, Fake>;

fn shard(limits: WorkLimits) -> (TestShard, crossbeam_channel::Sender<Msg<Burst>>) {
    let (tx, rx) = crossbeam_channel::bounded(16);
    let shared = Arc::new(ThreadShared::new().unwrap());
    let config = ShardConfig {
        recv_slots: 8,
        slot_len: 2048,
        max_datagram: 2048,
        send_batch: 16,
        tx_capacity: 4096,
        limits,
        socket_options: SocketOptions::default(),
    };
    let mut shard =
        Shard::new(Fake::default(), RecvBatch::new(8, 2048), Clock::new(), shared, rx, config)
            .unwrap();
    let socket =
        UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &SocketOptions::default())
            .unwrap();
    let alive = Arc::new(AtomicBool::new(true));
    let new = NewEndpoint {
        id: 7,
        endpoint: Burst { next: 0 },
        sockets: vec![(SocketId::SERVER, socket)],
        alive,
    };
    shard.add(Timestamp::ZERO, new);
    shard.settle();
    (shard, tx)
}

/// Runs one turn with `ready` as the wait's result.
fn turn(shard: &mut TestShard, ready: &[Ready]) {
    shard.ready.clear();
    shard.ready.extend_from_slice(ready);
    shard.turn();
}

fn command(shard: &mut TestShard, mailbox: &crossbeam_channel::Sender<Msg<Burst>>, n: u32) {
    mailbox.send(Msg::Command { id: 7, command: n }).unwrap();
    turn(shard, &[Ready { token: WAKER_TOKEN, readable: true, writable: false }]);
}

fn numbers(sent: &[Vec<u8>]) -> Vec<u32> {
    sent.iter().map(|d| u32::from_be_bytes(d.as_slice().try_into().unwrap())).collect()
}

#[test]
fn a_full_send_buffer_parks_datagrams_until_writable_in_order() {
    let (mut shard, mailbox) = shard(WorkLimits::default());
    let t = token(0, 0, 0);
    shard.backend.room = 10;
    command(&mut shard, &mailbox, 100);
    assert_eq!(shard.backend.sent.len(), 10);
    assert_eq!(shard.backend.writable, [(t, true)]);
    assert_eq!(shard.stats.send_blocked, 1);
    // New datagrams queue behind the parked ones, even though the fake has room.
    shard.backend.room = 1000;
    command(&mut shard, &mailbox, 5);
    assert_eq!(shard.backend.sent.len(), 10);
    turn(&mut shard, &[Ready { token: t, readable: false, writable: true }]);
    assert_eq!(numbers(&shard.backend.sent), (0..105).collect::<Vec<_>>());
    assert_eq!(shard.backend.writable, [(t, true), (t, false)]);
    assert_eq!(shard.stats.datagrams_sent, 105);
    assert_eq!(shard.stats.backlog_dropped, 0);
}

#[test]
fn the_backlog_is_bounded() {
    let limits = WorkLimits { backlog_datagrams: 50, ..WorkLimits::default() };
    let (mut shard, mailbox) = shard(limits);
    command(&mut shard, &mailbox, 100);
    assert_eq!(shard.backend.sent.len(), 0);
    assert_eq!(shard.stats.backlog_dropped, 50);
    // A writable event with still no room sends nothing and keeps the interest.
    turn(&mut shard, &[Ready { token: token(0, 0, 0), readable: false, writable: true }]);
    assert_eq!(shard.backend.sent.len(), 0);
    assert_eq!(shard.backend.writable, [(token(0, 0, 0), true)]);
}

#[test]
fn stale_tokens_and_unknown_commands_are_ignored() {
    let (mut shard, mailbox) = shard(WorkLimits::default());
    shard.backend.room = 10;
    // Wrong generation and a slot that does not exist.
    turn(&mut shard, &[Ready { token: token(0, 1, 0), readable: true, writable: true }]);
    turn(&mut shard, &[Ready { token: token(5, 0, 0), readable: true, writable: true }]);
    mailbox.send(Msg::Command { id: 99, command: 3 }).unwrap();
    turn(&mut shard, &[Ready { token: WAKER_TOKEN, readable: true, writable: false }]);
    assert_eq!(shard.stats.commands_dropped, 1);
    assert!(shard.backend.sent.is_empty());
}

#[test]
fn tokens_round_trip() {
    assert_eq!(untoken(token(123_456, 65_535, 63)), (123_456, 65_535, 63));
    assert_ne!(token(u32::MAX - 1, u16::MAX, 0xffff), WAKER_TOKEN);
}
