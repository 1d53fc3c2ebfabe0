//! Sockets opened and closed while an endpoint runs (`SocketOp`), on both backends
//! and real 127.0.0.1 sockets: each opened socket reports its address, receives its own
//! datagrams tagged with its id, sends (with a per-datagram TTL) from its own port,
//! and really closes on request while the others keep working; the per-endpoint cap
//! and OS failures are reported to the endpoint, which keeps running.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use common::{Client, LO, eventually};
use tern_base::{Endpoint, OpenError, SocketId, SocketOp, SocketSpec, Timestamp, TxQueue};
use tern_driver::{DriverBuilder, IoMode, MAX_RUNTIME_SOCKETS};
use tern_udp::{SocketOptions, UdpSocket};

const WAIT: Duration = Duration::from_secs(10);

/// The scenarios run one at a time: each binds many sockets at OS-chosen ports (the cap
/// scenario 264 per backend), and one of those can land on a port another scenario has
/// just closed and is about to rebind to prove it free (seen once in CI: AddrInUse).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
enum Ev {
    Opened(SocketId, Result<SocketAddrV4, OpenError>),
    Got(SocketId, SocketAddrV4, Vec<u8>),
}

enum Cmd {
    Ops(Vec<SocketOp>),
    SendFrom { id: SocketId, dest: SocketAddrV4, ttl: Option<u8>, data: Vec<u8> },
}

/// Queues the ops it is told to, reports answers and datagrams, echoes datagrams from
/// the socket they arrived on.
struct Dyn {
    ops: VecDeque<SocketOp>,
    events: mpsc::Sender<Ev>,
}

impl Endpoint for Dyn {
    type Command = Cmd;
    fn sockets(&self) -> Vec<SocketSpec> {
        vec![common::spec(SocketId::SERVER, 0)]
    }
    fn bound(&mut self, _: Timestamp, _: &[SocketAddrV4], _: &mut TxQueue) {}
    fn handle_datagram(
        &mut self,
        _: Timestamp,
        socket: SocketId,
        from: SocketAddrV4,
        data: &[u8],
        tx: &mut TxQueue,
    ) {
        let _ = self.events.send(Ev::Got(socket, from, data.to_vec()));
        tx.push(socket, from, data);
    }
    fn handle_command(&mut self, _: Timestamp, cmd: Cmd, tx: &mut TxQueue) {
        match cmd {
            Cmd::Ops(ops) => self.ops.extend(ops),
            Cmd::SendFrom { id, dest, ttl, data } => {
                tx.push_with(id, dest, ttl, data.len(), |b| {
                    b.copy_from_slice(&data);
                    Some(data.len())
                });
            }
        }
    }
    fn handle_timeout(&mut self, _: Timestamp, _: &mut TxQueue) {}
    fn poll_timeout(&self) -> Timestamp {
        Timestamp::NEVER
    }
    fn poll_socket_op(&mut self) -> Option<SocketOp> {
        self.ops.pop_front()
    }
    fn socket_opened(
        &mut self,
        _: Timestamp,
        id: SocketId,
        result: Result<SocketAddrV4, OpenError>,
        _: &mut TxQueue,
    ) {
        let _ = self.events.send(Ev::Opened(id, result));
    }
}

fn open(id: u16) -> SocketOp {
    SocketOp::Open { id: SocketId(id), bind: SocketAddrV4::new(LO, 0) }
}

fn opened(events: &mpsc::Receiver<Ev>) -> (SocketId, Result<SocketAddrV4, OpenError>) {
    match events.recv_timeout(WAIT).expect("socket_opened") {
        Ev::Opened(id, r) => (id, r),
        other => panic!("expected Opened, got {other:?}"),
    }
}

fn got(events: &mpsc::Receiver<Ev>) -> (SocketId, SocketAddrV4, Vec<u8>) {
    match events.recv_timeout(WAIT).expect("datagram") {
        Ev::Got(id, from, data) => (id, from, data),
        other => panic!("expected Got, got {other:?}"),
    }
}

