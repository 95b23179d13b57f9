//! Services shared by the tests of one run (one NATS, one etcd) when no
//! `cargo xtask` started them: the first test that asks starts the service
//! detached, later tests join, and the last user to leave stops it — all
//! under a file lock, with the users listed by pid so that a killed test
//! does not keep a service alive for ever (the reaper stops a service whose
//! listed users are all gone).

use std::fs::OpenOptions;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::{procinfo, Layout, RunId};

/// What a shared-state file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SharedState {
    /// The service's process group.
    pgid: u32,
    /// Its leader's start time.
    leader_start_ticks: u64,
    /// What users need to reach it (a URL, endpoints).
    value: String,
    /// Processes using it: (pid, start ticks).
    users: Vec<(u32, u64)>,
}

/// What the starter of a shared service is given.
#[derive(Debug, Clone)]
pub struct StartShared {
    /// Where the service's logs and data go.
    pub dir: PathBuf,
    /// The state file: the service's `ProcessSpec::shared_state`.
    pub state_file: PathBuf,
}

/// One test's use of a shared service; dropping it leaves, and the last to
/// leave stops the service.
#[derive(Debug)]
pub struct SharedLease {
    state_file: PathBuf,
    lock_file: PathBuf,
}

/// Joins the run's shared service `key`, starting it through `start` if no
/// live one exists. `start` returns the detached group's
/// `(pgid, leader start ticks)` and the value users need. Returns that
/// value and the lease.
pub async fn acquire<F, Fut>(key: &str, start: F) -> anyhow::Result<(String, SharedLease)>
where
    F: FnOnce(StartShared) -> Fut,
    Fut: Future<Output = anyhow::Result<((u32, u64), String)>>,
{
    let layout = Layout::from_env();
    let run_id = RunId::current();
    let dir = layout.state_dir.join("shared").join(run_id.as_str());
    Layout::ensure_dir(&dir)?;
    let state_file = dir.join(format!("{key}.json"));
    let lock_file = dir.join(format!("{key}.lock"));
    let me = procinfo::me();
    let mut lock = open_lock(&lock_file)?;
    let _guard = lock
        .write()
        .with_context(|| format!("lock {}", lock_file.display()))?;
    let mut state = read_state(&state_file)
        .filter(|s| !procinfo::group_members(s.pgid, s.leader_start_ticks).is_empty());
    if state.is_none() {
        let service_dir = layout.run_artifacts(&run_id).join("shared");
        Layout::ensure_dir(&service_dir)?;
        let ((pgid, leader_start_ticks), value) = start(StartShared {
            dir: service_dir,
            state_file: state_file.clone(),
        })
        .await?;
        state = Some(SharedState {
            pgid,
            leader_start_ticks,
            value,
            users: Vec::new(),
        });
    }
    let mut state = state.expect("set above");
    state
        .users
        .retain(|(pid, start)| procinfo::is_same_process_alive(*pid, *start));
    state.users.push((me.pid, me.start_ticks));
    std::fs::write(&state_file, serde_json::to_vec(&state)?)?;
    Ok((
        state.value,
        SharedLease {
            state_file,
            lock_file,
        },
    ))
}

impl Drop for SharedLease {
    fn drop(&mut self) {
        let Ok(mut lock) = open_lock(&self.lock_file) else {
            return;
        };
        let Ok(_guard) = lock.write() else { return };
        let Some(mut state) = read_state(&self.state_file) else {
            return;
        };
        let me = procinfo::me();
        state.users.retain(|u| {
            *u != (me.pid, me.start_ticks) && procinfo::is_same_process_alive(u.0, u.1)
        });
        if state.users.is_empty() {
            crate::process::terminate_group(
                state.pgid,
                state.leader_start_ticks,
                Duration::from_secs(5),
            );
            let _ = std::fs::remove_file(&self.state_file);
        } else if let Ok(bytes) = serde_json::to_vec(&state) {
            let _ = std::fs::write(&self.state_file, bytes);
        }
    }
}

/// Whether the shared service behind `state_file` has a live user.
pub fn has_live_users(state_file: &Path) -> bool {
    read_state(state_file).is_some_and(|s| {
        s.users
            .iter()
            .any(|(pid, start)| procinfo::is_same_process_alive(*pid, *start))
    })
}

fn read_state(path: &Path) -> Option<SharedState> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn open_lock(path: &Path) -> anyhow::Result<fd_lock::RwLock<std::fs::File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    Ok(fd_lock::RwLock::new(file))
}
