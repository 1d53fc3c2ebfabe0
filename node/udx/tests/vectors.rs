//! udx-native captures (testdata/vectors/transport/udx-*.json): a tern stream plays one
//! side, is fed the other side's datagrams, and must answer byte for byte (or by rule
//! where the capture depends on timing), with the events the file lists.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use tern_base::{SocketId, Timestamp, TxQueue};
use tern_udx::{CloseReason, Udx, UdxConfig, UdxEvent};
use tern_vectors::{Value, VectorFile, unhex};

const PEER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000);

/// One tern engine holding the stream under test.
struct Side {
    u: Udx,
    tx: TxQueue,
    id: u32,
    now: Timestamp,
    events: Vec<UdxEvent>,
}

impl Side {
    fn new(id: u32, remote_id: u32) -> Self {
        let mut s = Self::unconnected(id);
        s.u.connect(s.now, id, SocketId::SERVER, remote_id, PEER, &mut s.tx).unwrap();
        assert!(s.tx.is_empty(), "connect sends nothing");
        s
    }

    fn unconnected(id: u32) -> Self {
        // A receive buffer above udx-native's constant 4 MiB window keeps our advertised
        // rwnd at exactly 4194304 while a few bytes sit unread, so replies compare
        // byte for byte (with the default 4 MiB the window shrinks by what is buffered).
        let cfg = UdxConfig { recv_buffer: 8 << 20, ..UdxConfig::default() };
        let mut u = Udx::new(cfg);
        let now = Timestamp::from_millis(1);
        u.create_stream(now, id).unwrap();
        Self { u, tx: TxQueue::new(64), id, now, events: Vec::new() }
    }

    fn out(&mut self) -> Vec<Vec<u8>> {
        let v = self.tx.iter().map(|(_, d)| d.to_vec()).collect();
        self.tx.clear();
        while let Some(e) = self.u.poll_event() {
            self.events.push(e);
        }
        v
    }

    /// One datagram as a batch of its own: delivered, then the end-of-batch work a
    /// driver does (`handle_timeout` once `poll_timeout` is due), which sends the ACK.
    fn feed(&mut self, hex: &[u8]) -> Vec<Vec<u8>> {
        assert!(self.u.handle_datagram(self.now, SocketId::SERVER, PEER, hex, &mut self.tx));
        if self.u.poll_timeout() <= self.now {
            self.u.handle_timeout(self.now, &mut self.tx);
        }
        self.out()
    }

