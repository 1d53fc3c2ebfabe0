//! Process lifecycle of the long-running commands: SIGTERM / SIGINT request a clean
//! stop — every node unannounces what it announced and finishes the requests in its
//! mailbox (`Dht::destroy`), the driver threads stop, and the process exits 0 — within
//! a deadline (`--shutdown-timeout`). A second signal while stopping exits at once
//! with status 1, for an operator who does not want to wait.
//!
//! Signals are caught with `signal-hook`'s flag API: the handler only stores to an
//! atomic, and the main thread polls it, so nothing runs in signal context.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use signal_hook::consts::{SIGINT, SIGTERM};
use tern::{Dht, NodeDriver};

/// The signals that stop the process cleanly.
const STOP_SIGNALS: [i32; 2] = [SIGTERM, SIGINT];

/// Whether a stop signal arrived (installed once, before the nodes start, so a signal
/// during start-up is not lost).
#[derive(Debug, Clone)]
pub struct StopSignal {
    stop: Arc<AtomicBool>,
    which: Arc<AtomicUsize>,
}

impl StopSignal {
    /// Installs the handlers for SIGTERM and SIGINT.
    pub fn install() -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let which = Arc::new(AtomicUsize::new(0));
        for signal in STOP_SIGNALS {
            // Registered before the flag itself: on the first signal `stop` is still
            // false so this does nothing; on a second one it exits the process.
            signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))
                .context("installing the signal handler")?;
            signal_hook::flag::register(signal, Arc::clone(&stop))
                .context("installing the signal handler")?;
            signal_hook::flag::register_usize(signal, Arc::clone(&which), signal as usize)
                .context("installing the signal handler")?;
        }
        Ok(Self { stop, which })
    }

    /// Whether SIGTERM or SIGINT arrived.
    pub fn received(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The name of the signal that arrived.
    fn name(&self) -> &'static str {
        match self.which.load(Ordering::SeqCst) as i32 {
            SIGTERM => "SIGTERM",
            SIGINT => "SIGINT",
            _ => "none",
        }
    }

    /// Sleeps up to `d`, waking early (within a tenth of a second) on a signal.
    pub fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.received() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
}

/// Stops `dhts` (all at once: each unannounces and drains its mailbox) and then the
/// shared `driver`, waiting at most `timeout`. Past the deadline it gives up with an
/// error (the process then exits non-zero, leaving the rest to the OS).
pub fn shutdown(
    signal: &StopSignal,
    dhts: Vec<Dht>,
    driver: Option<NodeDriver>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    tracing::info!(
        signal = signal.name(),
        nodes = dhts.len(),
        timeout_s = timeout.as_secs_f64(),
        "shutting down: unannouncing and finishing in-flight requests"
    );
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("tern-shutdown".into())
        .spawn(move || {
            let failed = std::thread::scope(|s| {
                let stops: Vec<_> =
                    dhts.into_iter().map(|d| s.spawn(move || d.destroy())).collect();
                stops.into_iter().map(|h| h.join()).filter(|r| !matches!(r, Ok(Ok(())))).count()
            });
            if let Some(driver) = driver
                && let Err(e) = driver.shutdown()
            {
                tracing::warn!(error = %e, "stopping the driver");
            }
            let _ = tx.send(failed);
        })
        .context("starting the shutdown thread")?;
    match rx.recv_timeout(timeout) {
        Ok(failed) => {
            if failed > 0 {
                tracing::warn!(failed, "some nodes were already closed or failed to stop");
            }
            tracing::info!(elapsed_ms = start.elapsed().as_millis() as u64, "stopped");
            Ok(())
        }
        Err(_) => bail!("shutdown did not finish within {timeout:?}"),
    }
}
