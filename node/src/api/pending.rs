//! Results that arrive later, usable from any async executor or from blocking code.
//!
//! The node runs on a driver thread; every call returns at once with a [`Pending`]
//! (a future over a oneshot channel) or a [`LookupStream`] (a stream over a bounded
//! channel). `.wait()` / `.next_blocking()` block the calling thread instead, so the
//! same API serves tokio, async-std, smol and plain threads without depending on any.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_channel::{mpsc, oneshot};
use futures_core::Stream;

use crate::api::error::DhtError;

/// A result that will arrive from the node's thread.
#[must_use = "a Pending does nothing unless awaited or waited on"]
pub struct Pending<T> {
    fut: Pin<Box<dyn Future<Output = Result<T, DhtError>> + Send>>,
}

impl<T> std::fmt::Debug for Pending<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pending")
    }
}

impl<T: Send + 'static> Pending<T> {
    /// A pending result and the sender that completes it.
    pub(crate) fn channel() -> (oneshot::Sender<Result<T, DhtError>>, Self) {
        let (tx, rx) = oneshot::channel();
        (tx, Self::map_rx(rx, |t| t))
    }

    /// A pending result fed by `rx` and transformed by `f` when it arrives.
    pub(crate) fn map_rx<R: Send + 'static>(
        rx: oneshot::Receiver<Result<R, DhtError>>,
        f: impl FnOnce(R) -> T + Send + 'static,
    ) -> Self {
        Self {
            fut: Box::pin(async move {
                match rx.await {
                    Ok(r) => r.map(f),
                    // The node dropped the sender: it was destroyed or its driver stopped.
                    Err(_) => Err(DhtError::Closed),
                }
            }),
        }
    }

    /// A pending result computed by `fut` (combining other pending results).
    pub(crate) fn from_future(
        fut: impl Future<Output = Result<T, DhtError>> + Send + 'static,
    ) -> Self {
        Self { fut: Box::pin(fut) }
    }

    /// A result that is already known.
    pub(crate) fn ready(r: Result<T, DhtError>) -> Self {
        Self { fut: Box::pin(std::future::ready(r)) }
    }

    /// Blocks the current thread until the result arrives.
    pub fn wait(self) -> Result<T, DhtError> {
        futures_executor::block_on(self)
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, DhtError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx)
    }
}

/// One LOOKUP reply: the records a node returned for the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupReply {
    /// The node that answered.
    pub from: std::net::SocketAddrV4,
    /// The records.
    pub peers: Vec<crate::PeerInfo>,
    /// The topic's bump timestamp (ms), 0 if none.
    pub bump: u64,
}

/// The replies of a lookup as they arrive. Ends when the query finishes.
#[derive(Debug)]
pub struct LookupStream {
    pub(crate) rx: mpsc::Receiver<LookupReply>,
}

impl LookupStream {
    /// Blocks until the next reply, or `None` when the lookup has finished.
    pub fn next_blocking(&mut self) -> Option<LookupReply> {
        futures_executor::block_on(std::future::poll_fn(|cx| Pin::new(&mut self.rx).poll_next(cx)))
    }

    /// Blocks until the lookup finishes and returns every reply.
    pub fn collect_blocking(mut self) -> Vec<LookupReply> {
        let mut all = Vec::new();
        while let Some(r) = self.next_blocking() {
            all.push(r);
        }
        all
    }
}

impl Stream for LookupStream {
    type Item = LookupReply;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<LookupReply>> {
        Pin::new(&mut self.rx).poll_next(cx)
    }
}

impl Iterator for LookupStream {
    type Item = LookupReply;
    fn next(&mut self) -> Option<LookupReply> {
        self.next_blocking()
    }
}
