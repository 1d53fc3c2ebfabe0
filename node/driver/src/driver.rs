//! [`Driver`]: running driver threads, and [`EndpointHandle`]: talking to an endpoint
//! from any thread.
//!
//! Spawning binds the endpoint's sockets on the caller's thread — so bind errors
//! (port taken, no permission) come back synchronously as [`SpawnError`] — then moves
//! the endpoint and its sockets through the target thread's mailbox, where the loop
//! registers them and calls `Endpoint::bound`. Commands follow the same mailbox, so a
//! command sent right after spawning arrives after `bound`, and commands from one
//! thread to one endpoint arrive in the order sent.

use std::fmt;
use std::io;
use std::net::SocketAddrV4;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, TrySendError};
use tern_base::{Endpoint, SocketId, Timestamp};
use tern_udp::{BindError, SocketOptions, UdpSocket};

use crate::backend::Backend;
use crate::backend::epoll::Epoll;
use crate::backend::uring::{Uring, UringConfig};
use crate::builder::DriverBuilder;
use crate::clock::Clock;
use crate::io::{IoBackend, UringUnavailable};
use crate::shard::{Shard, ShardConfig};
use crate::shared::{Msg, NewEndpoint, ThreadShared};
use crate::stats::DriverStats;
use tern_udp::RecvBatch;

/// How long spawning waits for room in a full mailbox. Spawning is rare and its
/// caller wants it to succeed, so it applies back-pressure instead of failing at
/// once like commands do; the bound keeps a wedged thread from hanging the caller.
const SPAWN_WAIT: Duration = Duration::from_secs(1);

/// Most sockets one endpoint may ask for at start (socket indices live in 16 bits of
/// the event token; a DHT node uses 2). Sockets opened at run time have their own cap,
/// [`crate::MAX_RUNTIME_SOCKETS`].
pub const MAX_SOCKETS_PER_ENDPOINT: usize = 64;

/// Why a driver could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// io_uring was asked for ([`crate::IoMode::Uring`]) but cannot be used here.
    #[error("{0}")]
    Uring(#[from] UringUnavailable),
    /// Creating the io_uring or epoll instance, the eventfd or a thread failed.
    #[error("starting driver thread {thread}: {error}")]
    Start {
        /// The thread index.
        thread: usize,
        /// The OS error.
        error: io::Error,
    },
    /// A thread's event loop failed (e.g. `epoll_wait` returned an error).
    #[error("driver thread {thread} failed: {error}")]
    Failed {
        /// The thread index.
        thread: usize,
        /// The OS error.
        error: io::Error,
    },
    /// A thread panicked (an endpoint bug: endpoints must not panic).
    #[error("driver thread {thread} panicked")]
    Panicked {
        /// The thread index.
        thread: usize,
    },
}

/// Why an endpoint could not be spawned. The endpoint is dropped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// One of its sockets could not be bound.
    #[error("binding socket {}: {error}", socket.0)]
    Bind {
        /// The socket, as the endpoint names it.
        socket: SocketId,
        /// Why.
        error: BindError,
    },
    /// It asked for the same socket id twice, or for more than
    /// [`MAX_SOCKETS_PER_ENDPOINT`] sockets.
    #[error("invalid socket list (duplicate id or more than {MAX_SOCKETS_PER_ENDPOINT})")]
    InvalidSockets,
    /// No thread with that index.
    #[error("no driver thread {thread}")]
    NoSuchThread {
        /// The index asked for.
        thread: usize,
    },
    /// The thread already runs its maximum number of endpoints.
    #[error("driver thread {thread} is full")]
    ThreadFull {
        /// The thread index.
        thread: usize,
    },
    /// The thread's mailbox stayed full for the spawn wait.
    #[error("driver thread {thread}'s mailbox is full")]
    MailboxFull {
        /// The thread index.
        thread: usize,
    },
    /// The driver is shutting down or its thread has exited.
    #[error("the driver has stopped")]
    Stopped,
}

