//! Both backends (io_uring and epoll) on real 127.0.0.1 sockets: echo round trips
//! with batching, TTL cmsgs, several endpoints per thread, timers, mailbox order, bind
//! fallback, truncation, the work limiter, closing and shutdown. Each scenario is a
//! function of the [`IoMode`], run once per backend (`both!` at the bottom). Every
//! wait is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[macro_use]
mod common;

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use common::{Client, Cmd, Ev, LO, TestEp, bound, eventually, spec};
use tern_base::SocketId;
use tern_driver::{DriverBuilder, IoBackend, IoMode, SendError, SpawnError, WorkLimits};
use tern_udp::{OutDatagram, SocketOptions, UdpSocket};

const WAIT: Duration = Duration::from_secs(10);

fn echo_ten_thousand_datagrams_round_trip(io: IoMode) {
    let driver = DriverBuilder::new().io(io).start::<TestEp>().unwrap();
    let (ep, events) = TestEp::echo(b"");
    let handle = driver.spawn_endpoint(ep).unwrap();
    let server = bound(&events)[0];
    assert_eq!(handle.local_addrs(), [server]);

    const TOTAL: u32 = 10_000;
    // A window keeps the datagrams in flight far below the socket buffers, so
    // loopback never drops and the test needs no retransmission.
    const WINDOW: u32 = 128;
    let mut client = Client::new();
    let mut seen = vec![false; TOTAL as usize];
    let (mut next, mut got) = (0u32, 0u32);
    let started = Instant::now();
    while got < TOTAL {
        assert!(started.elapsed() < Duration::from_secs(30), "stalled at {got}/{TOTAL}");
        let until = (got + WINDOW).min(TOTAL);
        let payloads: Vec<[u8; 4]> = (next..until).map(u32::to_be_bytes).collect();
        client.send_all(payloads.iter().map(|p| OutDatagram {
            dest: server,
            ttl: None,
            data: p,
            tail: &[],
        }));
        next = next.max(until);
        client.recv_until(Duration::from_millis(200), |from, data, _| {
            assert_eq!(from, server);
            let seq = u32::from_be_bytes(data.try_into().unwrap());
            assert!(!std::mem::replace(&mut seen[seq as usize], true), "duplicate {seq}");
            got += 1;
            got + WINDOW / 2 > next && got < TOTAL // go send more at half a window
        });
    }
    let elapsed = started.elapsed();
    eprintln!(
        "echo: {TOTAL} round trips in {elapsed:?} ({:.0}/s)",
        f64::from(TOTAL) / elapsed.as_secs_f64()
    );
    assert!(eventually(WAIT, || driver.stats().datagrams_sent >= u64::from(TOTAL)));
    let stats = driver.stats();
    assert_eq!(stats.datagrams_received, u64::from(TOTAL));
    assert_eq!((stats.send_failed, stats.recv_truncated), (0, 0));
    driver.shutdown().unwrap();
}

fn ttl_cmsg_reaches_the_wire(io: IoMode) {
    let driver = DriverBuilder::new().io(io).start::<TestEp>().unwrap();
    let (ep, events) = TestEp::echo(b"");
    let handle = driver.spawn_endpoint(ep).unwrap();
    bound(&events);
    let mut probe = Client::with_options(SocketOptions { recv_ttl: true, ..Default::default() });
    let dest = probe.addr();
    handle.send(Cmd::SendTo { dest, ttl: Some(5), data: b"probe".to_vec() }).unwrap();
    let (_, data, ttl) = probe.recv_one(WAIT).expect("probe");
    assert_eq!((data.as_slice(), ttl), (&b"probe"[..], Some(5)));
    handle.send(Cmd::SendTo { dest, ttl: None, data: b"plain".to_vec() }).unwrap();
    let (_, data, ttl) = probe.recv_one(WAIT).expect("plain");
    assert_eq!(data, b"plain");
    assert!(matches!(ttl, Some(t) if t != 5), "{ttl:?}");
}

