//! tern-udx: sans-IO UDX streams (spec: hyperswarm-transport §1).
//!
//! UDX carries reliable, ordered, congestion-controlled byte streams and unreliable
//! datagrams inside UDP, sharing one socket with dht-rpc. This crate is the protocol
//! engine only: the driver hands it datagrams and the time, and drains the datagrams it
//! wants sent ([`tern_base::TxQueue`]), its events ([`Udx::poll_event`]) and its next
//! deadline ([`Udx::poll_timeout`]).
//!
//! Layout: [`packet`](crate::packet) encodes headers; `recv` reassembles; `sendbuf` holds
//! unacknowledged bytes as chunks (handed-over frames are not copied); `send` keeps the
//! per-packet metadata and loss recovery; `rtt`, `bbr` and `mtu` are the estimators and
//! controllers the sender consults; `stream` glues one stream together; `engine` is the
//! stream table, timer heap and event queue behind [`Udx`].

mod bbr;
mod engine;
mod idmap;
mod mtu;
mod packet;
mod recv;
mod rtt;
mod send;
mod sendbuf;
mod stream;

use std::net::SocketAddrV4;
use std::time::Duration;

pub use engine::Udx;
pub use recv::RecvSink;
use tern_base::SocketId;

/// Configuration of a [`Udx`] engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdxConfig {
    /// Most streams in the table at once (hostile peers cannot grow it: only local
    /// `create_stream` adds streams).
    pub max_streams: usize,
    /// Bytes accepted by `write` but not yet acknowledged, per stream.
    pub send_buffer: usize,
    /// In-order bytes not yet read plus out-of-order bytes held, per stream. Also the
    /// receive window we advertise (capped at udx-native's 4194304).
    pub recv_buffer: usize,
    /// Out-of-order bytes held across all streams of the engine (with a per-packet
    /// bookkeeping charge). Past it a packet that does not fill its stream's gap is
    /// refused, as for a full receive buffer, and the sender retransmits it later. Held
    /// bytes are the one thing peers can park that no reader can consume: without this
    /// bound `max_streams` peers could each hold a whole `recv_buffer` of them.
    pub max_held_total: usize,
    /// In-order bytes not yet consumed by their readers, across all streams of the
    /// engine (what the streams and their sinks buffer). Each stream may always buffer
    /// `min_recv_window`; beyond that only what the others leave of this budget, so
    /// readers that stop reading cannot each park a whole `recv_buffer` (the engine's
    /// tcp_mem). Under the budget nothing changes; past it the squeezed streams
    /// advertise smaller windows and refuse data beyond them, as for a full buffer.
    pub max_unread_total: usize,
    /// The receive room every stream keeps whatever the others buffer (at most
    /// `recv_buffer`), so that no stream starves.
    pub min_recv_window: usize,
    /// The MTU every stream starts with (IP packet size; libudx: 1200).
    pub base_mtu: u16,
    /// The largest MTU probing may reach (libudx: 1500).
    pub max_mtu: u16,
}

impl Default for UdxConfig {
    fn default() -> Self {
        Self {
            max_streams: 65_536,
            send_buffer: 4 << 20,
            recv_buffer: 4 << 20,
            max_held_total: 256 << 20,
            max_unread_total: 512 << 20,
            min_recv_window: 128 << 10,
            base_mtu: 1200,
            max_mtu: 1500,
        }
    }
}

/// Local misuse of the API. Remote input never produces an error: it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UdxError {
    /// No stream with this id.
    #[error("unknown stream id {0}")]
    UnknownStream(u32),
    /// `create_stream` with an id already in use.
    #[error("stream id {0} already in use")]
    IdInUse(u32),
    /// `create_stream` while the table holds `max_streams` streams.
    #[error("stream table full")]
    TableFull,
    /// The stream has no remote yet (call `connect`).
    #[error("stream {0} is not connected")]
    NotConnected(u32),
    /// `connect` on a stream that already has a remote.
    #[error("stream {0} is already connected")]
    AlreadyConnected(u32),
    /// `write`/`end` after `end`.
    #[error("stream {0} already ended")]
    Ended(u32),
    /// A message larger than the stream's current payload budget (MTU - 48).
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Size given.
        len: usize,
        /// Current limit.
        max: usize,
    },
    /// The stream relays to another stream and carries no data of its own.
    #[error("stream {0} is relaying")]
    Relaying(u32),
    /// The remote port is 0.
    #[error("invalid remote address")]
    InvalidRemote,
}

/// Why a stream closed. After the `Closed` event the stream is gone from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Both ENDs were exchanged and acknowledged and all data was read.
    Clean,
    /// The peer sent DESTROY (libudx: ECONNRESET).
    Reset,
    /// A packet timed out for the 7th time (libudx: ETIMEDOUT).
    TimedOut,
    /// The local side called `destroy`.
    Destroyed,
}

