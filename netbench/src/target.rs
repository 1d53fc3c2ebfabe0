//! Starting, probing, sampling and stopping the processes under test, and netbench's
//! own raw echo baseline.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tern_udp::{OutDatagram, RecvBatch, SendBatch, SocketOptions};
use tern_wire::rpc::{Message, Request, Response};
use tern_wire::{AddrList, Decode, Encode};

use crate::plan::{Target, TargetKind};

/// Where the binaries and the JS reference live.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Directory holding `tern` and `tern-loadgen` (netbench's own directory by default).
    pub bin_dir: PathBuf,
    /// The repository root (for `interop/`).
    pub repo: PathBuf,
}

impl Tools {
    /// Path of a sibling binary.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// A running target process.
pub struct Running {
    child: Child,
    /// Its address.
    pub addr: SocketAddrV4,
}

impl Running {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the process (SIGKILL after a short grace) and reaps it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `target` on 127.0.0.1:`port` and waits (≤ 20 s) until it answers a PING.
pub fn start(target: &Target, port: u16, tools: &Tools) -> anyhow::Result<Running> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut cmd = match target.kind {
        TargetKind::Tern => {
            let mut c = Command::new(tools.bin("tern"));
            c.args([
                "--log",
                "warn",
                "bootstrap",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ]);
            c
        }
        TargetKind::Js => {
            let mut c = Command::new("node");
            c.arg("bench-target.js").arg(port.to_string()).current_dir(tools.repo.join("interop"));
            c
        }
        TargetKind::Echo => {
            let mut c = Command::new(std::env::current_exe().context("locating netbench")?);
            c.args(["echo", "--port", &port.to_string()]);
            c
        }
    };
    cmd.args(&target.args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
    let child = cmd.spawn().with_context(|| format!("starting target {}", target.name))?;
    let running = Running { child, addr };
    wait_answering(addr, Duration::from_secs(20))
        .with_context(|| format!("target {} never answered a PING on {addr}", target.name))?;
    Ok(running)
}

/// Sends PINGs until one is answered or `limit` passes.
fn wait_answering(addr: SocketAddrV4, limit: Duration) -> anyhow::Result<()> {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let start = Instant::now();
    let mut tid = 1u16;
    while start.elapsed() < limit {
        let ping = Request {
            tid,
            to: addr,
            id: None,
            token: None,
            internal: true,
            command: 0,
            target: None,
            value: None,
        };
        sock.send_to(&ping.to_vec(), addr)?;
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && matches!(Message::decode(&buf[..n]), Ok(Message::Response(r)) if r.tid == tid)
        {
            return Ok(());
        }
        tid = tid.wrapping_add(1);
    }
    bail!("no answer within {limit:?}")
}

/// CPU time (user + system) of a process so far, in seconds, from /proc.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Kernel clock ticks per second (USER_HZ), 100 on every mainstream Linux.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The raw echo baseline: answers every dht-rpc request with the smallest valid
/// response (same tid, flags 0) using recvmmsg/sendmmsg batches of 32, as the
/// "recvmmsg/sendmmsg ×32 echo" the project measures against. With `threads` > 1 each
/// thread binds its own SO_REUSEPORT socket on the port, as a sharded tern node does, so
/// the kernel spreads requests over them the same way. Runs until killed.
pub fn echo(port: u16, threads: usize) -> anyhow::Result<()> {
    let options = SocketOptions { reuse_port: threads > 1, ..SocketOptions::default() };
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    // Bind every socket before serving, so a bind error ends the process at once.
    let sockets = (0..threads.max(1))
        .map(|_| tern_udp::UdpSocket::bind(addr, &options))
        .collect::<Result<Vec<_>, _>>()?;
    let mut workers = Vec::new();
    for socket in sockets {
        workers.push(std::thread::spawn(move || echo_loop(&socket)));
    }
    for w in workers {
        w.join().map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    }
    Ok(())
}

fn echo_loop(socket: &tern_udp::UdpSocket) -> anyhow::Result<()> {
    let mut recv = RecvBatch::new(32, 2048);
    let mut send = SendBatch::new(32);
    let mut out: Vec<(SocketAddrV4, [u8; 10])> = Vec::with_capacity(32);
    loop {
        socket.wait_readable(Duration::from_secs(1))?;
        let n = recv.recv(socket.as_fd()).unwrap_or_default();
        if n == 0 {
            continue;
        }
        out.clear();
        for d in recv.iter() {
            let Ok(Message::Request(q)) = Message::decode(d.data) else { continue };
            let res = Response {
                tid: q.tid,
                to: d.from,
                id: None,
                token: None,
                closer_nodes: AddrList::EMPTY,
                error: 0,
                value: None,
            };
            let mut buf = [0u8; 10];
            if res.encode(&mut buf).is_ok() {
                out.push((d.from, buf));
            }
        }
        let mut items =
            out.iter().map(|(dest, b)| OutDatagram { dest: *dest, ttl: None, data: b, tail: &[] });
        let _ = send.send(socket.as_fd(), &mut items);
    }
}

/// Finds the repository root: the nearest ancestor of `start` holding `interop/`.
pub fn find_repo(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|p| p.join("interop/package.json").is_file()).map(Path::to_path_buf)
}
