//! The admin listener (`--admin HOST:PORT`, off by default): a deliberately tiny
//! HTTP/1.1 responder on a std `TcpListener` thread, so that metrics and health cost no
//! web framework. It serves
//!
//! - `GET /metrics`: Prometheus text exposition (see [`metrics`]);
//! - `GET /healthz`: 200 while the process runs;
//! - `GET /readyz`: 200 when every node is persistent and its routing table holds at
//!   least [`READY_TABLE_NODES`] nodes (k), else 503.
//!
//! It is meant for a loopback or management address, but still defends itself: at most
//! [`MAX_CONNECTIONS`] connections at once (more are refused with 503), a read
//! timeout, a cap on the request head, one request per connection, and only `GET`.

pub mod metrics;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use tern::DhtMonitor;

/// Connections served at once; a scraper and a health checker need two.
pub const MAX_CONNECTIONS: usize = 16;
/// Largest request head read (request line + headers); a GET needs a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long a client may take to send its request (and to read the answer).
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Routing-table size at which a node counts as ready: k, the bucket size.
pub const READY_TABLE_NODES: usize = 20;
/// How often the accept loop checks whether it should stop.
const POLL: Duration = Duration::from_millis(50);

/// What the admin listener reports on.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Every node of the process.
    pub nodes: Vec<DhtMonitor>,
    /// The driver backend (`io_uring` or `epoll`).
    pub backend: String,
}

/// A running admin listener; stops when dropped or with [`AdminServer::stop`].
#[derive(Debug)]
pub struct AdminServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `addr` and serves `observed` on a background thread.
    pub fn start(addr: SocketAddr, observed: Observed) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(addr)
            .with_context(|| format!("binding the admin listener {addr}"))?;
        // Non-blocking accept polled with a short sleep, so stopping needs no wake-up
        // connection.
        listener.set_nonblocking(true).context("admin listener")?;
        let addr = listener.local_addr().context("admin listener")?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("tern-admin".into())
            .spawn({
                let stop = stop.clone();
                move || accept_loop(&listener, &Arc::new(observed), &stop)
            })
            .context("starting the admin thread")?;
        tracing::info!(%addr, "admin listener up: /metrics /healthz /readyz");
        Ok(Self { stop, thread: Some(thread) })
    }

    /// Stops accepting and waits for the accept thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn accept_loop(listener: &TcpListener, observed: &Arc<Observed>, stop: &AtomicBool) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    active.fetch_sub(1, Ordering::SeqCst);
                    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                    let _ = respond(&mut stream, 503, "text/plain", "too many admin connections\n");
                    continue;
                }
                let (observed, held) = (observed.clone(), active.clone());
                let spawned =
                    std::thread::Builder::new().name("tern-admin-conn".into()).spawn(move || {
                        serve(stream, &observed);
                        held.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                tracing::debug!(error = %e, "admin accept");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Reads one request head (bounded in size and time) and answers it.
fn serve(mut stream: TcpStream, observed: &Observed) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    let complete = loop {
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if len == buf.len() {
            break false;
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
    };
    if !complete {
        let _ = respond(&mut stream, 431, "text/plain", "request head too large\n");
        linger(stream);
        return;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let _ = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => {
            respond(&mut stream, 200, metrics::CONTENT_TYPE, &metrics::render(observed))
        }
        ("GET", "/healthz") => respond(&mut stream, 200, "text/plain", "ok\n"),
        ("GET", "/readyz") => match readiness(observed) {
            Ok(()) => respond(&mut stream, 200, "text/plain", "ready\n"),
            Err(why) => respond(&mut stream, 503, "text/plain", &format!("not ready: {why}\n")),
        },
        ("GET", _) => respond(&mut stream, 404, "text/plain", "not found\n"),
        _ => respond(&mut stream, 405, "text/plain", "only GET\n"),
    };
}

/// Ready: every node persistent, with at least k nodes in its table.
fn readiness(observed: &Observed) -> Result<(), String> {
    for node in &observed.nodes {
        let addr = node.local_addr().map_or_else(|| "?".to_owned(), |a| a.to_string());
        if !node.is_persistent() {
            return Err(format!("{addr} is not persistent"));
        }
        let table = node.stats().wait().map_err(|e| format!("{addr}: {e}"))?.table_len;
        if table < READY_TABLE_NODES {
            return Err(format!("{addr} knows {table} < {READY_TABLE_NODES} nodes"));
        }
    }
    Ok(())
}

/// Reads and discards (bounded) what the client still sends before closing: closing
/// with unread input makes the kernel send RST, which can destroy the answer in flight.
fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        if matches!(stream.read(&mut sink), Ok(0) | Err(_)) {
            break;
        }
    }
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let allow = if status == 405 { "Allow: GET\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
