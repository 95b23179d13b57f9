//! A process group, known by its id and its leader's start time, and the
//! one way the testbed stops groups: SIGTERM (with SIGCONT, so a stalled
//! group can act on it), up to a grace period for every member to exit,
//! then SIGKILL to whatever is left. A managed process, its drop, the
//! signal thread, shared services and the reaper all stop groups through
//! [`stop_all`].

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::procinfo::{self, ProcStat};

/// How often a stop looks at `/proc` while it waits.
const POLL: Duration = Duration::from_millis(5);

/// A process group: the id plus the leader's start time, so that a group id
/// reused by an unrelated, older group is never matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessGroup {
    /// The process group id (the leader's pid).
    pub pgid: u32,
    /// The leader's start time in clock ticks after boot.
    pub leader_start_ticks: u64,
}

/// What a stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stopped {
    /// Groups whose members all exited within the grace period.
    pub exited: usize,
    /// Processes that were still alive after it and got SIGKILL.
    pub killed: usize,
    /// How long it took.
    pub took: Duration,
}

impl ProcessGroup {
    /// The group led by the live process `pgid`, if it runs.
    pub fn of_leader(pgid: u32) -> Option<ProcessGroup> {
        procinfo::stat(pgid).map(|s| ProcessGroup {
            pgid,
            leader_start_ticks: s.start_ticks,
        })
    }

    /// Every live member: the leader and the descendants that stayed in
    /// its group.
    pub fn members(&self) -> Vec<ProcStat> {
        // A zombie is dead already (its parent has yet to collect it): it
        // neither keeps the group alive nor counts as a leak.
        procinfo::group_members(self.pgid, self.leader_start_ticks)
            .into_iter()
            .filter(|m| m.state != 'Z')
            .collect()
    }

    /// CPU time its live members have used, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let ticks: u64 = self.members().iter().map(|m| m.cpu_ticks).sum();
        ticks as f64 / procinfo::ticks_per_second() as f64
    }

    /// Whether any member lives.
    pub fn is_alive(&self) -> bool {
        !self.members().is_empty()
    }

    /// Sends `signal` to the group (nothing happens for a group already
    /// gone).
    pub fn signal(&self, signal: i32) {
        // SAFETY: killpg has no memory preconditions.
        unsafe { libc::killpg(self.pgid as i32, signal) };
    }

    /// Stops this group; see [`stop_all`].
    pub fn stop(&self, grace: Duration) -> Stopped {
        stop_all(std::slice::from_ref(self), grace)
    }

    /// SIGKILL to every member now, by group and by pid (a member may
    /// have moved to another group). Returns the members it found.
    pub fn kill(&self) -> Vec<ProcStat> {
        let members = self.members();
        self.signal(libc::SIGKILL);
        for m in &members {
            // SAFETY: plain kill of a pid matched by group and start time.
            unsafe { libc::kill(m.pid as i32, libc::SIGKILL) };
        }
        members
    }
}

/// Stops every group at once: SIGTERM and SIGCONT to each, then waits up
/// to `grace` for their members to exit, then SIGKILL to every survivor.
/// A zero grace kills at once. Blocks the calling thread; async callers run
/// it on a blocking thread.
pub fn stop_all(groups: &[ProcessGroup], grace: Duration) -> Stopped {
    let started = Instant::now();
    if !grace.is_zero() {
        for g in groups {
            g.signal(libc::SIGTERM);
            g.signal(libc::SIGCONT);
        }
        while started.elapsed() < grace && groups.iter().any(ProcessGroup::is_alive) {
            std::thread::sleep(POLL);
        }
    }
    let mut stopped = Stopped::default();
    for g in groups {
        let survivors = g.kill();
        if survivors.is_empty() {
            stopped.exited += 1;
        }
        stopped.killed += survivors.len();
    }
    stopped.took = started.elapsed();
    stopped
}

/// A signal's usual name, for logs.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGCONT => "SIGCONT",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "other",
    }
}
