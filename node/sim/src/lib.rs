//! tern-sim: a deterministic world of thousands of tern [`tern_core::Node`]s over
//! [`tern_netsim`], with workloads, checkers and a seeded swarm runner (DESIGN.md "One
//! core, three drivers": the simulator is driver (c); the idea of TigerBeetle's VOPR).
//!
//! * [`world`]: [`World`] — nodes, virtual time, the (time, seq) event heap, op tracking.
//! * [`workload`]: populate a world, run batches of lookups / announces / writes, the
//!   liveness check.
//! * [`check`]: safety checkers that read the nodes from outside and compare them with
//!   the world's ground truth.
//! * [`swarm`]: draws fault and workload knobs from a seed, runs safety then liveness,
//!   and on failure gives the one-line command that reproduces the run.
//! * [`trace`]: the event-trace digest that proves two runs of a seed are identical.
//!
//! Nothing here reads a clock or the OS RNG (this crate shares the core crates'
//! `clippy.toml`); the `tern-sim` binary times benchmark runs with one documented
//! exception.

pub mod check;
pub mod ops;
pub mod swarm;
mod tamper;
pub mod trace;
pub mod workload;
pub mod world;

pub use check::{Violation, safety};
pub use ops::{Ledger, OpKind, OpRecord, Outcome};
pub use trace::{Trace, TraceLevel};
pub use world::{Mode, NodeState, Placement, SimNode, World, WorldConfig, WorldStats};
