//! Managed processes: each in its own process group, its output in a log
//! file, watched while a readiness probe runs, and stopped as a group (see
//! [`crate::group`]) on stop, on drop, on panic, on a termination signal,
//! and — through the parent-death signal and the run's reaper — when the
//! test process itself is killed.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use backon::{ConstantBuilder, Retryable};
use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessGroup as GroupLeader};

use super::logs::{self, tail_of};
use super::{ProcessError, ProcessSpec};
use crate::group::{signal_name, ProcessGroup};
use crate::{procinfo, reaper, signals, Layout, Probe, RunId};

/// Lines of a log quoted in an error.
const TAIL_LINES: usize = 20;

/// How often readiness is probed while the process is watched.
const PROBE_INTERVAL: Duration = Duration::from_millis(10);

/// The longest grace a drop grants: a drop may run during a panic, and a
/// test's teardown should not wait on a slow graceful shutdown.
const DROP_GRACE: Duration = Duration::from_secs(3);

/// A running process group that dies with its owner.
pub struct ManagedProcess {
    name: String,
    command: String,
    child: Box<dyn ChildWrapper>,
    group: ProcessGroup,
    log_path: PathBuf,
    record_path: PathBuf,
    stop_grace: Duration,
    exit_status: Option<ExitStatus>,
    detached: bool,
}

impl fmt::Debug for ManagedProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManagedProcess")
            .field("name", &self.name)
            .field("pgid", &self.group.pgid)
            .finish()
    }
}

