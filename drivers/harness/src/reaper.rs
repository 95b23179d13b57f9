//! The run-scoped registry of process groups, and the reaper that kills what
//! a dead test left behind.
//!
//! Every managed process group is recorded under
//! `<state>/runs/<run-id>/procs/` while it lives. A test process that dies
//! without running its destructors (SIGKILL) leaves its records behind:
//! `cargo xtask` reaps its own run at the start and end, and every spawn
//! reaps records whose owner is gone, so a plain `cargo nextest run` cleans
//! up after the previous one too.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::group::ProcessGroup;
use crate::{procinfo, Layout, RunId};

/// What the registry knows of one managed process group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    /// The group.
    pub group: ProcessGroup,
    /// The process that spawned the group.
    pub owner_pid: u32,
    /// The owner's start time, to tell it from a later process with its pid.
    pub owner_start_ticks: u64,
    /// The command line, for reports.
    pub command: String,
    /// The group's log file.
    pub log: PathBuf,
    /// For a service shared by a run's tests: the state file listing its
    /// users. Such a group is an orphan once no listed user lives, whoever
    /// started it.
    #[serde(default)]
    pub shared_state: Option<PathBuf>,
}

/// A process the reaper killed, or a test host's namespace, veth or bridge
/// it removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaped {
    /// Its pid; 0 for a test host's namespace or link.
    pub pid: u32,
    /// Its command line, as /proc showed it (or `netns NAME`, `veth NAME`,
    /// `bridge NAME`).
    pub command: String,
    /// The run it belonged to.
    pub run_id: String,
}

impl Reaped {
    /// `COMMAND (pid N)`, or the namespace or link as named.
    pub fn describe(&self) -> String {
        match self.pid {
            0 => self.command.clone(),
            pid => format!("{} (pid {pid})", self.command),
        }
    }
}

fn runs_dir(layout: &Layout) -> PathBuf {
    layout.state_dir.join("runs")
}

fn procs_dir(layout: &Layout, run_id: &RunId) -> PathBuf {
    runs_dir(layout).join(run_id.as_str()).join("procs")
}

/// Records a live group; returns the record's path, to pass to
/// [`unregister`] once the group is gone.
pub fn register(
    layout: &Layout,
    run_id: &RunId,
    record: &ProcessRecord,
) -> anyhow::Result<PathBuf> {
    let dir = procs_dir(layout, run_id);
    Layout::ensure_dir(&dir)?;
    let path = dir.join(format!(
        "{}-{}.json",
        record.group.pgid, record.group.leader_start_ticks
    ));
    fs::write(&path, serde_json::to_vec_pretty(record)?)?;
    Ok(path)
}

/// Forgets a group that has been torn down.
pub fn unregister(record_path: &Path) {
    let _ = fs::remove_file(record_path);
}

/// Every record of `run_id` still on disk.
pub fn records(layout: &Layout, run_id: &RunId) -> Vec<(PathBuf, ProcessRecord)> {
    read_records(&procs_dir(layout, run_id))
}

fn read_records(dir: &Path) -> Vec<(PathBuf, ProcessRecord)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            let record = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
            Some((path, record))
        })
        .collect()
}

/// Kills (SIGKILL) every live process of every group recorded for `run_id`,
/// whoever owns it, and removes the records. For the end of a run, when
/// nothing of it may survive.
pub fn reap_run(layout: &Layout, run_id: &RunId) -> Vec<Reaped> {
    let mut reaped = Vec::new();
    for (path, record) in records(layout, run_id) {
        reaped.extend(kill(&record, run_id.as_str()));
        unregister(&path);
    }
    reaped.extend(
        crate::hosts::reap_in(&runs_dir(layout).join(run_id.as_str()), true)
            .into_iter()
            .map(|what| Reaped {
                pid: 0,
                command: what,
                run_id: run_id.as_str().to_owned(),
            }),
    );
    let _ = fs::remove_dir(procs_dir(layout, run_id));
    let _ = fs::remove_dir(runs_dir(layout).join(run_id.as_str()));
    reaped
}

/// Kills the groups, in any run, whose owner process is gone: what a
/// SIGKILLed test or xtask left behind.
pub fn reap_orphans(layout: &Layout) -> Vec<Reaped> {
    let mut reaped = Vec::new();
    let Ok(runs) = fs::read_dir(runs_dir(layout)) else {
        return reaped;
    };
    for run in runs.filter_map(|e| e.ok()) {
        let run_name = run.file_name().to_string_lossy().into_owned();
        let dir = run.path().join("procs");
        for (path, record) in read_records(&dir) {
            let in_use = match &record.shared_state {
                Some(state) => crate::shared::has_live_users(state),
                None => procinfo::is_same_process_alive(record.owner_pid, record.owner_start_ticks),
            };
            if in_use {
                continue;
            }
            reaped.extend(kill(&record, &run_name));
            unregister(&path);
        }
        let _ = fs::remove_dir(&dir);
        // After the processes: a namespace outlives its name while a
        // process still runs in it.
        reaped.extend(
            crate::hosts::reap_in(&run.path(), false)
                .into_iter()
                .map(|what| Reaped {
                    pid: 0,
                    command: what,
                    run_id: run_name.clone(),
                }),
        );
        let _ = fs::remove_dir(run.path());
    }
    reaped
}

fn kill(record: &ProcessRecord, run_id: &str) -> Vec<Reaped> {
    // A process already exiting (its command line is gone) is not a leak;
    // zombies are not members at all.
    let commands: Vec<(u32, String)> = record
        .group
        .members()
        .iter()
        .filter_map(|m| {
            procinfo::cmdline(m.pid)
                .filter(|c| !c.is_empty())
                .map(|c| (m.pid, c))
        })
        .collect();
    record.group.kill();
    commands
        .into_iter()
        .map(|(pid, command)| Reaped {
            pid,
            command,
            run_id: run_id.to_owned(),
        })
        .collect()
}
