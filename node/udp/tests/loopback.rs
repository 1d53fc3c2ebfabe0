//! tern-udp on real 127.0.0.1 sockets: options, TTL cmsgs, batches, truncation and
//! the bind fallback ladder. Every wait is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use tern_base::{SocketId, SocketSpec};
use tern_udp::{OutDatagram, RecvBatch, SendBatch, SocketOptions, UdpSocket};

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn any() -> SocketAddrV4 {
    SocketAddrV4::new(LO, 0)
}

fn bind(options: &SocketOptions) -> UdpSocket {
    UdpSocket::bind(any(), options).unwrap()
}

/// Payloads with their TTLs, as received.
type Received = Vec<(Vec<u8>, Option<u8>)>;

/// Receives until `want` whole datagrams arrived or 5 s passed.
fn recv_n(sock: &UdpSocket, batch: &mut RecvBatch, want: usize) -> (Received, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut got, mut truncated) = (Vec::new(), 0);
    while got.len() < want && Instant::now() < deadline {
        if !sock.wait_readable(Duration::from_millis(50)).unwrap() {
            continue;
        }
        batch.recv(sock.as_fd()).unwrap();
        truncated += batch.truncated();
        got.extend(batch.iter().map(|d| (d.data.to_vec(), d.ttl)));
    }
    (got, truncated)
}

#[test]
fn binds_and_reports_buffer_sizes() {
    let s = bind(&SocketOptions::default());
    assert_eq!(*s.local_addr().ip(), LO);
    assert_ne!(s.local_addr().port(), 0);
    let sizes = s.buffer_sizes();
    assert!(sizes.recv > 0 && sizes.send > 0, "{sizes:?}");
}

#[test]
fn ttl_cmsg_sets_the_ip_ttl() {
    let rx = bind(&SocketOptions { recv_ttl: true, ..SocketOptions::default() });
    let tx = bind(&SocketOptions::default());
    tx.send_to(b"probe", rx.local_addr(), Some(5)).unwrap();
    tx.send_to(b"plain", rx.local_addr(), None).unwrap();
    let mut batch = RecvBatch::new(8, 2048);
    let (got, _) = recv_n(&rx, &mut batch, 2);
    assert_eq!(got[0], (b"probe".to_vec(), Some(5)));
    assert_eq!(got[1].0, b"plain");
    assert!(matches!(got[1].1, Some(t) if t != 5), "{:?}", got[1].1);
}

#[test]
fn batches_send_and_receive_in_order_with_per_datagram_ttl() {
    let rx = bind(&SocketOptions { recv_ttl: true, ..SocketOptions::default() });
    let tx = bind(&SocketOptions::default());
    let payloads: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
    let mut items = payloads.iter().enumerate().map(|(i, p)| OutDatagram {
        dest: rx.local_addr(),
        ttl: if i % 2 == 0 { Some(7) } else { None },
        data: p,
        tail: &[],
    });
    let mut send = SendBatch::new(64);
    let mut sent = 0;
    loop {
        let out = send.send(tx.as_fd(), &mut items);
        assert!(!out.would_block && out.failed == 0, "{out:?}");
        if out.loaded == 0 {
            break;
        }
        sent += out.sent;
    }
    assert_eq!(sent, 200);
    let mut batch = RecvBatch::new(64, 2048);
    let (got, _) = recv_n(&rx, &mut batch, 200);
    assert_eq!(got.len(), 200);
    for (i, (data, ttl)) in got.iter().enumerate() {
        assert_eq!(data, &payloads[i]);
        assert_eq!(*ttl == Some(7), i % 2 == 0);
    }
}

