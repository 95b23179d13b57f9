//! The mechanism every driver shares: where things live, which run this is,
//! loopback ports that no two tests share, managed process groups with
//! readiness probes and teardown, the reaper for what a killed test left
//! behind, and per-test artifacts.
//!
//! The harness knows no service: NATS, etcd and Dynamo live in their own
//! driver crates and build on what is here.

pub mod artifacts;
pub mod layout;
pub mod pins;
pub mod ports;
pub mod probe;
pub mod process;
pub mod procinfo;
pub mod reaper;
pub mod run_id;
pub mod shared;
pub mod signals;
pub mod tool;

pub use artifacts::{run_test, TestContext};
pub use layout::Layout;
pub use pins::Pins;
pub use ports::{PortLease, PortRange};
pub use probe::Probe;
pub use process::{retry_on_port_conflict, ManagedProcess, ProcessError, ProcessSpec};
pub use run_id::RunId;
pub use tool::Tool;