    fn read_all(&mut self) -> Vec<u8> {
        let mut buf = [0u8; 8192];
        let mut got = Vec::new();
        loop {
            let n = self.u.read(self.id, &mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        self.out();
        got
    }

    fn closed(&self) -> Option<CloseReason> {
        self.events.iter().find_map(|e| match e {
            UdxEvent::Closed { reason, .. } => Some(*reason),
            _ => None,
        })
    }
}

struct File {
    f: VectorFile,
    v: Vec<Value>,
}

impl File {
    fn load(name: &str) -> Self {
        let f = VectorFile::load(&format!("transport/{name}.json"));
        let v = f.vectors();
        Self { f, v }
    }

    /// The bytes of vector `name`, marking it checked.
    fn take(&mut self, name: &str) -> Vec<u8> {
        self.f.checked(name);
        self.peek(name)
    }

    fn peek(&self, name: &str) -> Vec<u8> {
        let v = self.v.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("{name}"));
        unhex(&v["hex"])
    }

    fn events(&self, side: &str) -> Vec<String> {
        self.f.json["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["side"] == side)
            .map(|e| e["event"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[test]
fn basic_session_as_b() {
    let mut f = File::load("udx-basic-session");
    let mut b = Side::new(2, 1);
    assert_eq!(b.feed(&f.take("packet-000")), [f.peek("packet-001")]);
    assert_eq!(b.read_all(), b"hello");
    let now = b.now;
    b.u.write(now, 2, b"world", &mut b.tx).unwrap();
    assert_eq!(b.out(), [f.peek("packet-002")]);
    assert!(b.feed(&f.take("packet-003")).is_empty());
    assert!(b.feed(&f.take("packet-004")).is_empty(), "MESSAGE is not acked");
    assert_eq!(b.feed(&f.take("packet-005")), [f.peek("packet-006")]);
    assert!(b.feed(&f.take("packet-007")).is_empty());
    b.u.end(now, 2, &mut b.tx).unwrap();
    assert_eq!(b.out(), [f.peek("packet-008")]);
    assert!(b.feed(&f.take("packet-009")).is_empty());
    assert_eq!(b.closed(), Some(CloseReason::Clean));
    let kinds: Vec<&str> = b
        .events
        .iter()
        .filter_map(|e| match e {
            UdxEvent::Readable { .. } => Some("data"),
            UdxEvent::Message { data, .. } => {
                assert_eq!(data, b"udp-msg");
                Some("message")
            }
            UdxEvent::ReadEnded { .. } => Some("end"),
            UdxEvent::Closed { .. } => Some("close"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, f.events("B"));
    f.f.checked("packet-001");
    f.f.checked("packet-002");
    f.f.checked("packet-006");
    f.f.checked("packet-008");
    f.f.assert_all_checked(&[]);
}

#[test]
fn basic_session_as_a() {
    let f = File::load("udx-basic-session");
    let mut a = Side::new(1, 2);
    let now = a.now;
    a.u.write(now, 1, b"hello", &mut a.tx).unwrap();
    assert_eq!(a.out(), [f.peek("packet-000")]);
    assert!(a.feed(&f.peek("packet-001")).is_empty());
    assert_eq!(a.feed(&f.peek("packet-002")), [f.peek("packet-003")]);
    assert_eq!(a.read_all(), b"world");
    a.u.send_message(now, 1, b"udp-msg", &mut a.tx).unwrap();
    assert_eq!(a.out(), [f.peek("packet-004")]);
    a.u.end(now, 1, &mut a.tx).unwrap();
    assert_eq!(a.out(), [f.peek("packet-005")]);
    // Our END acked before the peer ended: one extra ACK (spec §1.8 step 9).
    assert_eq!(a.feed(&f.peek("packet-006")), [f.peek("packet-007")]);
    assert_eq!(a.feed(&f.peek("packet-008")), [f.peek("packet-009")]);
    assert_eq!(a.closed(), Some(CloseReason::Clean));
    let kinds: Vec<&str> = a
        .events
        .iter()
        .filter_map(|e| match e {
            UdxEvent::Readable { .. } => Some("data"),
            UdxEvent::ReadEnded { .. } => Some("end"),
            UdxEvent::Closed { .. } => Some("close"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, f.events("A"));
}

#[test]
fn data_end() {
    let mut f = File::load("udx-data-end");
    let mut b = Side::new(12, 11);
    assert_eq!(b.feed(&f.take("packet-000")), [f.take("packet-001")]);
    assert_eq!(b.read_all(), b"last words");
    assert!(b.events.contains(&UdxEvent::ReadEnded { id: 12 }));
    let now = b.now;
    b.u.end(now, 12, &mut b.tx).unwrap();
    assert_eq!(b.out(), [f.take("packet-002")]);
    assert!(b.feed(&f.take("packet-003")).is_empty());
    assert!(b.feed(&f.take("packet-004")).is_empty());
    assert_eq!(b.closed(), Some(CloseReason::Clean));

    // A side: write + end before anything could be sent share one DATA+END packet; the
    // first ACK of our END (peer not ended) earns the extra ACK, the peer's END an ACK.
    let mut a = Side::unconnected(11);
    let now = a.now;
    a.u.write(now, 11, b"last words", &mut a.tx).unwrap();
    a.u.end(now, 11, &mut a.tx).unwrap();
    assert!(a.out().is_empty());
    a.u.connect(now, 11, SocketId::SERVER, 12, PEER, &mut a.tx).unwrap();
    assert_eq!(a.out(), [f.peek("packet-000")]);
    assert_eq!(a.feed(&f.peek("packet-001")), [f.peek("packet-003")]);
    assert_eq!(a.feed(&f.peek("packet-002")), [f.peek("packet-004")]);
    assert_eq!(a.closed(), Some(CloseReason::Clean));
    f.f.assert_all_checked(&[]);
}

#[test]
fn sack_retransmit() {
    let mut f = File::load("udx-sack-retransmit");
    let mut b = Side::new(4, 3);
    f.f.checked("packet-000"); // dropped by the proxy: never reaches B
    assert_eq!(b.feed(&f.take("packet-001")), [f.take("packet-003")]);
    assert_eq!(b.feed(&f.take("packet-002")), [f.take("packet-004")]);
    assert!(b.read_all().is_empty(), "nothing in order yet");
    // The retransmission of seq 0 keeps its payload and refreshes ack/rwnd.
    let retx = f.take("packet-005");
    assert_eq!(retx[20..], f.peek("packet-000")[20..]);
    assert_eq!(b.feed(&retx), [f.take("packet-006")]);
    let got = b.read_all();
    let want = f.f.json["events"][0]["value"].as_u64().unwrap() as usize;
    assert_eq!(got.len(), want);
    assert!(got.iter().all(|&x| x == 0x5a));
    let now = b.now;
    b.u.destroy(now, 4, &mut b.tx);
    assert_eq!(b.out(), [f.take("packet-008")]);
    // A's DESTROY for the now-removed stream is no longer UDX's.
    let d = f.take("packet-007");
    assert!(!b.u.handle_datagram(now, SocketId::SERVER, PEER, &d, &mut b.tx));
    let mut b2 = Side::new(4, 3);
    b2.feed(&f.peek("packet-001"));
    b2.feed(&f.peek("packet-002"));
    b2.feed(&retx);
    assert!(b2.feed(&d).is_empty());
    assert_eq!(b2.closed(), Some(CloseReason::Reset));
    f.f.assert_all_checked(&[]);
}

#[test]
fn heartbeat() {
    let mut f = File::load("udx-heartbeat");
    let mut b = Side::new(6, 5);
    assert_eq!(b.feed(&f.take("packet-000")), [f.take("packet-001")]);
    assert_eq!(b.feed(&f.take("packet-002")), [f.take("packet-003")]);
    assert_eq!(b.feed(&f.take("packet-004")), [f.take("packet-005")]);
    let now = b.now;
    b.u.destroy(now, 6, &mut b.tx);
    assert_eq!(b.out(), [f.take("packet-007")]);

    // A side: keepalive HEARTBEATs carry the next seq and ack, and consume nothing.
    let mut a = Side::new(5, 6);
    a.u.write(now, 5, b"x", &mut a.tx).unwrap();
    assert_eq!(a.out(), [f.peek("packet-000")]);
    assert!(a.feed(&f.peek("packet-001")).is_empty());
    a.u.set_keepalive(now, 5, Some(Duration::from_millis(150))).unwrap();
    for _ in 0..2 {
        let t = a.u.poll_timeout();
        assert!(t < Timestamp::from_millis(1000), "keepalive is the next deadline");
        a.now = t;
        a.u.handle_timeout(t, &mut a.tx);
        assert_eq!(a.out(), [f.peek("packet-002")]);
        assert!(a.feed(&f.peek("packet-003")).is_empty());
    }
    let now = a.now;
    a.u.destroy(now, 5, &mut a.tx);
    assert_eq!(a.out(), [f.take("packet-006")]);
    let mut a2 = Side::new(5, 6);
    assert!(a2.feed(&f.peek("packet-007")).is_empty());
    assert_eq!(a2.closed(), Some(CloseReason::Reset));
    f.f.assert_all_checked(&[]);
}

#[test]
fn destroy() {
    let mut f = File::load("udx-destroy");
    let mut b = Side::new(8, 7);
    assert_eq!(b.feed(&f.take("packet-000")), [f.take("packet-001")]);
    assert!(b.feed(&f.take("packet-002")).is_empty(), "DESTROY is not answered");
    assert_eq!(b.closed(), Some(CloseReason::Reset));
    assert!(!b.u.contains(8));

    let mut a = Side::new(7, 8);
    let now = a.now;
    a.u.write(now, 7, b"bye", &mut a.tx).unwrap();
    assert_eq!(a.out(), [f.peek("packet-000")]);
    assert!(a.feed(&f.peek("packet-001")).is_empty());
    a.u.destroy(now, 7, &mut a.tx);
    assert_eq!(a.out(), [f.peek("packet-002")]);
    assert_eq!(a.closed(), Some(CloseReason::Destroyed));
    f.f.assert_all_checked(&[]);
}

#[test]
fn mtu_probe_padding_is_skipped() {
    let mut f = File::load("udx-mtu-probe");
    let mut b = Side::new(10, 9);
    let names: Vec<String> = f.v.iter().map(|v| v["name"].as_str().unwrap().to_owned()).collect();
    let mut expect = 0;
    for (i, name) in names.iter().enumerate() {
        let mut d = f.take(name);
        let v = &f.v[i];
        let pad = v["decoded"]["dataOffset"].as_u64().unwrap() as usize;
        assert_eq!(usize::from(d[3]), pad);
        assert!(d[20..20 + pad].iter().all(|&x| x == 0), "padding is zeros");
        // Renumber each captured packet to the next expected seq so it is delivered.
        d[12..16].copy_from_slice(&(i as u32).to_le_bytes());
        let replies = b.feed(&d);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0][16..20], (i as u32 + 1).to_le_bytes());
        expect += v["decoded"]["payloadLength"].as_u64().unwrap() as usize;
        let got = b.read_all();
        assert!(got.iter().all(|&x| x == 0x42));
        assert_eq!(got.len(), d.len() - 20 - pad);
    }
    assert_eq!(b.u.stream_stats(10).unwrap().bytes_received as usize, expect);
    let max = f.f.json["finalMtuA"].as_u64().unwrap();
    assert!(max <= 1500);
    f.f.assert_all_checked(&[]);
}

#[test]
fn demux() {
    let mut f = File::load("udx-demux");
    let mut s = Side::new(0x1122_3344, 7);
    for v in f.v.clone() {
        let name = v["name"].as_str().unwrap();
        let d = f.take(name);
        let consumed = s.u.handle_datagram(s.now, SocketId::SERVER, PEER, &d, &mut s.tx);
        assert_eq!(consumed, v["deliveredToStream"].as_bool().unwrap(), "{name}");
        assert_eq!(!consumed, v["deliveredToSocketMessageEvent"].as_bool().unwrap(), "{name}");
    }
    assert_eq!(s.read_all(), b"in-order");
    f.f.assert_all_checked(&[]);
}

#[test]
fn firewall() {
    let mut f = File::load("udx-firewall");
    let mut d = Side::unconnected(0x0a0a_0a0a);
    assert!(d.feed(&f.take("knock-default-firewall")).is_empty(), "swallowed, no reply");
    assert!(d.read_all().is_empty());

    let mut c = Side::unconnected(0x0b0b_0b0b);
    c.u.connect_on_first_packet(0x0b0b_0b0b, 0x0c0c_0c0c).unwrap();
    assert_eq!(c.feed(&f.take("knock-connecting-firewall")), [f.take("reply-0")]);
    assert_eq!(
        c.events[0],
        UdxEvent::Connected { id: 0x0b0b_0b0b, socket: SocketId::SERVER, remote: PEER }
    );
    assert_eq!(c.read_all(), b"knock");
    let now = c.now;
    c.u.destroy(now, 0x0b0b_0b0b, &mut c.tx);
    assert_eq!(c.out(), [f.take("reply-1")]);
    f.f.assert_all_checked(&[]);
}

#[test]
fn relay_rewrites_only_the_id() {
    let mut f = File::load("udx-relay");
    let a = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1001);
    let b = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1002);
    let mut u = Udx::new(UdxConfig::default());
    let mut tx = TxQueue::new(16);
    let now = Timestamp::from_millis(1);
    u.create_stream(now, 0xe001).unwrap();
    u.create_stream(now, 0xe002).unwrap();
    u.connect(now, 0xe001, SocketId::SERVER, 0xa001, a, &mut tx).unwrap();
    u.connect(now, 0xe002, SocketId::SERVER, 0xb001, b, &mut tx).unwrap();
    u.relay_to(0xe001, 0xe002).unwrap();
    u.relay_to(0xe002, 0xe001).unwrap();
    let mut step = |u: &mut Udx,
                    input: &str,
                    from: SocketAddrV4,
                    f: &mut File|
     -> Vec<(SocketAddrV4, Vec<u8>)> {
        assert!(u.handle_datagram(now, SocketId::SERVER, from, &f.take(input), &mut tx));
        let out = tx.iter().map(|(m, d)| (m.dest, d.to_vec())).collect();
        tx.clear();
        out
    };
    assert_eq!(step(&mut u, "packet-000", a, &mut f), [(b, f.take("packet-001"))]);
    assert_eq!(step(&mut u, "packet-002", b, &mut f), [(a, f.take("packet-003"))]);
    assert_eq!(step(&mut u, "packet-004", a, &mut f), [(b, f.take("packet-006"))]);
    // R1 closed with the relayed DESTROY; B's DESTROY reaches R2, whose target is gone.
    assert!(!u.contains(0xe001));
    assert!(step(&mut u, "packet-005", b, &mut f).is_empty());
    let mut closed = Vec::new();
    while let Some(e) = u.poll_event() {
        closed.push(e);
    }
    assert!(closed.contains(&UdxEvent::Closed { id: 0xe001, reason: CloseReason::Reset }));
    assert!(closed.contains(&UdxEvent::Closed { id: 0xe002, reason: CloseReason::Reset }));
    assert_eq!(f.f.json["delivered"][0], "through-relay");
    f.f.assert_all_checked(&[]);
}
