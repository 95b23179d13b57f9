//! The mechanism every driver shares: where things live, which run this is,
//! loopback ports that no two tests share, process groups and the one way
//! they are stopped, managed processes with readiness probes, the reaper for
//! what a killed test left behind, things shared by a run's tests, polling,
//! and per-test artifacts.
//!
//! The harness knows no service: NATS, etcd and Dynamo live in their own
//! driver crates and build on what is here.
//!
//! Without the default `runtime` feature only what needs no async runtime
//! is built (layout, pins, tools, run ids, process groups, the reaper,
//! ports): what `cargo xtask` links, so that it builds in seconds.

pub mod file_lock;
pub mod group;
pub mod hash;
pub mod hosts;
pub mod layout;
pub mod loopback_get;
pub mod pins;
pub mod ports;
pub mod procinfo;
pub mod pyenv;
pub mod reaper;
pub mod run_id;
pub mod shared;
pub mod shell;
pub mod tool;

#[cfg(feature = "runtime")]
pub mod artifacts;
#[cfg(feature = "runtime")]
pub mod poll;
#[cfg(feature = "runtime")]
pub mod probe;
#[cfg(feature = "runtime")]
pub mod process;
#[cfg(feature = "runtime")]
pub mod signals;

pub use group::ProcessGroup;
pub use layout::Layout;
pub use pins::Pins;
pub use ports::{PortLease, PortRange};
pub use run_id::RunId;

#[cfg(feature = "runtime")]
pub use artifacts::{run_test, TestContext};
#[cfg(feature = "runtime")]
pub use poll::{Check, Poll};
#[cfg(feature = "runtime")]
pub use probe::Probe;
#[cfg(feature = "runtime")]
pub use process::{retry_on_port_conflict, ManagedProcess, ProcessError, ProcessSpec};