impl ManagedProcess {
    /// Starts `spec` in a new process group. Reaps orphans of dead owners
    /// first, so that a killed earlier test cannot hold what this one needs.
    pub fn spawn(spec: ProcessSpec) -> Result<ManagedProcess, ProcessError> {
        let layout = Layout::from_env();
        let run_id = RunId::current();
        for r in reaper::reap_orphans(&layout) {
            tracing::warn!(pid = r.pid, run = %r.run_id, command = %r.command, "reaped a process whose owner had died");
        }
        let command_line = spec.command_line();
        let spawn_error = |source: std::io::Error, hint: String| ProcessError::Spawn {
            name: spec.name.clone(),
            command: command_line.clone(),
            source,
            hint,
        };
        let log_path = spec.log_dir.join(format!("{}.log", spec.name));
        let log = logs::open(&spec.log_dir, &log_path, &command_line)
            .map_err(|e| spawn_error(e, String::new()))?;
        let stdout = log.try_clone().map_err(|e| spawn_error(e, String::new()))?;

        let (program, args) = spec.argv();
        let mut command = tokio::process::Command::new(&program);
        command
            .args(&args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(spec.current_dir.as_deref().unwrap_or(&spec.log_dir))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log));
        let parent = std::process::id();
        let shared = spec.shared_state.is_some();
        // SAFETY: the closure only calls async-signal-safe functions.
        unsafe {
            command.pre_exec(move || {
                if shared {
                    return Ok(());
                }
                // The child gets SIGKILL when the thread that spawned it
                // dies, SIGKILL of the test process included.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() as u32 != parent {
                    libc::_exit(137);
                }
                Ok(())
            });
        }
        let mut wrap = CommandWrap::from(command);
        if shared {
            wrap.wrap(process_wrap::tokio::ProcessSession);
        } else {
            wrap.wrap(GroupLeader::leader());
        }
        let child = wrap.spawn().map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "; `{}` was not found: run `cargo xtask doctor` to see what is missing and the command that provisions it",
                    spec.program.to_string_lossy()
                )
            } else {
                String::new()
            };
            spawn_error(e, hint)
        })?;
        let pgid = child.id().expect("a just-spawned child has a pid");
        let group = ProcessGroup {
            pgid,
            leader_start_ticks: procinfo::stat(pgid).map(|s| s.start_ticks).unwrap_or(0),
        };
        let me = procinfo::me();
        let record = reaper::ProcessRecord {
            group,
            owner_pid: me.pid,
            owner_start_ticks: me.start_ticks,
            command: command_line.clone(),
            log: log_path.clone(),
            shared_state: spec.shared_state.clone(),
        };
        let record_path = reaper::register(&layout, &run_id, &record).unwrap_or_default();
        if !shared {
            signals::track(group, record_path.clone());
        }
        tracing::info!(name = %spec.name, pid = pgid, command = %command_line, log = %log_path.display(), "spawned");
        Ok(ManagedProcess {
            name: spec.name,
            command: command_line,
            child,
            group,
            log_path,
            record_path,
            stop_grace: spec.stop_grace,
            exit_status: None,
            detached: false,
        })
    }

    /// The process's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The leader's pid (also the process group id).
    pub fn pid(&self) -> u32 {
        self.group.pgid
    }

    /// The process group.
    pub fn group(&self) -> ProcessGroup {
        self.group
    }

    /// The SIGTERM-to-SIGKILL grace period it was started with.
    pub fn stop_grace(&self) -> Duration {
        self.stop_grace
    }

    /// The command line it was started with.
    pub fn command_line(&self) -> &str {
        &self.command
    }

    /// The log file holding its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail_of(&self.log_path, n)
    }

    /// How the leader ended, if it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit_status.is_none() {
            self.exit_status = self.child.try_wait().ok().flatten();
        }
        self.exit_status
    }

    /// Waits up to `timeout` for the leader to exit by itself (nothing is
    /// signalled); returns how it ended and how long that took.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<(ExitStatus, Duration)> {
        crate::poll::Poll::new(format!("{} to exit", self.name))
            .timeout(timeout)
            .until_timed(|| {
                let status = self.exit_status();
                async move {
                    Ok(match status {
                        Some(s) => crate::poll::Check::Done(s),
                        None => crate::poll::Check::NotYet("still running".into()),
                    })
                }
            })
            .await
    }

    /// Whether the leader still runs.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Every live process of the group (the leader and descendants that
    /// stayed in it).
    pub fn group_members(&self) -> Vec<procinfo::ProcStat> {
        self.group.members()
    }

    /// Tries `probe` until it succeeds or `timeout` passes, watching the
    /// process all the while: if it exits first, the error says so at once
    /// and quotes its log.
    pub async fn wait_ready(
        &mut self,
        probe: &Probe,
        timeout: Duration,
    ) -> Result<(), ProcessError> {
        let start = Instant::now();
        let mut last_error = String::from("no attempt finished");
        loop {
            if let Some(status) = self.exit_status() {
                return Err(self.exited_early(status));
            }
            let left = timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(ProcessError::ProbeTimeout {
                    name: self.name.clone(),
                    probe: probe.to_string(),
                    waited: timeout,
                    last_error,
                    log: self.log_path.clone(),
                    tail: self.log_tail(TAIL_LINES),
                });
            }
            match probe.attempt(left.min(Duration::from_secs(1))).await {
                Ok(()) => {
                    tracing::info!(name = %self.name, after = ?start.elapsed(), probe = %probe, "ready");
                    return Ok(());
                }
                Err(e) => last_error = e,
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// The error for a process that ended while it should be serving.
    pub fn exited_early(&self, status: ExitStatus) -> ProcessError {
        ProcessError::ExitedEarly {
            name: self.name.clone(),
            command: self.command.clone(),
            status: describe_status(status),
            log: self.log_path.clone(),
            tail: self.log_tail(TAIL_LINES),
        }
    }

    /// Sends `signal` to the whole group (fault injection: SIGSTOP, SIGCONT,
    /// SIGKILL, SIGTERM). Logged with a timestamp.
    pub fn signal(&self, signal: i32) {
        tracing::warn!(name = %self.name, pid = self.group.pgid, signal = signal_name(signal), "signal sent to process group");
        self.group.signal(signal);
    }

    /// Stops the group (SIGTERM, up to the grace period, SIGKILL) without
    /// blocking the runtime. Returns the leader's exit status.
    pub async fn stop(&mut self) -> ExitStatus {
        self.stop_within(self.stop_grace).await
    }

    /// Kills the group at once (SIGKILL) and waits for it.
    pub async fn kill(&mut self) -> ExitStatus {
        self.stop_within(Duration::ZERO).await
    }

    async fn stop_within(&mut self, grace: Duration) -> ExitStatus {
        let group = self.group;
        let stopped = tokio::task::spawn_blocking(move || group.stop(grace))
            .await
            .unwrap_or_default();
        tracing::info!(name = %self.name, took = ?stopped.took, killed = stopped.killed, "stopped");
        self.reap_and_forget()
    }

    /// Collects the leader's exit status (its group is gone) and removes
    /// the group from the registry and the signal thread's list.
    fn reap_and_forget(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.exit_status().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        signals::untrack(self.group.pgid);
        reaper::unregister(&self.record_path);
        self.exit_status
            .unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL))
    }

    /// Lets a shared service outlive this handle: nothing is stopped on
    /// drop; the group is found again by its id and start time, and the
    /// record stays for the reaper.
    pub fn detach(&mut self) -> ProcessGroup {
        self.detached = true;
        signals::untrack(self.group.pgid);
        self.group
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        if self.group.is_alive() {
            // Synchronous: a drop may run during a panic or outside any
            // runtime.
            self.group.stop(self.stop_grace.min(DROP_GRACE));
        }
        self.reap_and_forget();
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig} ({})", signal_name(sig)),
        _ => status.to_string(),
    }
}

/// Starts a process on freshly leased ports, trying again (three tries in
/// all) with new ports when it dies because a port was taken between lease
/// and bind (another program may bind without asking the registry).
///
/// `attempt` leases its ports, spawns, and waits for readiness.
pub async fn retry_on_port_conflict<T, F, Fut>(what: &str, attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProcessError>>,
{
    attempt
        .retry(
            ConstantBuilder::default()
                .with_delay(Duration::ZERO)
                .with_max_times(2),
        )
        .sleep(tokio::time::sleep)
        .when(ProcessError::is_port_conflict)
        .notify(|e, _| {
            tracing::warn!(what, error = %e, "port taken between lease and bind; retrying on another port")
        })
        .await
        .map_err(anyhow::Error::from)
}