#[test]
fn a_bad_destination_fails_alone() {
    let rx = bind(&SocketOptions::default());
    let tx = bind(&SocketOptions::default());
    let items = [
        OutDatagram { dest: rx.local_addr(), ttl: None, data: b"a", tail: &[] },
        OutDatagram { dest: SocketAddrV4::new(LO, 0), ttl: None, data: b"bad", tail: &[] },
        OutDatagram { dest: rx.local_addr(), ttl: Some(0), data: b"bad ttl", tail: &[] },
        OutDatagram { dest: rx.local_addr(), ttl: None, data: b"b", tail: &[] },
    ];
    let out = SendBatch::new(8).send(tx.as_fd(), &mut items.into_iter());
    assert_eq!((out.loaded, out.sent, out.failed, out.would_block), (4, 2, 2, false));
    assert_eq!(out.last_error, Some(EINVAL));
    let (got, _) = recv_n(&rx, &mut RecvBatch::new(8, 2048), 2);
    assert_eq!(got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(), [b"a".to_vec(), b"b".to_vec()]);
}

/// Linux's EINVAL (port 0 and TTL 0 are both invalid destinations/options).
const EINVAL: i32 = 22;

#[test]
fn oversize_datagrams_are_counted_and_dropped() {
    let rx = bind(&SocketOptions::default());
    let tx = bind(&SocketOptions { pmtu_probe: false, ..SocketOptions::default() });
    tx.send_to(&[7; 3000], rx.local_addr(), None).unwrap();
    tx.send_to(b"small", rx.local_addr(), None).unwrap();
    let mut batch = RecvBatch::new(8, 2048);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut got, mut truncated) = (Vec::new(), 0);
    while (got.is_empty() || truncated == 0) && Instant::now() < deadline {
        if rx.wait_readable(Duration::from_millis(50)).unwrap() {
            batch.recv(rx.as_fd()).unwrap();
            truncated += batch.truncated();
            got.extend(batch.iter().map(|d| d.data.to_vec()));
        }
    }
    assert_eq!(truncated, 1);
    assert_eq!(got, [b"small".to_vec()]);
}

/// One batch reused across calls that fill different numbers of slots: what the kernel
/// wrote back last time (a truncation flag, name and control lengths, lengths) never
/// leaks into the next call's datagrams, senders or TTLs.
#[test]
fn a_reused_batch_reports_each_call_afresh() {
    let rx = bind(&SocketOptions { recv_ttl: true, ..SocketOptions::default() });
    let a = bind(&SocketOptions { pmtu_probe: false, ..SocketOptions::default() });
    let b = bind(&SocketOptions::default());
    let mut batch = RecvBatch::new(4, 2048);
    // Call 1 fills every slot: a truncated datagram first, then three with TTLs.
    a.send_to(&[9; 3000], rx.local_addr(), None).unwrap();
    for (i, ttl) in [(1u8, 7u8), (2, 8), (3, 9)] {
        a.send_to(&[i; 100], rx.local_addr(), Some(ttl)).unwrap();
    }
    let (got, truncated) = recv_n(&rx, &mut batch, 3);
    assert_eq!(truncated, 1);
    assert_eq!(got, [(vec![1; 100], Some(7)), (vec![2; 100], Some(8)), (vec![3; 100], Some(9))]);
    // Call 2 fills one slot, shorter, from another sender, default TTL.
    b.send_to(b"x", rx.local_addr(), None).unwrap();
    assert!(rx.wait_readable(Duration::from_secs(5)).unwrap());
    assert_eq!(batch.recv(rx.as_fd()).unwrap(), 1);
    assert_eq!(batch.truncated(), 0);
    let d = batch.iter().next().unwrap();
    assert_eq!((d.data, d.from, d.ttl), (&b"x"[..], b.local_addr(), Some(64)));
    // Call 3 finds nothing and says so.
    assert_eq!(batch.recv(rx.as_fd()).unwrap(), 0);
    assert_eq!(batch.iter().count(), 0);
    // Call 4: slot 0 now holds a full-size datagram after the 1-byte one.
    a.send_to(&[5; 2048], rx.local_addr(), None).unwrap();
    let (got, truncated) = recv_n(&rx, &mut batch, 1);
    assert_eq!((got.len(), truncated), (1, 0));
    assert_eq!(got[0].0, vec![5; 2048]);
}

fn leak(ports: Vec<u16>) -> &'static [u16] {
    Box::leak(ports.into_boxed_slice())
}