fn several_endpoints_on_one_thread_each_get_their_own_traffic(io: IoMode) {
    let driver = DriverBuilder::new().io(io).threads(1).start::<TestEp>().unwrap();
    let mut servers = HashMap::new();
    for i in 0..8u8 {
        // Two sockets each, so replies must also leave from the right socket.
        let specs = vec![spec(SocketId::SERVER, 0), spec(SocketId::CLIENT, 0)];
        let (ep, events) = TestEp::with_specs(specs, &[i]);
        let handle = driver.spawn_endpoint(ep).unwrap();
        assert_eq!(handle.thread(), 0);
        for addr in bound(&events) {
            servers.insert(addr, i);
        }
    }
    assert_eq!(servers.len(), 16);
    let mut client = Client::new();
    const EACH: usize = 20;
    let payloads: Vec<(SocketAddrV4, [u8; 2])> = (0..EACH)
        .flat_map(|n| servers.keys().map(move |&a| (a, [n as u8, a.port() as u8])))
        .collect();
    client.send_all(payloads.iter().map(|(dest, p)| OutDatagram {
        dest: *dest,
        ttl: None,
        data: p,
        tail: &[],
    }));
    let mut per_addr: HashMap<SocketAddrV4, usize> = HashMap::new();
    let mut total = 0;
    let done = client.recv_until(WAIT, |from, data, _| {
        assert_eq!(data[0], servers[&from], "reply from {from} has another endpoint's tag");
        assert_eq!(data[2], from.port() as u8, "reply left from the wrong socket");
        *per_addr.entry(from).or_default() += 1;
        total += 1;
        total < payloads.len()
    });
    assert!(done, "got {total}/{}", payloads.len());
    assert!(per_addr.values().all(|&n| n == EACH), "{per_addr:?}");
}

fn endpoints_spread_round_robin_over_threads(io: IoMode) {
    let driver = DriverBuilder::new().io(io).threads(2).start::<TestEp>().unwrap();
    let mut client = Client::new();
    for i in 0..4u8 {
        let (ep, events) = TestEp::echo(&[i]);
        let handle = driver.spawn_endpoint(ep).unwrap();
        assert_eq!(handle.thread(), usize::from(i % 2));
        let server = bound(&events)[0];
        client.send(server, b"x");
        assert_eq!(client.recv_one(WAIT).unwrap().1, [i, b'x']);
    }
    assert_eq!(driver.thread_stats(2), None);
    assert!(eventually(WAIT, || driver.thread_stats(1).unwrap().datagrams_received == 2));
}

fn timers_fire_after_their_deadline(io: IoMode) {
    let driver = DriverBuilder::new().io(io).start::<TestEp>().unwrap();
    let (mut ep, events) = TestEp::echo(b"");
    ep.timer_after = Some(Duration::from_millis(50));
    let started = Instant::now();
    let _handle = driver.spawn_endpoint(ep).unwrap();
    bound(&events);
    match events.recv_timeout(WAIT).expect("timeout never fired") {
        Ev::Timeout { deadline, now } => {
            assert!(now >= deadline, "fired early: {now:?} < {deadline:?}");
            assert!(started.elapsed() >= Duration::from_millis(50));
        }
        other => panic!("{other:?}"),
    }
    assert!(eventually(WAIT, || driver.stats().timeouts >= 1));
}

