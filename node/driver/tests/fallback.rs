//! The automatic fallback: when the io_uring probe fails (simulated here as the EPERM
//! Docker's seccomp profile returns), `IoMode::Auto` logs one warning naming the cause
//! and the driver still serves, on epoll; `IoMode::Uring` refuses to start instead.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Client, TestEp, bound};
use tern_driver::{DriverBuilder, DriverError, IoBackend, IoMode, UringUnavailable};

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[test]
fn a_blocked_io_uring_falls_back_to_epoll_with_one_clear_warning() {
    let logs = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let driver = tracing::subscriber::with_default(subscriber, || {
        DriverBuilder::new()
            .io(IoMode::Auto)
            .simulate_uring_errno(Some(libc::EPERM))
            .start::<TestEp>()
            .unwrap()
    });
    assert_eq!(driver.backend(), IoBackend::Epoll);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains(
            "io_uring is blocked (EPERM): a seccomp filter blocks it (Docker's default profile \
             since 2023, a systemd SystemCallFilter); using the epoll backend"
        ),
        "{text}"
    );
    let started = text.lines().find(|l| l.contains("driver started")).expect("startup line");
    assert!(started.contains("backend=epoll"), "{started}");

    // And it serves.
    let (ep, events) = TestEp::echo(b"ok:");
    let _handle = driver.spawn_endpoint(ep).unwrap();
    let server = bound(&events)[0];
    let mut client = Client::new();
    client.send(server, b"ping");
    assert_eq!(client.recv_one(Duration::from_secs(10)).unwrap().1, b"ok:ping");
    driver.shutdown().unwrap();
}

#[test]
fn forcing_io_uring_where_it_is_blocked_fails_to_start() {
    let result = DriverBuilder::new()
        .io(IoMode::Uring)
        .simulate_uring_errno(Some(libc::ENOSYS))
        .start::<TestEp>();
    match result {
        Err(DriverError::Uring(UringUnavailable::NoSyscall)) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_startup_line_names_the_backend() {
    let logs = Capture::default();
    let subscriber = tracing_subscriber::fmt().with_writer(logs.clone()).with_ansi(false).finish();
    let driver = tracing::subscriber::with_default(subscriber, || {
        DriverBuilder::new().io(IoMode::Uring).start::<TestEp>().unwrap()
    });
    assert_eq!(driver.backend(), IoBackend::Uring);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let started = text.lines().find(|l| l.contains("driver started")).expect("startup line");
    assert!(started.contains("backend=io_uring"), "{started}");
}
