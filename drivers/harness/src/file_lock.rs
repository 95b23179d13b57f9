//! Lock files: how processes that share a folder (tests of a run, runs of
//! a machine) take turns at what must happen once — building an env,
//! generating a model, leasing a port, starting a shared service.

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::Context;

/// An advisory lock on `path` (created if missing, never truncated: the
/// port registry keeps its records in its lock file). Take it with
/// `.write()`; it is released when the guard drops, and by the kernel when
/// the process dies, so a killed holder never blocks the next one.
pub fn open(path: &Path) -> anyhow::Result<fd_lock::RwLock<File>> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("open the lock file {}", path.display()))?;
    Ok(fd_lock::RwLock::new(file))
}
