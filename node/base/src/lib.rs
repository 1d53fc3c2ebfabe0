//! tern-base: the small vocabulary shared by every tern crate.
//!
//! Sans-IO cores never read a clock: the driver stamps each batch of input with a
//! [`Timestamp`] and passes it down. Everything here is plain data with no I/O, so it
//! can be used by cores, drivers and the simulator alike.

mod endpoint;
mod id;
mod rng;
mod time;
mod tx;

pub use endpoint::{Endpoint, OpenError, SocketOp, SocketSpec};
pub use id::NodeId;
pub use rng::Rng;
pub use time::Timestamp;
pub use tx::{SocketId, TxMeta, TxQueue};
