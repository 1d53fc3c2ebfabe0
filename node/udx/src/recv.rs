//! The receiving half of a stream (spec §1.8): reassembly of DATA/END packets by
//! sequence number, the bounded out-of-order buffer, the in-order byte buffer the
//! application reads from, and the SACK blocks built from what is held.
//!
//! A stream may have a [`RecvSink`]: in-order bytes then go straight to it as they
//! arrive (the application's own buffer) instead of waiting in the byte buffer to be
//! copied out by a read; on one fast stream that second copy was about 5 % of all CPU.
//! The sink hears once per batch of datagrams that it has new bytes
//! ([`RecvSink::flush`]), so that handing them on (a lock, a wake-up) is paid per batch,
//! not per packet.
//! Bytes wait in the byte buffer only while the sink refuses them (it is full), and
//! later bytes queue behind them, so the order holds.

use std::collections::{BTreeMap, VecDeque};

/// Takes a stream's in-order bytes as they arrive ([`crate::Udx::set_sink`]).
pub trait RecvSink: std::fmt::Debug + Send {
    /// Takes all of `data` (true) or none of it (false: it waits in the stream's buffer
    /// and is read with [`crate::Udx::read`]).
    fn deliver(&mut self, data: &[u8]) -> bool;

    /// The end of a batch of datagrams in which `deliver` took bytes, and whenever the
    /// application asks ([`crate::Udx::flush_sink`]): the moment to hand what was
    /// delivered on to the reader. `Readable` follows this.
    fn flush(&mut self) {}

    /// Bytes taken and not yet consumed by the application: they count against the
    /// receive window like the stream's own buffer (flow control covers both). Called
    /// for every window computation, so it must be cheap and must not block.
    fn buffered(&self) -> usize;
}

use crate::packet::{
    IPV4_OVERHEAD, MAX_ADVERTISED_RWND, UDX_DATA, UDX_END, UDX_MAX_SACK_BLOCKS, seq_diff,
};

/// How far ahead of the cumulative ack a packet may be and still be buffered. libudx's
/// SACK builder scans at most 65536 positions, so nothing further can ever be sacked.
const MAX_OOO_DISTANCE: i32 = 65_536;
/// Most out-of-order packets held, whatever their size: a hostile sender of empty
/// far-ahead DATA packets could otherwise grow the map without growing the byte count.
const MAX_OOO_PACKETS: usize = 16_384;
/// The largest payload a packet carries (at the 1500-byte maximum MTU, less the IPv4,
/// UDP and UDX headers).
const MAX_PACKET_PAYLOAD: usize = 1500 - IPV4_OVERHEAD;
/// Bookkeeping cost charged per held packet against the receive buffer, for the same
/// reason (map node + Vec header).
const OOO_ENTRY_COST: usize = 64;

/// What happened to an arriving DATA/END packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accept {
    /// Already received (seq below the ack, or already held): only its ack counts.
    Duplicate,
    /// Held out of order.
    Buffered,
    /// The cumulative ack advanced.
    Advanced,
    /// Refused for lack of space or too far ahead; the sender will retransmit.
    Dropped,
}

#[derive(Debug)]
struct Held {
    flags: u8,
    data: Vec<u8>,
}

/// Receive state of one stream.
#[derive(Debug)]
pub(crate) struct Recv {
    /// Next expected sequence number (the cumulative ack we send).
    pub ack: u32,
    /// `ack` without wrap-around, for ordering the held packets.
    ack_ext: u64,
    held: BTreeMap<u64, Held>,
    held_cost: usize,
    /// In-order bytes not yet read.
    buf: VecDeque<u8>,
    /// Sequence number of the peer's END once every packet before it arrived.
    pub remote_end: Option<u32>,
    /// Payload bytes delivered in order.
    pub bytes_received: u64,
    cap: usize,
    /// The room the engine grants now: `cap`, or less while the engine's in-order budget
    /// is spent by other streams (`UdxConfig::max_unread_total`).
    limit: usize,
    sink: Option<Box<dyn RecvSink>>,
    /// The sink took bytes since the last `take_sunk`.
    sunk: bool,
}