#[test]
fn bind_spec_walks_the_fallback_ports() {
    let opts = SocketOptions::default();
    let taken = bind(&opts);
    let p = taken.local_addr().port();
    // A port that was free a moment ago; the test would only fail if another
    // process grabbed it in between.
    let q = bind(&opts).local_addr().port();
    let spec = |fallback: Vec<u16>, any_port| SocketSpec {
        id: SocketId::SERVER,
        bind: SocketAddrV4::new(LO, p),
        fallback_ports: leak(fallback),
        any_port,
        steer_udx_shards: 0,
    };
    assert_eq!(UdpSocket::bind_spec(&spec(vec![q], false), &opts).unwrap().local_addr().port(), q);
    let err = UdpSocket::bind_spec(&spec(vec![p], false), &opts).unwrap_err();
    assert!(err.is_port_unavailable(), "{err}");
    let any = UdpSocket::bind_spec(&spec(vec![p], true), &opts).unwrap();
    assert_ne!(any.local_addr().port(), p);
}

#[test]
fn reuse_port_shares_a_port_only_when_asked() {
    let plain = SocketOptions::default();
    let a = bind(&plain);
    assert!(UdpSocket::bind(a.local_addr(), &plain).unwrap_err().is_port_unavailable());
    let shared = SocketOptions { reuse_port: true, ..SocketOptions::default() };
    let b = bind(&shared);
    let c = UdpSocket::bind(b.local_addr(), &shared).unwrap();
    assert_eq!(b.local_addr(), c.local_addr());
}

/// Reads what is already queued on `sock` (up to 100 ms of waiting).
fn drain(sock: &UdpSocket, batch: &mut RecvBatch) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    while sock.wait_readable(Duration::from_millis(100)).unwrap() {
        batch.recv(sock.as_fd()).unwrap();
        got.extend(batch.iter().map(|d| d.data.to_vec()));
    }
    got
}

#[test]
fn udx_steering_sends_each_stream_id_to_its_shard() {
    // Three members of one SO_REUSEPORT group, numbered in bind order; the program goes
    // on one and applies to the group.
    let shared = SocketOptions { reuse_port: true, ..SocketOptions::default() };
    let first = bind(&shared);
    let port = first.local_addr().port();
    let members: Vec<UdpSocket> = std::iter::once(first)
        .chain((0..2).map(|_| UdpSocket::bind(SocketAddrV4::new(LO, port), &shared).unwrap()))
        .collect();
    members[2].attach_udx_steering(3).unwrap();
    // UDX datagrams from many source ports (the flow hash would scatter them): each
    // must land on member `id_low_byte % 3`.
    let mut sent = [0usize; 3];
    for i in 0..60u8 {
        let tx = bind(&SocketOptions::default());
        let mut pkt = [0u8; 24];
        pkt[0] = 0xff;
        pkt[1] = 1;
        pkt[4] = i; // low byte of the little-endian stream id
        pkt[5] = 0xab;
        tx.send_to(&pkt, members[0].local_addr(), None).unwrap();
        sent[usize::from(i % 3)] += 1;
    }
    // Non-UDX datagrams (a dht-rpc request byte) keep the flow hash: they arrive somewhere.
    for _ in 0..30 {
        let tx = bind(&SocketOptions::default());
        tx.send_to(&[0x03, 0, 0, 0, 0, 0], members[0].local_addr(), None).unwrap();
    }
    let mut batch = RecvBatch::new(64, 2048);
    let mut other = 0;
    for (index, member) in members.iter().enumerate() {
        let got = drain(member, &mut batch);
        let udx: Vec<&Vec<u8>> = got.iter().filter(|d| d[0] == 0xff).collect();
        assert_eq!(udx.len(), sent[index], "member {index} gets exactly its ids");
        assert!(udx.iter().all(|d| usize::from(d[4]) % 3 == index), "member {index}");
        other += got.len() - udx.len();
    }
    assert_eq!(other, 30, "every other datagram arrived through the flow hash");
}
