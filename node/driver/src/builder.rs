//! [`DriverBuilder`] and [`WorkLimits`]: how a driver is sized before it starts.
//!
//! Every buffer and every per-turn amount of work has a bound here (DESIGN.md
//! principle 4), each default with the reason for its value.

use std::time::Duration;

use tern_base::Endpoint;
use tern_udp::{DEFAULT_BATCH, DEFAULT_SLOT_LEN, SocketOptions};

use crate::driver::{Driver, DriverError};
use crate::io::IoMode;

/// Most datagrams read from one socket in one turn before the loop moves on. Four
/// default batches: enough to amortise the wait, small enough that with a few hundred
/// busy sockets a turn stays in the low milliseconds.
pub const DATAGRAMS_PER_SOCKET: usize = 4 * DEFAULT_BATCH;
/// Most time spent reading one socket per turn: a backstop for endpoints that are slow
/// per datagram (e.g. signature checks), where the count alone would let one socket
/// hold the thread for long.
pub const TIME_PER_SOCKET: Duration = Duration::from_millis(1);
/// Commands delivered per turn; the rest wait one turn, so a burst of client calls
/// cannot starve socket I/O.
pub const COMMANDS_PER_TURN: usize = 1024;
/// `handle_timeout` calls per turn, for the same reason (thousands of endpoints can be
/// due at once after a stall).
pub const TIMEOUTS_PER_TURN: usize = 4096;
/// Datagrams parked per socket while its send buffer is full. Roughly what a 1 MiB
/// kernel send buffer holds in small DHT datagrams; more would only add latency.
pub const BACKLOG_DATAGRAMS: usize = 1024;
/// Bytes parked per socket while its send buffer is full (see `BACKLOG_DATAGRAMS`).
pub const BACKLOG_BYTES: usize = 1 << 20;
/// Datagrams an endpoint may queue per input. Far above what a DHT input produces (a
/// query round sends ~10), so hitting it means a bug or a flood, and the endpoint
/// counts a drop; the queue is also flushed whenever it is half full.
pub const TX_CAPACITY: usize = 1024;
/// Mailbox slots per driver thread; a full mailbox is `SendError::Full` at the caller.
pub const MAILBOX_CAPACITY: usize = 4096;
/// Endpoints per driver thread: each holds at least one socket (a descriptor) and the
/// slab index must stay below `u32::MAX`; loadgen's thousands of peers fit easily.
pub const MAX_ENDPOINTS_PER_THREAD: usize = 65_536;

/// How much work one loop turn may do, so one busy source cannot starve the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkLimits {
    /// Datagrams read from one socket per turn.
    pub datagrams_per_socket: usize,
    /// Time spent reading one socket per turn (checked between batches).
    pub time_per_socket: Duration,
    /// Mailbox messages handled per turn.
    pub commands_per_turn: usize,
    /// Endpoint timeouts handled per turn.
    pub timeouts_per_turn: usize,
    /// Datagrams parked per socket while its send buffer is full.
    pub backlog_datagrams: usize,
    /// Bytes parked per socket while its send buffer is full.
    pub backlog_bytes: usize,
}

impl Default for WorkLimits {
    fn default() -> Self {
        Self {
            datagrams_per_socket: DATAGRAMS_PER_SOCKET,
            time_per_socket: TIME_PER_SOCKET,
            commands_per_turn: COMMANDS_PER_TURN,
            timeouts_per_turn: TIMEOUTS_PER_TURN,
            backlog_datagrams: BACKLOG_DATAGRAMS,
            backlog_bytes: BACKLOG_BYTES,
        }
    }
}

/// Configures and starts a [`Driver`].
///
/// ```no_run
/// # fn demo<E: tern_base::Endpoint + Send + 'static>(endpoint: E)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// let driver = tern_driver::DriverBuilder::new().threads(2).start::<E>()?;
/// let handle = driver.spawn_endpoint(endpoint)?;
/// let _listening_on = handle.local_addrs();
/// driver.shutdown()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DriverBuilder {
    pub(crate) threads: usize,
    pub(crate) name: String,
    pub(crate) socket_options: SocketOptions,
    pub(crate) recv_slots: usize,
    pub(crate) slot_len: usize,
    pub(crate) send_batch: usize,
    pub(crate) tx_capacity: usize,
    pub(crate) mailbox_capacity: usize,
    pub(crate) max_endpoints_per_thread: usize,
    pub(crate) limits: WorkLimits,
    pub(crate) io: IoMode,
    pub(crate) simulate_uring_errno: Option<i32>,
    pub(crate) pin_threads: bool,
}