impl Recv {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            ack: 0,
            ack_ext: 0,
            held: BTreeMap::new(),
            held_cost: 0,
            buf: VecDeque::new(),
            remote_end: None,
            bytes_received: 0,
            cap,
            limit: cap,
            sink: None,
            sunk: false,
        }
    }

    /// Sends later in-order bytes to `sink` (see [`RecvSink`]).
    pub(crate) fn set_sink(&mut self, sink: Box<dyn RecvSink>) {
        self.sink = Some(sink);
    }

    /// Whether the sink took bytes since the last call.
    pub(crate) fn take_sunk(&mut self) -> bool {
        std::mem::take(&mut self.sunk)
    }

    /// [`RecvSink::flush`] on the sink, if there is one.
    pub(crate) fn flush_sink(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            sink.flush();
        }
    }

    /// Sets the room the engine grants this stream now (at most the buffer size).
    pub(crate) fn set_limit(&mut self, limit: usize) {
        self.limit = limit.min(self.cap);
    }

    fn used(&self) -> usize {
        self.in_order() + self.held_cost
    }

    /// In-order bytes not yet consumed: ours and the sink's.
    pub(crate) fn in_order(&self) -> usize {
        self.buf.len() + self.sink.as_ref().map_or(0, |s| s.buffered())
    }

    /// The receive window to advertise: 0 while less than one largest packet (and its
    /// bookkeeping) fits, the receiver's half of silly-window avoidance (RFC 1122
    /// 4.2.3.3). A window smaller than a packet invites a packet that is then refused
    /// for lack of room; when nothing is sent after it, only the retransmission timeout
    /// (a second at least) recovers it. A closed window instead makes the sender wait
    /// for our window update, which a read that frees a quarter of the buffer sends.
    pub(crate) fn rwnd(&self) -> u32 {
        let free = self.limit.saturating_sub(self.used());
        let least = (MAX_PACKET_PAYLOAD + OOO_ENTRY_COST).min(self.limit / 2);
        if free < least {
            return 0;
        }
        u32::try_from(free).unwrap_or(u32::MAX).min(MAX_ADVERTISED_RWND)
    }

    /// True while out-of-order packets are held (our ACKs carry SACK blocks).
    pub(crate) fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// In-order bytes waiting to be read.
    pub(crate) fn readable(&self) -> usize {
        self.buf.len()
    }

    /// Out-of-order bytes held, with their bookkeeping charge (what counts against the
    /// engine's `max_held_total`).
    pub(crate) fn held_cost(&self) -> usize {
        self.held_cost
    }

    /// Takes a DATA and/or END packet with sequence number `seq`. `held_room` is what the
    /// engine still lets all its streams hold out of order; the packet that fills the gap
    /// needs none of it.
    pub(crate) fn accept(
        &mut self,
        seq: u32,
        flags: u8,
        payload: &[u8],
        held_room: usize,
    ) -> Accept {
        let flags = flags & (UDX_DATA | UDX_END);
        let d = seq_diff(seq, self.ack);
        if d < 0 || self.remote_end.is_some() {
            return Accept::Duplicate;
        }
        let data = if flags & UDX_DATA != 0 { payload } else { &[] };
        if d == 0 {
            // The packet that fills the gap before held data must get in even when
            // the held data has used up the buffer: refusing it would stall the stream
            // for good (every retransmission of it refused while the held packets wait
            // for it, and the sender never resends those: they were SACKed). So it
            // only needs room in the readable part; what it releases from `held` was
            // already counted, which bounds `used()` by twice the cap.
            let used = if self.held.is_empty() { self.used() } else { self.in_order() };
            if used + data.len() > self.limit {
                return Accept::Dropped;
            }
            self.deliver(flags, data);
            self.drain();
            return Accept::Advanced;
        }
        if d >= MAX_OOO_DISTANCE || self.held.len() >= MAX_OOO_PACKETS {
            return Accept::Dropped;
        }
        let key = self.ack_ext + d as u64;
        if self.held.contains_key(&key) {
            return Accept::Duplicate;
        }
        let cost = data.len() + OOO_ENTRY_COST;
        if self.used() + cost > self.limit || cost > held_room {
            return Accept::Dropped;
        }
        self.held_cost += cost;
        self.held.insert(key, Held { flags, data: data.to_vec() });
        Accept::Buffered
    }

    fn deliver(&mut self, flags: u8, data: &[u8]) {
        // Only while nothing waits here, so that bytes reach the sink in order.
        let sunk = !data.is_empty()
            && self.buf.is_empty()
            && self.sink.as_mut().is_some_and(|s| s.deliver(data));
        if sunk {
            self.sunk = true;
        } else {
            self.buf.extend(data);
        }
        self.bytes_received += data.len() as u64;
        if flags & UDX_END != 0 {
            self.remote_end = Some(self.ack);
        }
        self.ack = self.ack.wrapping_add(1);
        self.ack_ext += 1;
    }

    /// Moves held packets that became in-order into the byte buffer.
    fn drain(&mut self) {
        while self.remote_end.is_none() {
            let Some(entry) = self.held.first_entry() else { break };
            if *entry.key() != self.ack_ext {
                break;
            }
            let held = entry.remove();
            self.held_cost -= held.data.len() + OOO_ENTRY_COST;
            self.deliver(held.flags, &held.data);
        }
        if self.remote_end.is_some() && !self.held.is_empty() {
            // Nothing after the peer's END is valid stream data.
            self.held.clear();
            self.held_cost = 0;
        }
    }

    /// Copies in-order bytes into `out`.
    pub(crate) fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len());
        let (a, b) = self.buf.as_slices();
        let na = n.min(a.len());
        out[..na].copy_from_slice(&a[..na]);
        out[na..n].copy_from_slice(&b[..n - na]);
        self.buf.drain(..n);
        n
    }

    /// Writes up to 50 SACK blocks (lowest first) into `out`; returns bytes written.
    pub(crate) fn write_sacks(&self, out: &mut [u8]) -> usize {
        let mut written = 0;
        let mut run: Option<(u64, u64)> = None;
        let mut blocks = 0;
        let mut emit = |start: u64, end: u64, written: &mut usize| {
            if let Some(dst) = out.get_mut(*written..*written + 8) {
                dst[..4].copy_from_slice(&(start as u32).to_le_bytes());
                dst[4..].copy_from_slice(&(end as u32).to_le_bytes());
                *written += 8;
            }
        };
        for &k in self.held.keys() {
            match run {
                Some((s, e)) if e == k => run = Some((s, e + 1)),
                Some((s, e)) => {
                    emit(s, e, &mut written);
                    blocks += 1;
                    if blocks >= UDX_MAX_SACK_BLOCKS {
                        return written;
                    }
                    run = Some((k, k + 1));
                }
                None => run = Some((k, k + 1)),
            }
        }
        if let Some((s, e)) = run {
            emit(s, e, &mut written);
        }
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorders_and_sacks() {
        let mut r = Recv::new(1 << 20);
        assert_eq!(r.accept(1, UDX_DATA, b"b", usize::MAX), Accept::Buffered);
        assert_eq!(r.accept(2, UDX_DATA, b"c", usize::MAX), Accept::Buffered);
        assert_eq!(r.accept(4, UDX_END, b"", usize::MAX), Accept::Buffered);
        let mut s = [0u8; 64];
        let n = r.write_sacks(&mut s);
        assert_eq!(n, 16);
        assert_eq!(s[..16], [1, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0]);
        assert_eq!(r.accept(0, UDX_DATA, b"a", usize::MAX), Accept::Advanced);
        assert_eq!(r.ack, 3);
        assert_eq!(r.accept(3, UDX_DATA, b"d", usize::MAX), Accept::Advanced);
        assert_eq!(r.remote_end, Some(4));
        assert_eq!(r.ack, 5);
        let mut out = [0u8; 8];
        assert_eq!(r.read(&mut out), 4);
        assert_eq!(&out[..4], b"abcd");
        assert_eq!(r.accept(1, UDX_DATA, b"b", usize::MAX), Accept::Duplicate);
    }

    #[test]
    fn the_gap_filler_gets_in_when_held_data_fills_the_buffer() {
        let mut r = Recv::new(10_000);
        let mut seq = 1;
        while r.accept(seq, UDX_DATA, &[1; 1000], usize::MAX) == Accept::Buffered {
            seq += 1;
        }
        assert!(r.used() + 1000 > 10_000, "held data filled the buffer");
        assert_eq!(r.accept(0, UDX_DATA, &[0; 1000], usize::MAX), Accept::Advanced);
        assert_eq!(r.ack, seq);
        assert!(r.used() <= 2 * 10_000);
        // With the readable part full, an in-order packet waits for the reader.
        let mut r = Recv::new(2_000);
        assert_eq!(r.accept(0, UDX_DATA, &[0; 1500], usize::MAX), Accept::Advanced);
        assert_eq!(r.accept(2, UDX_DATA, &[0; 100], usize::MAX), Accept::Buffered);
        assert_eq!(r.accept(1, UDX_DATA, &[0; 1000], usize::MAX), Accept::Dropped);
        let mut out = [0u8; 1500];
        assert_eq!(r.read(&mut out), 1500);
        assert_eq!(r.accept(1, UDX_DATA, &[0; 1000], usize::MAX), Accept::Advanced);
    }

    #[test]
    fn the_engines_held_room_bounds_out_of_order_data_but_not_the_gap_filler() {
        let mut r = Recv::new(1 << 20);
        let cost = 1000 + OOO_ENTRY_COST;
        assert_eq!(r.accept(1, UDX_DATA, &[1; 1000], cost), Accept::Buffered);
        assert_eq!(r.held_cost(), cost);
        // The engine has no room left: held data is refused, however much this stream's
        // own buffer could take.
        assert_eq!(r.accept(2, UDX_DATA, &[2; 1000], cost - 1), Accept::Dropped);
        assert_eq!(r.accept(2, UDX_DATA, &[2; 1000], 0), Accept::Dropped);
        // The packet that fills the gap needs no room, and releases what was held.
        assert_eq!(r.accept(0, UDX_DATA, &[0; 1000], 0), Accept::Advanced);
        assert_eq!(r.held_cost(), 0);
        assert_eq!(r.readable(), 2000);
    }

    #[test]
    fn bounded_against_far_ahead_senders() {
        let mut r = Recv::new(10_000);
        let mut buffered = 0;
        for seq in 1..100_000u32 {
            if r.accept(seq, UDX_DATA, &[0; 100], usize::MAX) == Accept::Buffered {
                buffered += 1;
            }
        }
        assert!(r.used() <= 10_000);
        assert!(buffered < 100);
        assert_eq!(r.accept(70_000, UDX_DATA, b"", usize::MAX), Accept::Dropped);
    }

    /// A sink that holds at most `room` bytes.
    #[derive(Debug)]
    struct Sink {
        got: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        room: usize,
    }

    impl RecvSink for Sink {
        fn deliver(&mut self, data: &[u8]) -> bool {
            let mut got = self.got.lock().unwrap();
            if got.len() + data.len() > self.room {
                return false;
            }
            got.extend_from_slice(data);
            true
        }

        fn buffered(&self) -> usize {
            self.got.lock().unwrap().len()
        }
    }

    #[test]
    fn the_engines_limit_shrinks_the_window_and_the_room() {
        let mut r = Recv::new(100_000);
        r.set_limit(10_000);
        assert_eq!(r.rwnd(), 10_000, "the window is the granted room, not the buffer");
        assert_eq!(r.accept(0, UDX_DATA, &[0; 8_000], usize::MAX), Accept::Advanced);
        assert_eq!(r.rwnd(), 2_000);
        assert_eq!(r.accept(1, UDX_DATA, &[0; 3_000], usize::MAX), Accept::Dropped);
        assert_eq!(r.accept(2, UDX_DATA, &[0; 3_000], usize::MAX), Accept::Dropped);
        // Room granted again (the budget freed up): up to the buffer, never past it.
        r.set_limit(usize::MAX);
        assert_eq!(r.rwnd(), 92_000);
        assert_eq!(r.accept(1, UDX_DATA, &[0; 3_000], usize::MAX), Accept::Advanced);
    }

    #[test]
    fn a_window_smaller_than_a_packet_is_advertised_closed() {
        let mut r = Recv::new(10_000);
        assert_eq!(r.accept(0, UDX_DATA, &[0; 8_000], usize::MAX), Accept::Advanced);
        assert_eq!(r.rwnd(), 2_000, "a whole packet still fits");
        assert_eq!(r.accept(1, UDX_DATA, &[0; 500], usize::MAX), Accept::Advanced);
        assert_eq!(r.rwnd(), 0, "1500 bytes free: a full packet would be refused");
        let mut out = [0u8; 600];
        assert_eq!(r.read(&mut out), 600);
        assert_eq!(r.rwnd(), 2_100);
        // A tiny buffer still opens: the threshold is at most half of it.
        let mut r = Recv::new(1_000);
        assert_eq!(r.rwnd(), 1_000);
        assert_eq!(r.accept(0, UDX_DATA, &[0; 400], usize::MAX), Accept::Advanced);
        assert_eq!(r.rwnd(), 600);
        assert_eq!(r.accept(1, UDX_DATA, &[0; 200], usize::MAX), Accept::Advanced);
        assert_eq!(r.rwnd(), 0);
    }

    #[test]
    fn a_sink_takes_in_order_bytes_until_full_and_order_holds() {
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut r = Recv::new(10_000);
        r.set_sink(Box::new(Sink { got: got.clone(), room: 5 }));
        assert_eq!(r.accept(1, UDX_DATA, b"cd", usize::MAX), Accept::Buffered);
        assert_eq!(r.accept(0, UDX_DATA, b"ab", usize::MAX), Accept::Advanced);
        assert!(r.take_sunk());
        assert!(!r.take_sunk());
        // "ab" and "cd" went to the sink; "ef" does not fit and waits here, and so does
        // "g" behind it although it would fit: the sink never gets bytes out of order.
        assert_eq!(r.accept(2, UDX_DATA, b"ef", usize::MAX), Accept::Advanced);
        assert_eq!(r.accept(3, UDX_DATA, b"g", usize::MAX), Accept::Advanced);
        assert_eq!(&*got.lock().unwrap(), b"abcd");
        // The sink's bytes count against the window too.
        assert_eq!((r.readable(), r.rwnd()), (3, 10_000 - 7));
        let mut out = [0u8; 8];
        assert_eq!(r.read(&mut out), 3);
        assert_eq!(&out[..3], b"efg");
        assert_eq!(r.accept(4, UDX_DATA, b"h", usize::MAX), Accept::Advanced);
        assert_eq!(&*got.lock().unwrap(), b"abcdh");
        assert_eq!(r.readable(), 0);
    }
}
