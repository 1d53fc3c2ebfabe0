//! Choosing the backend: [`IoMode`] (what was asked for), [`IoBackend`] (what runs),
//! and the io_uring probe behind [`IoMode::Auto`].
//!
//! io_uring is often unavailable where tern runs: Docker's default seccomp profile has
//! blocked the io_uring syscalls since 2023 (EPERM), some kernels are built without it
//! (ENOSYS), and `kernel.io_uring_disabled` switches it off (2) or limits it to a group
//! (1). Auto probes once per process — create a small ring, submit a NOP, then run the
//! real backend on a loopback socket (multishot RECVMSG, SENDMSG, buffer ring) — and
//! on failure logs one warning that names the likely cause and runs epoll, which
//! serves the same endpoints with the same loop (DESIGN.md "One core, three drivers").

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode};
use tern_udp::{OutDatagram, SendBatch, SocketOptions, UdpSocket};

use crate::backend::uring::{Uring, UringConfig};
use crate::backend::{Backend, RecvSource};

/// Which backend a driver should use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring if the probe passes, else epoll with one warning saying why.
    #[default]
    Auto,
    /// io_uring or fail to start ([`crate::DriverError::Uring`]).
    Uring,
    /// The portable epoll backend, without probing.
    Epoll,
}

/// `auto`, `uring` (or `io_uring`) or `epoll`, as `--io` and `TERN_IO` spell them.
impl FromStr for IoMode {
    type Err = ParseIoModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(Self::Uring),
            "epoll" => Ok(Self::Epoll),
            _ => Err(ParseIoModeError(s.to_owned())),
        }
    }
}

impl fmt::Display for IoMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Uring => "uring",
            Self::Epoll => "epoll",
        })
    }
}

/// A string that is not an [`IoMode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown io mode {0:?} (expected auto, uring or epoll)")]
pub struct ParseIoModeError(String);

/// The backend a driver runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoBackend {
    /// io_uring: multishot RECVMSG on a provided-buffer ring, batched SENDMSG.
    Uring,
    /// Level-triggered epoll with recvmmsg/sendmmsg.
    Epoll,
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Uring => "io_uring",
            Self::Epoll => "epoll",
        })
    }
}

/// Why io_uring cannot be used here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UringUnavailable {
    /// `io_uring_setup` was refused with EPERM: a seccomp filter (Docker's default
    /// profile since 2023) or `kernel.io_uring_disabled` = 1 without group membership.
    #[error("io_uring is blocked (EPERM): {}", if *.sysctl == 1 {
        "kernel.io_uring_disabled=1 allows it only for the io_uring_group"
    } else {
        "a seccomp filter blocks it (Docker's default profile since 2023, a systemd \
         SystemCallFilter)"
    })]
    Blocked {
        /// The `kernel.io_uring_disabled` value read (0 if unreadable).
        sysctl: u8,
    },
    /// `io_uring_setup` does not exist (ENOSYS): a kernel without io_uring, or a
    /// seccomp filter that hides it.
    #[error("io_uring is unavailable (ENOSYS): the kernel lacks it or a seccomp filter hides it")]
    NoSyscall,
    /// `kernel.io_uring_disabled` = 2: disabled for every process.
    #[error("io_uring is disabled (kernel.io_uring_disabled=2)")]
    Disabled,
    /// io_uring works but lacks something tern needs, or failed otherwise.
    #[error("io_uring probe failed: {0}")]
    Failed(String),
}

/// The process-wide result of probing the real kernel (probing is not free, and the
/// warning should appear once, however many drivers a process starts).
static PROBED: OnceLock<Result<(), UringUnavailable>> = OnceLock::new();

/// Guards the one fallback warning of a simulated probe failure.
static SIMULATED_WARNING: std::sync::Once = std::sync::Once::new();

/// Resolves `mode` to a backend. `simulate` makes the probe report that errno from
/// `io_uring_setup` (tests of the fallback path).
pub(crate) fn choose(mode: IoMode, simulate: Option<i32>) -> Result<IoBackend, UringUnavailable> {
    match mode {
        IoMode::Epoll => Ok(IoBackend::Epoll),
        IoMode::Uring => match simulate {
            Some(errno) => Err(classify(errno, sysctl())),
            None => PROBED.get_or_init(probe).clone().map(|()| IoBackend::Uring),
        },
        IoMode::Auto => {
            let result = match simulate {
                Some(errno) => {
                    let e = classify(errno, sysctl());
                    // Once per process, like the real probe's warning: a process
                    // starting several drivers (a sharded node next to a plain one)
                    // must read the same as where io_uring is really blocked.
                    SIMULATED_WARNING.call_once(|| warn_fallback(&e));
                    Err(e)
                }
                None => PROBED
                    .get_or_init(|| {
                        let r = probe();
                        if let Err(e) = &r {
                            warn_fallback(e);
                        }
                        r
                    })
                    .clone(),
            };
            Ok(if result.is_ok() { IoBackend::Uring } else { IoBackend::Epoll })
        }
    }
}