/// Something the integration layer should react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UdxEvent {
    /// A stream armed with `connect_on_first_packet` was bound by its first packet.
    Connected {
        /// Stream id.
        id: u32,
        /// The socket the packet came in on.
        socket: SocketId,
        /// Its source address.
        remote: SocketAddrV4,
    },
    /// In-order bytes became available (edge-triggered: again only after `read`
    /// returned everything).
    Readable {
        /// Stream id.
        id: u32,
    },
    /// The send buffer has room again after a short `write`.
    Writable {
        /// Stream id.
        id: u32,
    },
    /// An unreliable MESSAGE arrived.
    Message {
        /// Stream id.
        id: u32,
        /// Its payload.
        data: Vec<u8>,
    },
    /// The peer ended and every byte before its END has been read.
    ReadEnded {
        /// Stream id.
        id: u32,
    },
    /// The stream closed and left the table.
    Closed {
        /// Stream id.
        id: u32,
        /// Why.
        reason: CloseReason,
    },
}

/// Lifecycle state of a stream, for statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Created, no remote yet.
    Unconnected,
    /// Connected, neither side ended.
    Open,
    /// We ended; the peer has not.
    LocalEnded,
    /// The peer ended; we have not.
    RemoteEnded,
    /// Both ended, waiting for acknowledgements or the reader.
    Closing,
    /// Forwarding packets to another stream (`relay_to`).
    Relaying,
}

/// A snapshot of one stream's transport state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamStats {
    /// Smoothed RTT (zero before the first sample).
    pub srtt: Duration,
    /// Current retransmission timeout.
    pub rto: Duration,
    /// Congestion window in packets.
    pub cwnd: u32,
    /// Current MTU (IP packet size).
    pub mtu: u16,
    /// Packets in flight.
    pub inflight: u32,
    /// Payload bytes sent (first transmissions only).
    pub bytes_sent: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Packets retransmitted.
    pub retransmits: u64,
    /// Pacing rate in bytes per second.
    pub pacing_rate: u64,
    /// Lifecycle state.
    pub state: StreamState,
    /// Retransmission timeouts that fired with packets outstanding (each one a stall of
    /// at least the RTO, one second or more).
    pub rto_timeouts: u64,
    /// Tail loss probes sent.
    pub tail_loss_probes: u64,
    /// Fast recoveries entered (losses RACK found from later deliveries).
    pub fast_recoveries: u64,
    /// Zero-window probes sent (the peer's receive window was closed).
    pub zero_window_probes: u64,
    /// DATA packets refused for lack of receive buffer or too far ahead.
    pub packets_refused: u64,
}

/// Transport counters summed over an engine's streams, the live ones and every one that
/// closed ([`Udx::totals`]): what an operator graphs to see loss, stalls and flow
/// control at work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdxTotals {
    /// Payload bytes sent (first transmissions only).
    pub bytes_sent: u64,
    /// Payload bytes received in order.
    pub bytes_received: u64,
    /// Packets retransmitted.
    pub retransmits: u64,
    /// See [`StreamStats::rto_timeouts`].
    pub rto_timeouts: u64,
    /// See [`StreamStats::tail_loss_probes`].
    pub tail_loss_probes: u64,
    /// See [`StreamStats::fast_recoveries`].
    pub fast_recoveries: u64,
    /// See [`StreamStats::zero_window_probes`].
    pub zero_window_probes: u64,
    /// See [`StreamStats::packets_refused`].
    pub packets_refused: u64,
    /// Out-of-order bytes the live streams hold now, with their bookkeeping charge (a
    /// gauge, against `UdxConfig::max_held_total`; closed streams add nothing).
    pub held_bytes: u64,
    /// In-order bytes the live streams buffer for their readers now, as the engine last
    /// counted them (a gauge, against `UdxConfig::max_unread_total`).
    pub unread_bytes: u64,
}

impl UdxTotals {
    /// Adds `other`'s counters to these.
    pub fn accumulate(&mut self, other: &UdxTotals) {
        let UdxTotals {
            bytes_sent,
            bytes_received,
            retransmits,
            rto_timeouts,
            tail_loss_probes,
            fast_recoveries,
            zero_window_probes,
            packets_refused,
            held_bytes,
            unread_bytes,
        } = other;
        self.bytes_sent += bytes_sent;
        self.bytes_received += bytes_received;
        self.retransmits += retransmits;
        self.rto_timeouts += rto_timeouts;
        self.tail_loss_probes += tail_loss_probes;
        self.fast_recoveries += fast_recoveries;
        self.zero_window_probes += zero_window_probes;
        self.packets_refused += packets_refused;
        self.held_bytes += held_bytes;
        self.unread_bytes += unread_bytes;
    }
}
