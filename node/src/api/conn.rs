//! The node-thread side of connections: turning established connections into
//! [`SecureStream`] handles and moving bytes between each stream's [`Pipe`] and UDX.
//! Also the [`Server`] handle returned by [`crate::Dht::listen`].

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures_channel::mpsc;
use futures_core::Stream;
use tern_base::{Timestamp, TxQueue};
use tern_core::udx::{CloseReason, UdxEvent};
use tern_core::{Connection, ListenerId, Node, NodeCommand, Origin};
use tern_driver::EndpointHandle;

use crate::api::endpoint::{ApiCommand, ApiNode, Route};
use crate::api::error::DhtError;
use crate::api::pipe::{Closed, MAX_QUEUED_MESSAGES, PIPE_CAPACITY, Pipe, PipeSink};
use crate::api::stream::SecureStream;

/// Connections a listener buffers before the application accepts them; more are reset.
const ACCEPT_BACKLOG: usize = 256;
/// Bytes moved from UDX into a pipe per read call.
const READ_CHUNK: usize = 64 * 1024;
/// Frames at least this long move into UDX's send buffer whole (not copied); shorter
/// ones are copied so that a stream of small writes does not become a queue of tiny
/// chunks.
const MIN_CHUNK: usize = 4 * 1024;

/// The node's own handle, set once it is spawned (streams use it to nudge the node).
pub(crate) type SelfHandle = Arc<OnceLock<EndpointHandle<ApiNode>>>;

/// Streams and listeners of one node, on its thread.
pub(crate) struct Streams {
    pipes: HashMap<u32, Arc<Pipe>>,
    accept: HashMap<ListenerId, mpsc::Sender<SecureStream>>,
    scratch: Box<[u8]>,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            pipes: HashMap::new(),
            accept: HashMap::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }
}

impl Streams {
    /// Registers a listener's accept queue and returns the application's handle.
    pub(crate) fn listener(
        &mut self,
        id: ListenerId,
        public_key: [u8; 32],
        node: EndpointHandle<ApiNode>,
    ) -> Server {
        let (tx, rx) = mpsc::channel(ACCEPT_BACKLOG);
        self.accept.insert(id, tx);
        Server { id, public_key, rx, node: Some(node) }
    }

    /// Forgets a listener (its handle's accept stream ends).
    pub(crate) fn remove_listener(&mut self, id: ListenerId) {
        self.accept.remove(&id);
    }

    /// A connection is up: make its pipe and handle, and hand it to whoever waits.
    pub(crate) fn on_connection(
        &mut self,
        node: &mut Node,
        now: Timestamp,
        conn: Connection,
        me: Option<&EndpointHandle<ApiNode>>,
        routes: &mut HashMap<tern_dht::OpId, Route>,
        tx: &mut TxQueue,
    ) {
        let mut header = [0u8; 24];
        let Some(me) = me.filter(|_| getrandom::fill(&mut header).is_ok()) else {
            node.connections().udx().destroy(now, conn.stream, tx);
            return;
        };
        let pipe = Arc::new(Pipe::default());
        let stream =
            SecureStream::new(pipe.clone(), me.clone(), conn.stream, conn.handshake, header);
        // Received bytes go straight into the pipe from now on (earlier ones are read).
        let _ =
            node.connections().udx().set_sink(conn.stream, Box::new(PipeSink::new(pipe.clone())));
        self.pipes.insert(conn.stream, pipe);
        let delivered = match conn.origin {
            Origin::Client(op) => match routes.remove(&op) {
                Some(Route::Connect(waiter)) => waiter.send(Ok(stream)).is_ok(),
                _ => false,
            },
            Origin::Server(listener) => {
                self.accept.get_mut(&listener).is_some_and(|q| q.try_send(stream).is_ok())
            }
        };
        // The header frame is queued; send it now so the peer can start decrypting.
        self.pump(node, now, conn.stream, tx);
        if !delivered {
            // Nobody wants it (cancelled connect, closed listener, full backlog): the
            // dropped handle already asked for an END; reset instead.
            self.reset(node, now, conn.stream, tx);
        }
    }