impl Default for DriverBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DriverBuilder {
    /// One thread, default socket options, batches of [`DEFAULT_BATCH`] datagrams in
    /// [`DEFAULT_SLOT_LEN`]-byte slots, default [`WorkLimits`].
    pub fn new() -> Self {
        Self {
            threads: 1,
            name: "tern-driver".into(),
            socket_options: SocketOptions::default(),
            recv_slots: DEFAULT_BATCH,
            slot_len: DEFAULT_SLOT_LEN,
            send_batch: DEFAULT_BATCH,
            tx_capacity: TX_CAPACITY,
            mailbox_capacity: MAILBOX_CAPACITY,
            max_endpoints_per_thread: MAX_ENDPOINTS_PER_THREAD,
            limits: WorkLimits::default(),
            io: IoMode::Auto,
            simulate_uring_errno: None,
            pin_threads: false,
        }
    }

    /// Number of driver threads (at least 1); endpoints are spread round-robin.
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Thread name prefix (threads are named `{name}-{index}`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Options for every socket the driver binds (e.g. `reuse_port` for shards).
    pub fn socket_options(mut self, options: SocketOptions) -> Self {
        self.socket_options = options;
        self
    }

    /// Datagrams per `recvmmsg` (clamped to 1..=1024).
    pub fn recv_batch(mut self, slots: usize) -> Self {
        self.recv_slots = slots;
        self
    }

    /// Receive slot size in bytes; longer datagrams are counted as truncated and
    /// dropped (clamped to 1..=65536; raised to `tern_udp::GRO_SLOT_LEN` when the
    /// socket options turn UDP_GRO on).
    pub fn slot_len(mut self, bytes: usize) -> Self {
        self.slot_len = bytes;
        self
    }

    /// Datagrams per `sendmmsg` (clamped to 1..=1024).
    pub fn send_batch(mut self, datagrams: usize) -> Self {
        self.send_batch = datagrams;
        self
    }

    /// Capacity of the transmit queue endpoints write into.
    pub fn tx_capacity(mut self, datagrams: usize) -> Self {
        self.tx_capacity = datagrams.max(1);
        self
    }

    /// Mailbox capacity per thread (at least 1).
    pub fn mailbox_capacity(mut self, messages: usize) -> Self {
        self.mailbox_capacity = messages.max(1);
        self
    }

    /// Most endpoints per thread (at most [`MAX_ENDPOINTS_PER_THREAD`]).
    pub fn max_endpoints_per_thread(mut self, endpoints: usize) -> Self {
        self.max_endpoints_per_thread = endpoints.min(MAX_ENDPOINTS_PER_THREAD);
        self
    }

    /// Per-turn work limits.
    pub fn work_limits(mut self, limits: WorkLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Which backend to run on (default [`IoMode::Auto`]: io_uring where the probe
    /// passes, else epoll with one warning naming the cause).
    pub fn io(mut self, mode: IoMode) -> Self {
        self.io = mode;
        self
    }

    /// Makes the io_uring probe fail as if `io_uring_setup` returned `errno` (e.g.
    /// `libc::EPERM`, what Docker's seccomp profile does), so the fallback path can be
    /// tested on a host where io_uring works. `None` probes for real.
    pub fn simulate_uring_errno(mut self, errno: Option<i32>) -> Self {
        self.simulate_uring_errno = errno;
        self
    }

    /// Pins thread `i` to the `i`-th CPU this process may run on (modulo their
    /// number), for thread-per-core shards: a shard that stays on its core keeps its
    /// buffers and ring in that core's cache. Off by default (a driver sharing a
    /// machine with others, like loadgen, is better left to the scheduler).
    pub fn pin_threads(mut self, pin: bool) -> Self {
        self.pin_threads = pin;
        self
    }

    /// Starts the threads, each idle until endpoints are spawned on it.
    pub fn start<E>(&self) -> Result<Driver<E>, DriverError>
    where
        E: Endpoint + Send + 'static,
    {
        Driver::start(self)
    }
}