fn open_route_send_and_close(io: IoMode) {
    let _serial = serial();
    let driver = DriverBuilder::new().io(io).start::<Dyn>().unwrap();
    let (tx, events) = mpsc::channel();
    let handle = driver.spawn_endpoint(Dyn { ops: VecDeque::new(), events: tx }).unwrap();
    handle.send(Cmd::Ops((10..18).map(open).collect())).unwrap();
    let mut local = Vec::new();
    for want in 10..18 {
        let (id, r) = opened(&events);
        assert_eq!(id, SocketId(want));
        let addr = r.expect("opened");
        assert_eq!(*addr.ip(), LO);
        assert_ne!(addr.port(), 0);
        local.push((id, addr));
    }
    let mut ports: Vec<u16> = local.iter().map(|(_, a)| a.port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 8, "distinct ports");

    // Each socket's datagrams arrive tagged with its id; the echo leaves from it.
    let mut client = Client::with_options(SocketOptions { recv_ttl: true, ..Default::default() });
    for (id, addr) in &local {
        client.send(*addr, &id.0.to_be_bytes());
        assert_eq!(got(&events), (*id, client.addr(), id.0.to_be_bytes().to_vec()));
        let (from, data, _) = client.recv_one(WAIT).expect("echo");
        assert_eq!((from, data), (*addr, id.0.to_be_bytes().to_vec()));
    }
    // Sending from a run-time socket, with the probe TTL.
    let (id, addr) = local[3];
    handle
        .send(Cmd::SendFrom { id, dest: client.addr(), ttl: Some(5), data: b"ttl".to_vec() })
        .unwrap();
    assert_eq!(client.recv_one(WAIT).expect("probe"), (addr, b"ttl".to_vec(), Some(5)));

    // Close half: their ports are free again, the rest (moved in the socket list)
    // still work, the initial socket is not closable.
    let closing: Vec<SocketOp> = local[..4]
        .iter()
        .map(|(id, _)| SocketOp::Close(*id))
        .chain([SocketOp::Close(SocketId::SERVER)])
        .collect();
    handle.send(Cmd::Ops(closing)).unwrap();
    assert!(eventually(WAIT, || driver.stats().sockets_closed == 4));
    for (_, addr) in &local[..4] {
        UdpSocket::bind(*addr, &SocketOptions::default()).expect("closed port rebinds");
    }
    for (id, addr) in &local[4..] {
        client.send(*addr, b"still");
        assert_eq!(got(&events).0, *id);
        assert_eq!(client.recv_one(WAIT).expect("echo").0, *addr);
    }
    let server = handle.local_addrs()[0];
    client.send(server, b"server");
    assert_eq!(got(&events).0, SocketId::SERVER);
    // Sending from a closed id is counted, not sent.
    let (id, _) = local[0];
    handle.send(Cmd::SendFrom { id, dest: client.addr(), ttl: None, data: b"x".to_vec() }).unwrap();
    assert!(eventually(WAIT, || driver.stats().tx_unknown_socket >= 1));
    // A closed id can be opened again.
    handle.send(Cmd::Ops(vec![open(10)])).unwrap();
    let (id, r) = opened(&events);
    assert_eq!(id, SocketId(10));
    let addr = r.expect("reopened");
    client.send(addr, b"again");
    assert_eq!(got(&events).0, SocketId(10));
    driver.shutdown().unwrap();
}

fn cap_and_failures_are_reported(io: IoMode) {
    let _serial = serial();
    let driver = DriverBuilder::new().io(io).start::<Dyn>().unwrap();
    let (tx, events) = mpsc::channel();
    let handle = driver.spawn_endpoint(Dyn { ops: VecDeque::new(), events: tx }).unwrap();
    let n = MAX_RUNTIME_SOCKETS as u16;
    handle.send(Cmd::Ops((100..100 + n + 2).map(open).collect())).unwrap();
    let mut first = None;
    for i in 0..n + 2 {
        let (id, r) = opened(&events);
        assert_eq!(id, SocketId(100 + i));
        if i < n {
            first.get_or_insert(r.expect("under the cap"));
        } else {
            assert_eq!(r, Err(OpenError::Limit));
        }
    }
    // A duplicate id, and an address the OS refuses (taken, no SO_REUSEADDR).
    let taken = UdpSocket::bind(SocketAddrV4::new(LO, 0), &SocketOptions::default()).unwrap();
    handle
        .send(Cmd::Ops(vec![
            open(100),
            SocketOp::Close(SocketId(101)),
            SocketOp::Open { id: SocketId(101), bind: taken.local_addr() },
        ]))
        .unwrap();
    assert_eq!(opened(&events), (SocketId(100), Err(OpenError::Duplicate)));
    assert_eq!(opened(&events), (SocketId(101), Err(OpenError::Os(libc_eaddrinuse()))));
    // Still running: the first socket answers.
    let mut client = Client::new();
    client.send(first.unwrap(), b"alive");
    assert_eq!(got(&events).0, SocketId(100));
    let stats = driver.stats();
    assert_eq!(stats.sockets_opened, u64::from(n));
    assert_eq!(stats.sockets_refused, 3);
    driver.shutdown().unwrap();
}

/// EADDRINUSE on Linux.
fn libc_eaddrinuse() -> i32 {
    98
}

both!(open_route_send_and_close, cap_and_failures_are_reported);