/// A command could not be delivered; the command is handed back.
#[derive(PartialEq, Eq)]
pub enum SendError<C> {
    /// The mailbox is full: the driver thread is behind; retry later or shed load.
    Full(C),
    /// The endpoint has closed or the driver has stopped.
    Closed(C),
}

impl<C> SendError<C> {
    /// The command that was not delivered.
    pub fn into_inner(self) -> C {
        match self {
            Self::Full(c) | Self::Closed(c) => c,
        }
    }
}

impl<C> fmt::Debug for SendError<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "Full(..)",
            Self::Closed(_) => "Closed(..)",
        })
    }
}

impl<C> fmt::Display for SendError<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full(_) => "the endpoint's mailbox is full",
            Self::Closed(_) => "the endpoint has closed",
        })
    }
}

impl<C> std::error::Error for SendError<C> {}

/// What a driver thread reports once its shard is built: the backend's setup for
/// the startup log line, or why it could not start.
type InitResult = io::Result<&'static str>;

/// Pins the calling thread to the `n`-th CPU of the process's affinity mask (modulo
/// its size). Failure only costs locality, so it is logged, not returned.
fn pin_to_cpu(n: usize) {
    // SAFETY: cpu_set_t is a plain bit array; all-zero is the empty set.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `allowed` is a live cpu_set_t and the size passed is its size; pid 0 is
    // the calling thread.
    let r = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed) };
    if r != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "cannot read CPU affinity");
        return;
    }
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET only reads the live set; indices stay below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) })
        .collect();
    let Some(&cpu) = cpus.get(n % cpus.len().max(1)) else { return };
    // SAFETY: as above, all-zero is the empty set.
    let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` came from the allowed set, so it is below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut one) };
    // SAFETY: `one` is a live cpu_set_t of the size passed; pid 0 is this thread.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) } != 0 {
        tracing::debug!(cpu, error = %io::Error::last_os_error(), "cannot pin thread");
    } else {
        tracing::debug!(cpu, "thread pinned");
    }
}

/// A driver thread's body: builds the shard for `backend`, reports, runs it.
fn run_thread<E: Endpoint>(
    backend: IoBackend,
    clock: Clock,
    shared: Arc<ThreadShared>,
    mailbox: crossbeam_channel::Receiver<Msg<E>>,
    config: ShardConfig,
    init: std::sync::mpsc::SyncSender<InitResult>,
) -> io::Result<()> {
    match backend {
        IoBackend::Uring => {
            let sizes = UringConfig {
                recv_slots: config.recv_slots,
                slot_len: config.slot_len,
                max_datagram: config.max_datagram,
                send_batch: config.send_batch,
            };
            let made = Uring::new(&sizes).and_then(|(ring, rx)| {
                let setup = ring.setup().name();
                Ok((Shard::new(ring, rx, clock, shared, mailbox, config)?, setup))
            });
            serve(made, &init)
        }
        _ => {
            let rx = RecvBatch::new(config.recv_slots, config.slot_len)
                .max_datagram(config.max_datagram);
            let made = Epoll::new()
                .and_then(|epoll| Shard::new(epoll, rx, clock, shared, mailbox, config))
                .map(|shard| (shard, "level-triggered"));
            serve(made, &init)
        }
    }
}

/// Reports how building the shard went, then runs it.
fn serve<E: Endpoint, B: Backend>(
    made: io::Result<(Shard<E, B>, &'static str)>,
    init: &std::sync::mpsc::SyncSender<InitResult>,
) -> io::Result<()> {
    match made {
        Ok((shard, setup)) => {
            let _ = init.send(Ok(setup));
            tracing::debug!(setup, "driver thread started");
            shard.run()
        }
        Err(e) => {
            // The starting thread turns this into `DriverError::Start`.
            let _ = init.send(Err(e));
            Ok(())
        }
    }
}

/// One driver thread as seen from outside.
struct ThreadHandle<E: Endpoint> {
    sender: Sender<Msg<E>>,
    shared: Arc<ThreadShared>,
    join: Option<JoinHandle<io::Result<()>>>,
}

/// Driver threads running endpoints of type `E` on the io_uring or the epoll backend
/// ([`Driver::backend`]).
///
/// Dropping a driver stops and joins its threads like [`Driver::shutdown`], ignoring
/// their errors.
pub struct Driver<E: Endpoint> {
    threads: Vec<ThreadHandle<E>>,
    backend: IoBackend,
    clock: Clock,
    socket_options: SocketOptions,
    max_endpoints_per_thread: usize,
    next_thread: AtomicUsize,
    next_id: AtomicU64,
}

impl<E: Endpoint> fmt::Debug for Driver<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver").field("threads", &self.threads.len()).finish_non_exhaustive()
    }
}

impl<E: Endpoint + Send + 'static> Driver<E> {
    pub(crate) fn start(b: &DriverBuilder) -> Result<Self, DriverError> {
        let backend = crate::io::choose(b.io, b.simulate_uring_errno)?;
        let mut driver = Self {
            threads: Vec::with_capacity(b.threads),
            backend,
            clock: Clock::new(),
            socket_options: b.socket_options.clone(),
            max_endpoints_per_thread: b.max_endpoints_per_thread,
            next_thread: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
        };
        // A socket with UDP_GRO may be handed a 64 KiB run of datagrams in one buffer,
        // which a smaller slot would truncate whole.
        let slot_len =
            if b.socket_options.gro { b.slot_len.max(tern_udp::GRO_SLOT_LEN) } else { b.slot_len };
        let config = ShardConfig {
            recv_slots: b.recv_slots,
            slot_len,
            max_datagram: b.slot_len,
            send_batch: b.send_batch,
            tx_capacity: b.tx_capacity,
            limits: b.limits,
            socket_options: b.socket_options.clone(),
        };
        let mut setup = "";
        for thread in 0..b.threads {
            let err = |error| DriverError::Start { thread, error };
            let shared = Arc::new(ThreadShared::new().map_err(err)?);
            let (sender, receiver) = crossbeam_channel::bounded(b.mailbox_capacity);
            // The shard is built on its own thread: an io_uring set up with
            // SINGLE_ISSUER belongs to the thread that created it.
            let (init_tx, init_rx) = std::sync::mpsc::sync_channel(1);
            let (clock, thread_shared, pin) = (driver.clock, shared.clone(), b.pin_threads);
            let config = config.clone();
            let join = std::thread::Builder::new()
                .name(format!("{}-{thread}", b.name))
                .spawn(move || {
                    let span = tracing::info_span!("driver", thread, backend = %backend);
                    let _entered = span.enter();
                    if pin {
                        pin_to_cpu(thread);
                    }
                    // SAFETY: gettid has no preconditions and cannot fail.
                    let tid = unsafe { libc::gettid() };
                    thread_shared.os_tid.store(tid, Ordering::Relaxed);
                    let result =
                        run_thread(backend, clock, thread_shared, receiver, config, init_tx);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "driver thread failed");
                    }
                    result
                })
                .map_err(err)?;
            match init_rx.recv() {
                Ok(Ok(s)) => setup = s,
                Ok(Err(error)) => {
                    let _ = join.join();
                    return Err(err(error));
                }
                Err(_) => {
                    let _ = join.join();
                    return Err(DriverError::Panicked { thread });
                }
            }
            // Pushed only once running, so a failed start stops (via Drop) exactly
            // the threads that did start.
            driver.threads.push(ThreadHandle { sender, shared, join: Some(join) });
        }
        tracing::info!(threads = b.threads, backend = %backend, setup, "driver started");
        Ok(driver)
    }

    /// The backend the threads run on (with [`crate::IoMode::Auto`], io_uring unless
    /// the probe failed).
    pub fn backend(&self) -> IoBackend {
        self.backend
    }

    /// Spawns `endpoint` on the next thread, round-robin.
    pub fn spawn_endpoint(&self, endpoint: E) -> Result<EndpointHandle<E>, SpawnError> {
        let thread = self.next_thread.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        self.spawn_endpoint_on(thread, endpoint)
    }

    /// Spawns `endpoint` on thread `thread`: binds its sockets here, then hands it to
    /// the thread, which calls `bound` and starts delivering input.
    pub fn spawn_endpoint_on(
        &self,
        thread: usize,
        endpoint: E,
    ) -> Result<EndpointHandle<E>, SpawnError> {
        let th = self.threads.get(thread).ok_or(SpawnError::NoSuchThread { thread })?;
        if th.shared.stop.load(Ordering::Acquire) {
            return Err(SpawnError::Stopped);
        }
        if th.shared.endpoints.fetch_add(1, Ordering::AcqRel) >= self.max_endpoints_per_thread {
            th.shared.endpoints.fetch_sub(1, Ordering::AcqRel);
            return Err(SpawnError::ThreadFull { thread });
        }
        let result = self.bind_and_send(thread, th, endpoint);
        if result.is_err() {
            th.shared.endpoints.fetch_sub(1, Ordering::AcqRel);
        }
        result
    }

    fn bind_and_send(
        &self,
        thread: usize,
        th: &ThreadHandle<E>,
        endpoint: E,
    ) -> Result<EndpointHandle<E>, SpawnError> {
        let specs = endpoint.sockets();
        let duplicate =
            specs.iter().enumerate().any(|(i, a)| specs[..i].iter().any(|b| a.id == b.id));
        if duplicate || specs.len() > MAX_SOCKETS_PER_ENDPOINT {
            return Err(SpawnError::InvalidSockets);
        }
        let mut sockets = Vec::with_capacity(specs.len());
        for spec in &specs {
            let socket = UdpSocket::bind_spec(spec, &self.socket_options)
                .map_err(|error| SpawnError::Bind { socket: spec.id, error })?;
            if self.socket_options.reuse_port
                && spec.steer_udx_shards > 1
                && let Err(e) = socket.attach_udx_steering(spec.steer_udx_shards)
            {
                // Not fatal: misrouted UDX datagrams still reach their shard through
                // the endpoint's own forwarding, one thread hop later.
                tracing::warn!(error = %e, "could not attach the UDX steering program");
            }
            sockets.push((spec.id, socket));
        }
        let local: Arc<[SocketAddrV4]> = sockets.iter().map(|(_, s)| s.local_addr()).collect();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let alive = Arc::new(AtomicBool::new(true));
        let new = NewEndpoint { id, endpoint, sockets, alive: alive.clone() };
        match th.sender.send_timeout(Msg::Add(Box::new(new)), SPAWN_WAIT) {
            Ok(()) => th.shared.waker.wake(),
            Err(e) if e.is_timeout() => return Err(SpawnError::MailboxFull { thread }),
            Err(_) => return Err(SpawnError::Stopped),
        }
        Ok(EndpointHandle {
            id,
            thread,
            sender: th.sender.clone(),
            shared: th.shared.clone(),
            alive,
            local,
        })
    }

    /// Number of driver threads.
    pub fn threads(&self) -> usize {
        self.threads.len()
    }

    /// The driver's clock: the `now` its endpoints see. Use it to build an endpoint
    /// (e.g. `Rpc::new(config, driver.now(), ..)`) before spawning it.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Counters summed over all threads (as of each thread's last turn).
    pub fn stats(&self) -> DriverStats {
        let mut sum = DriverStats::default();
        for th in &self.threads {
            sum += th.shared.stats.snapshot();
        }
        sum
    }

    /// Counters of one thread.
    pub fn thread_stats(&self, thread: usize) -> Option<DriverStats> {
        self.threads.get(thread).map(|th| th.shared.stats.snapshot())
    }

    /// Stops every thread after its current turn (queued datagrams are sent,
    /// endpoints dropped, their sockets closed) and joins them.
    pub fn shutdown(mut self) -> Result<(), DriverError> {
        self.stop_and_join()
    }
}

impl<E: Endpoint> Driver<E> {
    fn stop_and_join(&mut self) -> Result<(), DriverError> {
        for th in &self.threads {
            th.shared.stop.store(true, Ordering::Release);
            th.shared.waker.force_wake();
        }
        let mut first_error = None;
        for (thread, th) in self.threads.iter_mut().enumerate() {
            let Some(join) = th.join.take() else { continue };
            let error = match join.join() {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => DriverError::Failed { thread, error },
                Err(_) => DriverError::Panicked { thread },
            };
            first_error.get_or_insert(error);
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl<E: Endpoint> Drop for Driver<E> {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Sends commands to one endpoint from any thread. Cheap to clone.
pub struct EndpointHandle<E: Endpoint> {
    id: u64,
    thread: usize,
    sender: Sender<Msg<E>>,
    shared: Arc<ThreadShared>,
    alive: Arc<AtomicBool>,
    local: Arc<[SocketAddrV4]>,
}

impl<E: Endpoint> Clone for EndpointHandle<E> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            thread: self.thread,
            sender: self.sender.clone(),
            shared: self.shared.clone(),
            alive: self.alive.clone(),
            local: self.local.clone(),
        }
    }
}

impl<E: Endpoint> fmt::Debug for EndpointHandle<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointHandle")
            .field("id", &self.id)
            .field("thread", &self.thread)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl<E: Endpoint> EndpointHandle<E> {
    /// Queues `command` for the endpoint without blocking. Commands sent from one
    /// thread arrive in order, after `bound`.
    pub fn send(&self, command: E::Command) -> Result<(), SendError<E::Command>> {
        if !self.is_alive() {
            return Err(SendError::Closed(command));
        }
        match self.sender.try_send(Msg::Command { id: self.id, command }) {
            Ok(()) => {
                self.shared.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(msg)) => Err(SendError::Full(command_of(msg))),
            Err(TrySendError::Disconnected(msg)) => Err(SendError::Closed(command_of(msg))),
        }
    }

    /// The local addresses of the endpoint's sockets, in `Endpoint::sockets` order.
    pub fn local_addrs(&self) -> &[SocketAddrV4] {
        &self.local
    }

    /// False once the endpoint has closed (`is_closed`) or its driver stopped.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire) && !self.shared.stop.load(Ordering::Acquire)
    }

    /// The driver thread the endpoint runs on.
    pub fn thread(&self) -> usize {
        self.thread
    }

    /// The OS thread id of that driver thread (`None` before it started), e.g. to read
    /// its CPU time from `/proc/self/task/<tid>/schedstat`.
    pub fn thread_os_id(&self) -> Option<i32> {
        Some(self.shared.os_tid.load(Ordering::Relaxed)).filter(|&t| t > 0)
    }

    /// Messages waiting in the thread's mailbox (commands and forwarded datagrams of
    /// every endpoint on it): its queue depth.
    pub fn mailbox_len(&self) -> usize {
        self.sender.len()
    }

    /// Counters of the driver thread the endpoint runs on (as of its last turn),
    /// shared by every endpoint on that thread.
    pub fn thread_stats(&self) -> DriverStats {
        self.shared.stats.snapshot()
    }
}

/// The command inside a message `EndpointHandle::send` built as `Msg::Command`.
fn command_of<E: Endpoint>(msg: Msg<E>) -> E::Command {
    match msg {
        Msg::Command { command, .. } => command,
        // A failed try_send hands back the message it was given, and `send` only
        // builds Command messages: this arm is dead by construction.
        Msg::Add(_) => unreachable!("EndpointHandle::send only sends commands"),
    }
}
