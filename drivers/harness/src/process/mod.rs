//! Processes the testbed starts: how one is described ([`ProcessSpec`]),
//! run and watched ([`ManagedProcess`]), why one did not come up
//! ([`ProcessError`]), and its log.

mod error;
mod logs;
mod managed;
mod spec;

pub use error::ProcessError;
pub use logs::{tail_of, timestamp};
pub use managed::{retry_on_port_conflict, ManagedProcess};
pub use spec::ProcessSpec;
