//! UDP GSO sends and GRO receives on real 127.0.0.1 sockets: a run of datagrams sent
//! as one GSO message arrives as the same datagrams at an ordinary receiver; runs
//! break where the kernel's rules say they must; a refused GSO send falls back to one
//! datagram per message and switches GSO off; a GRO receiver splits a coalesced buffer
//! back into datagrams, short last one included. Every wait is bounded in time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// One setsockopt the crate has no wrapper for (SO_NO_CHECK), to make the kernel refuse GSO.
#![allow(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use tern_udp::{GRO_SLOT_LEN, OutDatagram, RecvBatch, SendBatch, SocketOptions, UdpSocket};

fn bind(options: &SocketOptions) -> UdpSocket {
    UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), options).unwrap()
}

/// Receives until `want` datagrams arrived or 5 s passed; returns them and the
/// number of messages (buffers) they came in.
fn recv_n(sock: &UdpSocket, batch: &mut RecvBatch, want: usize) -> (Vec<Vec<u8>>, usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut got, mut messages) = (Vec::new(), 0);
    while got.len() < want && Instant::now() < deadline {
        if !sock.wait_readable(Duration::from_millis(50)).unwrap() {
            continue;
        }
        messages += batch.recv(sock.as_fd()).unwrap();
        assert_eq!(batch.truncated(), 0);
        got.extend(batch.iter().map(|d| d.data.to_vec()));
    }
    (got, messages)
}

/// `n` datagrams of `len` bytes and a last one of `last` bytes, back to back in one
/// buffer (as a `TxQueue` arena holds them), each filled with its index.
fn arena(n: usize, len: usize, last: usize) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
    let (mut buf, mut ranges) = (Vec::new(), Vec::new());
    for i in 0..=n {
        let l = if i == n { last } else { len };
        let start = buf.len();
        buf.extend(std::iter::repeat_n(i as u8, l));
        ranges.push(start..start + l);
    }
    (buf, ranges)
}

/// Turns off UDP checksums (SO_NO_CHECK) on `sock`, which makes the kernel refuse its
/// GSO sends with EINVAL, as a route that cannot segment would; plain datagrams still
/// go out.
fn refuse_gso(sock: &UdpSocket) {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a live c_int of the size given.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            std::ptr::from_ref(&one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

fn items<'a>(
    buf: &'a [u8],
    ranges: &'a [std::ops::Range<usize>],
    dest: SocketAddrV4,
) -> impl Iterator<Item = OutDatagram<'a>> {
    ranges.iter().map(move |r| OutDatagram { dest, ttl: None, data: &buf[r.clone()], tail: &[] })
}

#[test]
fn a_gso_run_arrives_as_ordinary_datagrams() {
    let rx = bind(&SocketOptions::default());
    let tx = bind(&SocketOptions::default());
    assert!(tx.gso(), "the test kernel supports UDP_SEGMENT (Linux 4.18+)");
    let (buf, ranges) = arena(40, 1200, 300);
    let mut batch = SendBatch::new(8);
    let mut it = items(&buf, &ranges, rx.local_addr()).peekable();
    let out = batch.send_segmented(&tx, &mut it);
    assert_eq!((out.loaded, out.sent, out.failed, out.would_block), (41, 41, 0, false));
    assert_eq!(batch.messages(), 1, "one GSO message for the whole run");
    assert_eq!(batch.segments(0), 41);
    let (got, messages) = recv_n(&rx, &mut RecvBatch::new(64, 2048), 41);
    let want: Vec<Vec<u8>> = ranges.iter().map(|r| buf[r.clone()].to_vec()).collect();
    assert_eq!(got, want, "same datagrams, same order, short last one intact");
    assert_eq!(messages, 41, "a receiver without GRO gets one datagram per message");
}

