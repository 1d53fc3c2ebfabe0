//! A scriptable test endpoint and a loopback client for the driver tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tern_base::{Endpoint, SocketId, SocketSpec, Timestamp, TxQueue};
use tern_udp::{OutDatagram, RecvBatch, SendBatch, SocketOptions, UdpSocket};

pub const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// What a [`TestEp`] reports to the test thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Bound(Vec<SocketAddrV4>),
    Timeout { deadline: Timestamp, now: Timestamp },
    Num(u32),
}

/// Commands a [`TestEp`] understands.
#[derive(Debug)]
pub enum Cmd {
    /// Report the number back, in order.
    Num(u32),
    /// Send one datagram.
    SendTo { dest: SocketAddrV4, ttl: Option<u8>, data: Vec<u8> },
    /// Block the driver thread for a while (to let input pile up).
    Stall(Duration),
    /// Close: `is_closed` turns true.
    Close,
}

/// Echoes every datagram back from the socket it arrived on, prefixed with `prefix`;
/// optionally arms one timer `timer_after` after `bound`.
pub struct TestEp {
    pub specs: Vec<SocketSpec>,
    pub prefix: Vec<u8>,
    pub events: mpsc::Sender<Ev>,
    pub timer_after: Option<Duration>,
    deadline: Timestamp,
    closed: bool,
}

pub fn spec(id: SocketId, port: u16) -> SocketSpec {
    SocketSpec {
        id,
        bind: SocketAddrV4::new(LO, port),
        fallback_ports: &[],
        any_port: false,
        steer_udx_shards: 0,
    }
}

impl TestEp {
    pub fn echo(prefix: &[u8]) -> (Self, mpsc::Receiver<Ev>) {
        Self::with_specs(vec![spec(SocketId::SERVER, 0)], prefix)
    }

    pub fn with_specs(specs: Vec<SocketSpec>, prefix: &[u8]) -> (Self, mpsc::Receiver<Ev>) {
        let (tx, rx) = mpsc::channel();
        let ep = Self {
            specs,
            prefix: prefix.to_vec(),
            events: tx,
            timer_after: None,
            deadline: Timestamp::NEVER,
            closed: false,
        };
        (ep, rx)
    }
}

impl Endpoint for TestEp {
    type Command = Cmd;

    fn sockets(&self) -> Vec<SocketSpec> {
        self.specs.clone()
    }

    fn bound(&mut self, now: Timestamp, local: &[SocketAddrV4], _tx: &mut TxQueue) {
        if let Some(after) = self.timer_after {
            self.deadline = now + after;
        }
        let _ = self.events.send(Ev::Bound(local.to_vec()));
    }

    fn handle_datagram(
        &mut self,
        _now: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
        tx: &mut TxQueue,
    ) {
        let len = self.prefix.len() + data.len();
        tx.push_with(socket, from, None, len, |buf| {
            buf[..self.prefix.len()].copy_from_slice(&self.prefix);
            buf[self.prefix.len()..len].copy_from_slice(data);
            Some(len)
        });
    }

    fn handle_command(&mut self, _now: Timestamp, command: Cmd, tx: &mut TxQueue) {
        match command {
            Cmd::Num(n) => {
                let _ = self.events.send(Ev::Num(n));
            }
            Cmd::SendTo { dest, ttl, data } => {
                tx.push_with(SocketId::SERVER, dest, ttl, data.len(), |b| {
                    b.copy_from_slice(&data);
                    Some(data.len())
                });
            }
            Cmd::Stall(d) => std::thread::sleep(d),
            Cmd::Close => self.closed = true,
        }
    }

    fn handle_timeout(&mut self, now: Timestamp, _tx: &mut TxQueue) {
        if now >= self.deadline {
            let _ = self.events.send(Ev::Timeout { deadline: self.deadline, now });
            self.deadline = Timestamp::NEVER;
        }
    }

    fn poll_timeout(&self) -> Timestamp {
        self.deadline
    }

    fn is_closed(&self) -> bool {
        self.closed
    }
}

/// A plain loopback socket with batches, for the test side.
pub struct Client {
    pub socket: UdpSocket,
    rx: RecvBatch,
    tx: SendBatch,
}

impl Client {
    pub fn new() -> Self {
        Self::with_options(SocketOptions::default())
    }

    pub fn with_options(options: SocketOptions) -> Self {
        let socket = UdpSocket::bind(SocketAddrV4::new(LO, 0), &options).unwrap();
        Self { socket, rx: RecvBatch::new(64, 4096), tx: SendBatch::new(64) }
    }

    pub fn addr(&self) -> SocketAddrV4 {
        self.socket.local_addr()
    }

    /// Sends all of `items`, retrying briefly if the send buffer is full.
    pub fn send_all<'a>(&mut self, items: impl IntoIterator<Item = OutDatagram<'a>>) {
        let mut items = items.into_iter().peekable();
        let deadline = Instant::now() + Duration::from_secs(5);
        while items.peek().is_some() {
            assert!(Instant::now() < deadline, "client send stalled");
            let out = self.tx.send(self.socket.as_fd(), &mut items);
            assert_eq!(out.failed, 0, "{out:?}");
            if out.would_block {
                // The unsent tail of this batch is lost to the iterator; tests send
                // far less than a send buffer, so this does not happen in practice.
                panic!("client send buffer full");
            }
        }
    }

    pub fn send(&mut self, dest: SocketAddrV4, data: &[u8]) {
        self.send_all([OutDatagram { dest, ttl: None, data, tail: &[] }]);
    }

    /// Receives for up to `wait`, calling `f(from, data, ttl)` per datagram, until `f`
    /// returns false (then the rest of that batch still goes to `f`). Returns false on
    /// timeout.
    pub fn recv_until(
        &mut self,
        wait: Duration,
        mut f: impl FnMut(SocketAddrV4, &[u8], Option<u8>) -> bool,
    ) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if !self.socket.wait_readable(Duration::from_millis(20)).unwrap() {
                continue;
            }
            self.rx.recv(self.socket.as_fd()).unwrap();
            // The whole batch is handed to `f` even after it says stop, so no
            // datagram already read is lost.
            let mut more = true;
            for d in self.rx.iter() {
                more &= f(d.from, d.data, d.ttl);
            }
            if !more {
                return true;
            }
        }
        false
    }

    /// Receives one datagram within `wait`.
    pub fn recv_one(&mut self, wait: Duration) -> Option<(SocketAddrV4, Vec<u8>, Option<u8>)> {
        let mut got = None;
        self.recv_until(wait, |from, data, ttl| {
            got.get_or_insert_with(|| (from, data.to_vec(), ttl));
            false
        });
        got
    }
}

/// Waits for `pred` to hold, polling every few milliseconds, for at most `wait`.
pub fn eventually(wait: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    pred()
}

/// The `Bound` event an endpoint sends first.
pub fn bound(events: &mpsc::Receiver<Ev>) -> Vec<SocketAddrV4> {
    match events.recv_timeout(Duration::from_secs(5)).unwrap() {
        Ev::Bound(local) => local,
        other => panic!("expected Bound, got {other:?}"),
    }
}

/// Generates one `#[test]` per backend for each scenario.
#[allow(unused_macros)] // fallback.rs shares this module without it
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $(#[test]
            fn $name() {
                super::$name(tern_driver::IoMode::Uring);
            })*
        }
        mod epoll {
            $(#[test]
            fn $name() {
                super::$name(tern_driver::IoMode::Epoll);
            })*
        }
    };
}