    fn reset(&mut self, node: &mut Node, now: Timestamp, id: u32, tx: &mut TxQueue) {
        node.connections().udx().destroy(now, id, tx);
        if let Some(pipe) = self.pipes.remove(&id) {
            close_pipe(&pipe, Closed::Error(io::ErrorKind::ConnectionReset));
        }
    }

    /// UDX progress on one of our streams.
    pub(crate) fn on_stream_event(
        &mut self,
        node: &mut Node,
        now: Timestamp,
        event: UdxEvent,
        tx: &mut TxQueue,
    ) {
        match event {
            UdxEvent::Readable { id }
            | UdxEvent::Writable { id }
            | UdxEvent::ReadEnded { id }
            | UdxEvent::Connected { id, .. } => self.pump(node, now, id, tx),
            UdxEvent::Closed { id, reason } => {
                self.pump(node, now, id, tx);
                if let Some(pipe) = self.pipes.remove(&id) {
                    let closed = match reason {
                        CloseReason::Clean => Closed::Clean,
                        CloseReason::Reset => Closed::Error(io::ErrorKind::ConnectionReset),
                        CloseReason::TimedOut => Closed::Error(io::ErrorKind::TimedOut),
                        CloseReason::Destroyed => Closed::Error(io::ErrorKind::ConnectionAborted),
                    };
                    close_pipe(&pipe, closed);
                }
            }
            UdxEvent::Message { id, data } => {
                let Some(pipe) = self.pipes.get(&id) else { return };
                let mut s = pipe.lock();
                if !s.dropped && s.messages_in.len() < MAX_QUEUED_MESSAGES {
                    s.messages_in.push_back(data);
                    if let Some(w) = s.message_waker.take() {
                        w.wake();
                    }
                }
            }
        }
    }