#[test]
fn runs_break_at_the_kernels_limits() {
    let (a, b) = (bind(&SocketOptions::default()), bind(&SocketOptions::default()));
    let tx = bind(&SocketOptions::default());
    let (x, y, z) = (vec![1u8; 1000], vec![2u8; 1000], vec![3u8; 500]);
    let big = vec![4u8; 1000];
    let d =
        |dest: &UdpSocket, data, ttl| OutDatagram { dest: dest.local_addr(), ttl, data, tail: &[] };
    let list = vec![
        d(&a, &x[..], None),
        d(&a, &y[..], None),    // joins: same size
        d(&a, &z[..], None),    // joins as the short last one, ends the run
        d(&a, &x[..], None),    // new run
        d(&b, &y[..], None),    // other destination: new run
        d(&b, &y[..], Some(5)), // a TTL never joins a run
        d(&b, &big[..], None),
    ];
    let mut batch = SendBatch::new(16);
    let out = batch.send_segmented(&tx, &mut list.clone().into_iter().peekable());
    assert_eq!((out.sent, out.failed), (7, 0));
    let segs: Vec<usize> = (0..batch.messages()).map(|i| batch.segments(i)).collect();
    assert_eq!(segs, [3, 1, 1, 1, 1]);
    // 70 datagrams of one size: the kernel takes at most 64 per message.
    let (buf, ranges) = arena(69, 100, 100);
    let out = batch.send_segmented(&tx, &mut items(&buf, &ranges, a.local_addr()).peekable());
    assert_eq!(out.sent, 70);
    assert_eq!((batch.messages(), batch.segments(0), batch.segments(1)), (2, 64, 6));
    let (got_a, _) = recv_n(&a, &mut RecvBatch::new(64, 2048), 74);
    assert_eq!(got_a.len(), 74);
    assert_eq!(&got_a[..4], &[x.clone(), y.clone(), z, x]);
    let (got_b, _) = recv_n(&b, &mut RecvBatch::new(64, 2048), 3);
    assert_eq!(got_b, [y.clone(), y, big]);
}

#[test]
fn without_gso_every_datagram_is_its_own_message() {
    let rx = bind(&SocketOptions::default());
    let tx = bind(&SocketOptions { gso: false, ..SocketOptions::default() });
    assert!(!tx.gso());
    let (buf, ranges) = arena(9, 1200, 10);
    let mut batch = SendBatch::new(64);
    let out = batch.send_segmented(&tx, &mut items(&buf, &ranges, rx.local_addr()).peekable());
    assert_eq!((out.sent, batch.messages()), (10, 10));
    let (got, _) = recv_n(&rx, &mut RecvBatch::new(64, 2048), 10);
    assert_eq!(got.len(), 10);
    assert_eq!(got[9], vec![9u8; 10]);
}

#[test]
fn a_refused_gso_send_falls_back_and_turns_gso_off() {
    let rx = bind(&SocketOptions::default());
    let tx = bind(&SocketOptions::default());
    refuse_gso(&tx);
    let (buf, ranges) = arena(20, 1000, 999);
    let mut batch = SendBatch::new(8);
    let out = batch.send_segmented(&tx, &mut items(&buf, &ranges, rx.local_addr()).peekable());
    assert!(out.gso_refused, "{out:?}");
    assert_eq!((out.loaded, out.sent, out.failed), (21, 21, 0));
    assert!(!tx.gso(), "switched off for later sends");
    let (got, _) = recv_n(&rx, &mut RecvBatch::new(64, 2048), 21);
    let want: Vec<Vec<u8>> = ranges.iter().map(|r| buf[r.clone()].to_vec()).collect();
    assert_eq!(got, want);
    // The next send does not try GSO at all.
    let out = batch.send_segmented(&tx, &mut items(&buf, &ranges, rx.local_addr()).peekable());
    assert!(!out.gso_refused);
    assert_eq!((out.sent, batch.messages()), (8, 8));
}

#[test]
fn a_gro_receiver_splits_a_coalesced_run() {
    let rx = bind(&SocketOptions { gro: true, ..SocketOptions::default() });
    assert!(rx.gro(), "the test kernel supports UDP_GRO (Linux 5.0+)");
    let tx = bind(&SocketOptions::default());
    let (buf, ranges) = arena(30, 1400, 123);
    let mut batch = SendBatch::new(8);
    let out = batch.send_segmented(&tx, &mut items(&buf, &ranges, rx.local_addr()).peekable());
    assert_eq!(out.sent, 31);
    // A plain datagram after the run, from another socket: never merged with it.
    let other = bind(&SocketOptions::default());
    other.send_to(b"alone", rx.local_addr(), None).unwrap();
    let (got, messages) = recv_n(&rx, &mut RecvBatch::new(8, GRO_SLOT_LEN), 32);
    let mut want: Vec<Vec<u8>> = ranges.iter().map(|r| buf[r.clone()].to_vec()).collect();
    want.push(b"alone".to_vec());
    assert_eq!(got, want);
    assert!(messages < 32, "on loopback a GSO run reaches a GRO socket whole ({messages})");
}