fn warn_fallback(e: &UringUnavailable) {
    tracing::warn!("{e}; using the epoll backend");
}

/// `kernel.io_uring_disabled`, 0 if the file is missing (kernels before 6.6).
fn sysctl() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn classify(errno: i32, sysctl: u8) -> UringUnavailable {
    match errno {
        libc::EPERM | libc::EACCES => UringUnavailable::Blocked { sysctl },
        libc::ENOSYS => UringUnavailable::NoSyscall,
        _ => UringUnavailable::Failed(io::Error::from_raw_os_error(errno).to_string()),
    }
}

fn probe() -> Result<(), UringUnavailable> {
    let sysctl = sysctl();
    if sysctl >= 2 {
        return Err(UringUnavailable::Disabled);
    }
    let failed = |what: &str, e: io::Error| UringUnavailable::Failed(format!("{what}: {e}"));
    let mut ring = IoUring::new(4).map_err(|e| match e.raw_os_error() {
        Some(errno) => classify(errno, sysctl),
        None => failed("io_uring_setup", e),
    })?;
    let nop = opcode::Nop::new().build().user_data(7);
    // SAFETY: a NOP points at no memory.
    unsafe { ring.submission().push(&nop) }
        .map_err(|_| UringUnavailable::Failed("submission queue full".into()))?;
    ring.submit_and_wait(1).map_err(|e| failed("submitting a NOP", e))?;
    match ring.completion().next() {
        Some(c) if c.result() >= 0 => {}
        Some(c) => return Err(failed("NOP", io::Error::from_raw_os_error(-c.result()))),
        None => return Err(UringUnavailable::Failed("NOP did not complete".into())),
    }
    drop(ring);
    round_trip().map_err(|e| failed("loopback round trip", e))
}

/// Runs the real backend on a loopback socket: one datagram sent to itself with
/// SENDMSG must come back through multishot RECVMSG and the buffer ring.
fn round_trip() -> io::Result<()> {
    let config = UringConfig { recv_slots: 4, slot_len: 64, max_datagram: 64, send_batch: 4 };
    let (mut backend, mut rx) = Uring::new(&config)?;
    let options = SocketOptions {
        recv_buffer_sizes: Vec::new(),
        send_buffer_sizes: Vec::new(),
        ..SocketOptions::default()
    };
    let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0), &options)
        .map_err(|e| io::Error::other(e.to_string()))?;
    const TOKEN: u64 = 1;
    backend.register(socket.as_fd(), TOKEN)?;
    let payload = b"tern io_uring probe";
    let mut batch = SendBatch::new(1);
    let d = OutDatagram { dest: socket.local_addr(), ttl: None, data: payload, tail: &[] };
    let out = backend.send(&socket, &mut batch, &mut std::iter::once(d).peekable());
    if out.sent != 1 {
        return Err(io::Error::other(format!("SENDMSG: {out:?}")));
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut ready = Vec::new();
    let got = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        ready.clear();
        backend.wait(Some(left), &mut rx, &mut ready)?;
        if ready.iter().any(|r| r.token == TOKEN && r.readable) && rx.recv(TOKEN, &socket)? > 0 {
            break rx.datagrams().any(|d| d.data == payload && d.from == socket.local_addr());
        }
    };
    backend.deregister(socket.as_fd())?;
    if got {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::TimedOut, "no datagram through multishot RECVMSG"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse() {
        assert_eq!("auto".parse(), Ok(IoMode::Auto));
        assert_eq!("URING".parse(), Ok(IoMode::Uring));
        assert_eq!("io_uring".parse(), Ok(IoMode::Uring));
        assert_eq!("epoll".parse(), Ok(IoMode::Epoll));
        assert!("kqueue".parse::<IoMode>().is_err());
    }

    #[test]
    fn causes_are_named() {
        let eperm = classify(libc::EPERM, 0).to_string();
        assert_eq!(
            eperm,
            "io_uring is blocked (EPERM): a seccomp filter blocks it (Docker's default profile \
             since 2023, a systemd SystemCallFilter)"
        );
        assert!(classify(libc::EPERM, 1).to_string().contains("io_uring_disabled=1"));
        assert!(classify(libc::ENOSYS, 0).to_string().contains("ENOSYS"));
        assert_eq!(choose(IoMode::Epoll, None), Ok(IoBackend::Epoll));
        assert_eq!(choose(IoMode::Auto, Some(libc::EPERM)), Ok(IoBackend::Epoll));
        assert_eq!(choose(IoMode::Uring, Some(libc::ENOSYS)), Err(UringUnavailable::NoSyscall));
    }
}