    /// Moves bytes between a stream's pipe and UDX in both directions.
    pub(crate) fn pump(&mut self, node: &mut Node, now: Timestamp, id: u32, tx: &mut TxQueue) {
        let Some(pipe) = self.pipes.get(&id).cloned() else { return };
        let udx = node.connections().udx();
        // Bytes the sink staged move into the pipe if the reader took what was there
        // (the sink takes the pipe's lock itself: before ours).
        udx.flush_sink(id);
        let staged = pipe.staged_len() > 0;
        let mut s = pipe.lock();
        s.pump_queued = false;
        if s.destroy_requested {
            drop(s);
            udx.destroy(now, id, tx);
            self.pipes.remove(&id);
            close_pipe(&pipe, Closed::Error(io::ErrorKind::ConnectionAborted));
            return;
        }
        // Unordered messages go out at once (datagrams; UDX does not buffer them).
        while let Some(m) = s.messages_out.pop_front() {
            let _ = udx.send_message(now, id, &m, tx);
        }
        // Outbound: whole frames while UDX's send buffer has room; they move in without
        // a copy. Frames the peer acknowledged come back for the writer to reuse.
        let mut written = false;
        while let Some((frame, start)) = s.outbound.pop() {
            if frame.len() - start < MIN_CHUNK {
                // Small frames are copied: they coalesce into full packets in UDX's
                // buffer, which then holds a few large chunks instead of many tiny ones.
                match udx.write(now, id, &frame[start..], tx) {
                    Ok(n) if n == frame.len() - start => {
                        written = true;
                        s.outbound.give_spare(frame);
                        continue;
                    }
                    Ok(n) => {
                        written |= n > 0;
                        s.outbound.unpop(frame, start + n);
                    }
                    Err(_) => s.outbound.unpop(frame, start),
                }
                break;
            }
            match udx.write_chunk(now, id, frame, start, tx) {
                Ok(None) => written = true,
                Ok(Some(frame)) => {
                    s.outbound.unpop(frame, start);
                    break;
                }
                Err(_) => break,
            }
        }
        // The rest wait in UDX (it keeps a bounded number) for the next pump: a writer
        // that finds no spare buffer allocates and zero-fills a fresh one.
        while s.outbound.wants_spare()
            && let Some(buf) = udx.take_spent(id)
        {
            s.outbound.give_spare(buf);
        }
        // A writer waits for a whole frame's room, a flush for an empty pipe (which has
        // that room too): wake it only then.
        if written
            && s.outbound.has_room()
            && let Some(w) = s.write_waker.take()
        {
            w.wake();
        }
        if s.end_requested && s.outbound.is_empty() && !s.end_sent {
            s.end_sent = true;
            let _ = udx.end(now, id, tx);
            // A close waits for this (`poll_close`).
            if let Some(w) = s.write_waker.take() {
                w.wake();
            }
        }
        // Inbound: as much as the pipe has room for (the rest waits in UDX, whose
        // window then closes on the sender), read straight into the pipe's buffer. A
        // dropped handle's bytes go through the scratch buffer and are discarded.
        // Bytes UDX holds come after those the sink staged, so not before those are in;
        // a read of nothing still re-arms `Readable` and sends the window update the
        // reader's room made due.
        let mut got = false;
        if staged && !s.dropped {
            let _ = udx.read(id, &mut []);
        }
        while !staged || s.dropped {
            let n = if s.dropped {
                udx.read(id, &mut self.scratch).unwrap_or(0)
            } else {
                let room = PIPE_CAPACITY.saturating_sub(s.inbound.len()).min(READ_CHUNK);
                if room == 0 {
                    break;
                }
                // Only what UDX holds (at least one byte: a read of nothing ends the
                // loop), so a fresh buffer is not zero-filled a whole chunk ahead.
                let room = room.min(udx.readable(id).max(1));
                s.inbound.fill_with(room, |buf| udx.read(id, buf).unwrap_or(0))
            };
            if n == 0 {
                break;
            }
            got = true;
        }
        pipe.set_inbound_len(s.inbound.len());
        if !s.dropped && udx.readable(id) == 0 {
            s.spilled = false;
        }
        if !s.read_ended && !staged && udx.is_read_ended(id) {
            s.read_ended = true;
            got = true;
        }
        // Bytes the sink put in the pipe count too (this pump runs on their Readable).
        if (got || !s.inbound.is_empty())
            && let Some(w) = s.read_waker.take()
        {
            w.wake();
        }
    }
}

fn close_pipe(pipe: &Pipe, closed: Closed) {
    let mut s = pipe.lock();
    s.closed.get_or_insert(closed);
    for w in [s.read_waker.take(), s.write_waker.take()].into_iter().flatten() {
        w.wake();
    }
}

/// A listening server: the key pair it answers for and the connections it accepts.
///
/// Also a [`futures_core::Stream`] of connections. Dropping it keeps the node
/// listening; call [`Server::close`] to stop (unannounce) it.
pub struct Server {
    id: ListenerId,
    public_key: [u8; 32],
    rx: mpsc::Receiver<SecureStream>,
    node: Option<EndpointHandle<ApiNode>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("public_key", &hex(&self.public_key)).finish_non_exhaustive()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Server {
    /// The public key clients connect to.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The next accepted connection; `None` once the server or node is closed.
    pub async fn accept(&mut self) -> Option<SecureStream> {
        std::future::poll_fn(|cx| Pin::new(&mut self.rx).poll_next(cx)).await
    }

    /// [`Server::accept`], blocking the calling thread.
    pub fn accept_blocking(&mut self) -> Option<SecureStream> {
        futures_executor::block_on(self.accept())
    }

    /// Stops answering handshakes and unannounces the key; established connections
    /// stay up.
    pub fn close(mut self) -> Result<(), DhtError> {
        let Some(node) = self.node.take() else { return Ok(()) };
        let cmd = ApiCommand::Op(Box::new(NodeCommand::Unlisten(self.id)), Route::Ignore);
        node.send(cmd).map_err(|_| DhtError::Closed)
    }
}

impl Stream for Server {
    type Item = SecureStream;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SecureStream>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}