fn mailbox_commands_arrive_in_order(io: IoMode) {
    // A small mailbox and a small per-turn budget exercise `Full` and the
    // "limit reached, drain again next turn" path.
    let limits = WorkLimits { commands_per_turn: 16, ..WorkLimits::default() };
    let driver = DriverBuilder::new()
        .io(io)
        .mailbox_capacity(64)
        .work_limits(limits)
        .start::<TestEp>()
        .unwrap();
    let (ep, events) = TestEp::echo(b"");
    let handle = driver.spawn_endpoint(ep).unwrap();
    const N: u32 = 5_000;
    let deadline = Instant::now() + WAIT;
    let mut full = 0;
    for n in 0..N {
        let mut cmd = Cmd::Num(n);
        loop {
            match handle.send(cmd) {
                Ok(()) => break,
                Err(SendError::Full(c)) => {
                    full += 1;
                    assert!(Instant::now() < deadline, "mailbox never drained");
                    cmd = c;
                    std::thread::yield_now();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    bound(&events);
    for n in 0..N {
        assert_eq!(events.recv_timeout(WAIT).unwrap(), Ev::Num(n));
    }
    eprintln!("mailbox full {full} times");
    assert!(eventually(WAIT, || driver.stats().commands == u64::from(N)));
}

fn bind_falls_back_when_the_first_port_is_taken(io: IoMode) {
    let driver = DriverBuilder::new().io(io).start::<TestEp>().unwrap();
    let taken = UdpSocket::bind(SocketAddrV4::new(LO, 0), &SocketOptions::default()).unwrap();
    let p = taken.local_addr().port();
    let free = UdpSocket::bind(SocketAddrV4::new(LO, 0), &SocketOptions::default()).unwrap();
    let q = free.local_addr().port();
    drop(free);
    let fallback: &'static [u16] = Box::leak(vec![p, q].into_boxed_slice());
    let mut s = spec(SocketId::SERVER, p);
    s.fallback_ports = fallback;
    let (ep, events) = TestEp::with_specs(vec![s], b"");
    let handle = driver.spawn_endpoint(ep).unwrap();
    assert_eq!(handle.local_addrs()[0].port(), q);
    assert_eq!(bound(&events)[0].port(), q);

    // Without fallbacks the error comes back synchronously.
    let (ep, _events) = TestEp::with_specs(vec![spec(SocketId::SERVER, p)], b"");
    match driver.spawn_endpoint(ep) {
        Err(SpawnError::Bind { socket, error }) => {
            assert_eq!(socket, SocketId::SERVER);
            assert!(error.is_port_unavailable(), "{error}");
        }
        other => panic!("{other:?}"),
    }
    // Duplicate socket ids are refused before binding anything.
    let dup = vec![spec(SocketId::SERVER, 0), spec(SocketId::SERVER, 0)];
    let (ep, _events) = TestEp::with_specs(dup, b"");
    assert!(matches!(driver.spawn_endpoint(ep), Err(SpawnError::InvalidSockets)));
}

fn oversize_datagrams_are_counted_and_dropped(io: IoMode) {
    let driver = DriverBuilder::new().io(io).slot_len(2048).start::<TestEp>().unwrap();
    let (ep, events) = TestEp::echo(b"");
    let _handle = driver.spawn_endpoint(ep).unwrap();
    let server = bound(&events)[0];
    let mut client =
        Client::with_options(SocketOptions { pmtu_probe: false, ..Default::default() });
    client.send(server, &[9; 3000]);
    client.send(server, b"small");
    assert_eq!(client.recv_one(WAIT).unwrap().1, b"small");
    // Stats are published at the end of a turn, which may be after the reply left.
    assert!(eventually(WAIT, || {
        let s = driver.stats();
        (s.recv_truncated, s.datagrams_received) == (1, 1)
    }));
    assert!(client.recv_one(Duration::from_millis(100)).is_none());
}

fn the_work_limiter_shares_a_turn_between_sockets(io: IoMode) {
    let limits = WorkLimits { datagrams_per_socket: 32, ..WorkLimits::default() };
    let driver =
        DriverBuilder::new().io(io).recv_batch(16).work_limits(limits).start::<TestEp>().unwrap();
    let (busy, busy_events) = TestEp::echo(b"A");
    let busy = driver.spawn_endpoint(busy).unwrap();
    let busy_addr = bound(&busy_events)[0];
    let (quiet, quiet_events) = TestEp::echo(b"B");
    let _quiet = driver.spawn_endpoint(quiet).unwrap();
    let quiet_addr = bound(&quiet_events)[0];

    // Hold the thread while 400 datagrams pile up on one socket and 5 on the other.
    busy.send(Cmd::Stall(Duration::from_millis(500))).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut client = Client::new();
    let flood: Vec<[u8; 2]> = (0..400u16).map(u16::to_be_bytes).collect();
    client.send_all(flood.iter().map(|p| OutDatagram {
        dest: busy_addr,
        ttl: None,
        data: p,
        tail: &[],
    }));
    for _ in 0..5 {
        client.send(quiet_addr, b"q");
    }
    let (mut a, mut b, mut first_b) = (0, 0, None);
    client.recv_until(WAIT, |_, data, _| {
        match data[0] {
            b'A' => a += 1,
            _ => {
                b += 1;
                first_b.get_or_insert(a);
            }
        }
        a + b < 405
    });
    assert_eq!((a, b), (400, 5));
    // The quiet socket was served after at most one limiter's worth of the busy one
    // (plus what a partly read batch added), not after the whole flood.
    assert!(first_b.unwrap() <= 64, "quiet socket waited for {first_b:?} busy replies");
    assert!(eventually(WAIT, || driver.stats().recv_limited >= 1));
}

fn closed_endpoints_are_removed(io: IoMode) {
    let driver = DriverBuilder::new().io(io).start::<TestEp>().unwrap();
    let (ep, events) = TestEp::echo(b"");
    let handle = driver.spawn_endpoint(ep).unwrap();
    let server = bound(&events)[0];
    handle.send(Cmd::Close).unwrap();
    assert!(eventually(WAIT, || !handle.is_alive()));
    assert!(matches!(handle.send(Cmd::Num(1)), Err(SendError::Closed(Cmd::Num(1)))));
    assert!(eventually(WAIT, || driver.stats().endpoints_closed == 1));
    // Its socket is closed: the port can be bound again.
    UdpSocket::bind(server, &SocketOptions::default()).unwrap();
}

fn shutdown_joins_and_closes_everything(io: IoMode) {
    let driver = DriverBuilder::new().io(io).threads(2).start::<TestEp>().unwrap();
    let mut handles = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..4 {
        let (ep, events) = TestEp::echo(b"");
        handles.push(driver.spawn_endpoint(ep).unwrap());
        addrs.push(bound(&events)[0]);
    }
    handles[0].send(Cmd::Num(7)).unwrap();
    let started = Instant::now();
    driver.shutdown().unwrap();
    assert!(started.elapsed() < WAIT);
    for h in &handles {
        assert!(!h.is_alive());
        assert!(matches!(h.send(Cmd::Num(1)), Err(SendError::Closed(_))));
    }
    for a in addrs {
        UdpSocket::bind(a, &SocketOptions::default()).unwrap();
    }
}

/// A driver of `io` that really runs on that backend.
fn check_backend(io: IoMode) {
    let driver = DriverBuilder::new().io(io).start::<TestEp>().unwrap();
    let want = if io == IoMode::Epoll { IoBackend::Epoll } else { IoBackend::Uring };
    assert_eq!(driver.backend(), want);
}

both!(
    check_backend,
    echo_ten_thousand_datagrams_round_trip,
    ttl_cmsg_reaches_the_wire,
    several_endpoints_on_one_thread_each_get_their_own_traffic,
    endpoints_spread_round_robin_over_threads,
    timers_fire_after_their_deadline,
    mailbox_commands_arrive_in_order,
    bind_falls_back_when_the_first_port_is_taken,
    oversize_datagrams_are_counted_and_dropped,
    the_work_limiter_shares_a_turn_between_sockets,
    closed_endpoints_are_removed,
    shutdown_joins_and_closes_everything,
);