#[test]
fn gro_sized_slots_still_refuse_datagrams_longer_than_the_limit() {
    let rx = bind(&SocketOptions { gro: true, ..SocketOptions::default() });
    let tx = bind(&SocketOptions::default());
    let (buf, ranges) = arena(9, 1000, 1000);
    let mut batch = SendBatch::new(8);
    let out = batch.send_segmented(&tx, &mut items(&buf, &ranges, rx.local_addr()).peekable());
    assert_eq!(out.sent, 10);
    tx.send_to(&[9u8; 4000], rx.local_addr(), None).unwrap();
    tx.send_to(b"small", rx.local_addr(), None).unwrap();
    let mut recv = RecvBatch::new(8, GRO_SLOT_LEN).max_datagram(2048);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (mut got, mut truncated) = (Vec::new(), 0);
    while got.len() < 11 && Instant::now() < deadline {
        if sock_ready(&rx) {
            recv.recv(rx.as_fd()).unwrap();
            truncated += recv.truncated();
            got.extend(recv.iter().map(|d| d.data.to_vec()));
        }
    }
    assert_eq!(got.len(), 11, "the run of ten and the small one");
    assert_eq!(got[10], b"small");
    assert_eq!(truncated, 1, "the 4000-byte datagram is refused as the 2 KiB slots did");
}

fn sock_ready(s: &UdpSocket) -> bool {
    s.wait_readable(Duration::from_millis(50)).unwrap()
}

/// Where datagram `i`'s head and payload start, and the payload's length.
type Part = (usize, usize, usize);

/// Two-part datagrams as a zero-copy `TxQueue` yields them: `n` 20-byte heads back to
/// back in one buffer, each followed by `len` bytes of one payload buffer (the last
/// `last` bytes), as a UDX stream's packets reference its send buffer.
fn two_part(n: usize, len: usize, last: usize) -> (Vec<u8>, Vec<u8>, Vec<Part>) {
    let (mut heads, mut body, mut parts) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..n {
        let l = if i + 1 == n { last } else { len };
        parts.push((heads.len(), body.len(), l));
        heads.extend([0xf0 | (i as u8 & 0xf); 20]);
        body.extend(std::iter::repeat_n(i as u8, l));
    }
    (heads, body, parts)
}

fn two_part_items<'a>(
    heads: &'a [u8],
    body: &'a [u8],
    parts: &'a [Part],
    dest: SocketAddrV4,
) -> impl Iterator<Item = OutDatagram<'a>> {
    parts.iter().map(move |&(h, b, l)| OutDatagram {
        dest,
        ttl: None,
        data: &heads[h..h + 20],
        tail: &body[b..b + l],
    })
}

#[test]
fn two_part_datagrams_are_gathered_by_the_kernel() {
    let rx = bind(&SocketOptions::default());
    let tx = bind(&SocketOptions::default());
    let (heads, body, parts) = two_part(40, 1180, 77);
    let want: Vec<Vec<u8>> =
        parts.iter().map(|&(h, b, l)| [&heads[h..h + 20], &body[b..b + l]].concat()).collect();
    // 8 iovecs per message slot: 64 slots leave room for a whole run of two-part datagrams.
    let mut batch = SendBatch::new(64);
    let mut it = two_part_items(&heads, &body, &parts, rx.local_addr()).peekable();
    let out = batch.send_segmented(&tx, &mut it);
    assert_eq!((out.loaded, out.sent, out.failed), (40, 40, 0));
    assert_eq!(batch.messages(), 1, "one GSO message, two iovecs per datagram");
    let (got, _) = recv_n(&rx, &mut RecvBatch::new(64, 2048), 40);
    assert_eq!(got, want, "each datagram is its head then its payload");

    // A refused GSO message is re-sent datagram by datagram, each gathered from its parts.
    refuse_gso(&tx);
    let mut it = two_part_items(&heads, &body, &parts, rx.local_addr()).peekable();
    let out = batch.send_segmented(&tx, &mut it);
    assert!(out.gso_refused, "{out:?}");
    assert_eq!((out.loaded, out.sent, out.failed), (40, 40, 0));
    let (got, _) = recv_n(&rx, &mut RecvBatch::new(64, 2048), 40);
    assert_eq!(got, want);
}
