//! Things shared by the tests of one run — a NATS server, an etcd, a whole
//! engine stack — kept in the run's shared-state folder: the first user
//! starts the thing detached, later users join, and the last user to leave
//! stops it; all under a file lock, with the users listed by pid so that a
//! killed test does not keep anything alive for ever (the reaper stops what
//! no live user holds). `cargo xtask` holds what a tier shares for the
//! whole tier, so that it is started once.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::group::{self, ProcessGroup};
use crate::{procinfo, Layout, RunId};

/// What a shared-state file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SharedState {
    /// The process groups of the shared thing.
    groups: Vec<ProcessGroup>,
    /// The grace period its groups get when the last user leaves.
    stop_grace_ms: u64,
    /// What users need to reach it (a URL, endpoints, JSON).
    value: String,
    /// Processes using it: (pid, start ticks).
    users: Vec<(u32, u64)>,
}

/// What the starter of a shared thing is given.
#[derive(Debug, Clone)]
pub struct StartShared {
    /// Where its logs and data go.
    pub dir: PathBuf,
    /// The state file: every process of it is started with
    /// `ProcessSpec::shared(state_file)`.
    pub state_file: PathBuf,
}

/// What the starter returns: the detached groups, what users need, and how
/// long the groups may take to stop.
#[derive(Debug, Clone)]
pub struct Started {
    /// Every process group of the shared thing.
    pub groups: Vec<ProcessGroup>,
    /// What users need to reach it.
    pub value: String,
    /// The grace period its groups get when the last user leaves.
    pub stop_grace: Duration,
}

/// One user's hold on a shared thing; dropping it leaves, and the last to
/// leave stops the thing.
#[derive(Debug)]
pub struct SharedLease {
    state_file: PathBuf,
    lock_file: PathBuf,
}

/// Joins the run's shared thing `key`, starting it through `start` if no
/// live one exists. Returns what users need and the lease.
pub async fn acquire<F, Fut>(key: &str, start: F) -> anyhow::Result<(String, SharedLease)>
where
    F: FnOnce(StartShared) -> Fut,
    Fut: Future<Output = anyhow::Result<Started>>,
{
    let layout = Layout::from_env();
    let run_id = RunId::current();
    let dir = layout.state_dir.join("shared").join(run_id.as_str());
    Layout::ensure_dir(&dir)?;
    let state_file = dir.join(format!("{key}.json"));
    let lock_file = dir.join(format!("{key}.lock"));
    let me = procinfo::me();
    let mut lock = crate::file_lock::open(&lock_file)?;
    let _guard = lock
        .write()
        .with_context(|| format!("lock {}", lock_file.display()))?;
    let live = read_state(&state_file)
        .filter(|s| !s.groups.is_empty() && s.groups.iter().all(ProcessGroup::is_alive));
    let mut state = match live {
        Some(state) => state,
        None => {
            // The starter is listed before anything starts: a reaper that
            // runs meanwhile (any spawn reaps) sees a live user, and sees
            // none once a killed starter is gone.
            let starting = SharedState {
                groups: Vec::new(),
                stop_grace_ms: 0,
                value: String::new(),
                users: vec![(me.pid, me.start_ticks)],
            };
            std::fs::write(&state_file, serde_json::to_vec(&starting)?)?;
            let thing_dir = layout.run_artifacts(&run_id).join(format!("shared-{key}"));
            Layout::ensure_dir(&thing_dir)?;
            let started = start(StartShared {
                dir: thing_dir,
                state_file: state_file.clone(),
            })
            .await;
            let started = match started {
                Ok(started) => started,
                Err(e) => {
                    let _ = std::fs::remove_file(&state_file);
                    return Err(e.context(format!("starting the run's shared {key}")));
                }
            };
            SharedState {
                groups: started.groups,
                stop_grace_ms: started.stop_grace.as_millis() as u64,
                value: started.value,
                users: Vec::new(),
            }
        }
    };
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
        let Ok(mut lock) = crate::file_lock::open(&self.lock_file) else {
            return;
        };
        let Ok(_guard) = lock.write() else { return };
        let Some(mut state) = read_state(&self.state_file) else {
            return;
        };
        let me = procinfo::me();
        // One entry per lease: a process holding two leases (two acquires)
        // still uses the thing after dropping one of them.
        if let Some(mine) = state
            .users
            .iter()
            .position(|u| *u == (me.pid, me.start_ticks))
        {
            state.users.remove(mine);
        }
        state
            .users
            .retain(|(pid, start)| procinfo::is_same_process_alive(*pid, *start));
        if state.users.is_empty() {
            group::stop_all(&state.groups, Duration::from_millis(state.stop_grace_ms));
            let _ = std::fs::remove_file(&self.state_file);
        } else if let Ok(bytes) = serde_json::to_vec(&state) {
            let _ = std::fs::write(&self.state_file, bytes);
        }
    }
}

/// Whether the shared thing behind `state_file` has a live user.
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
