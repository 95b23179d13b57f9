//! Why a managed process did not come up.

use std::path::PathBuf;
use std::time::Duration;

/// Why a managed process did not come up.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started at all.
    #[error("cannot start {name} (`{command}`): {source}{hint}")]
    Spawn {
        /// The process's name.
        name: String,
        /// Its command line.
        command: String,
        /// The OS error.
        source: std::io::Error,
        /// What to do about it, when known.
        hint: String,
    },
    /// What it needs before a spawn is missing or wrong (its binary is not
    /// provisioned, an argument is impossible).
    #[error("cannot start {name}: {reason}")]
    Setup {
        /// The process's name.
        name: String,
        /// What is missing or wrong, and what to do.
        reason: String,
    },
    /// The process exited before it was ready.
    #[error("{name} exited with {status} before it was ready (`{command}`); last lines of {log}:\n{tail}")]
    ExitedEarly {
        /// The process's name.
        name: String,
        /// Its command line.
        command: String,
        /// How it ended.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// No port could be leased for it.
    #[error("cannot lease a port for {name}: {reason}")]
    NoPort {
        /// The process's name.
        name: String,
        /// Why not.
        reason: String,
    },
    /// The probe never succeeded in time.
    #[error("{name} was not ready after {waited:?}: probe {probe} kept failing (last: {last_error}); the process is still running; its log is {log}; last lines:\n{tail}")]
    ProbeTimeout {
        /// The process's name.
        name: String,
        /// The probe, with its address.
        probe: String,
        /// How long it waited.
        waited: Duration,
        /// The last probe failure.
        last_error: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
}

impl ProcessError {
    /// True when the process died because its port was taken: the caller
    /// retries on another port instead of failing.
    pub fn is_port_conflict(&self) -> bool {
        match self {
            ProcessError::ExitedEarly { tail, .. } => {
                let t = tail.to_ascii_lowercase();
                t.contains("address already in use")
                    || t.contains("addrinuse")
                    || t.contains("bind: address")
            }
            _ => false,
        }
    }
}
