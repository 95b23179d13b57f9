//! Managed processes: each in its own process group, its output in a log
//! file, watched while a readiness probe runs, and torn down as a group
//! (SIGTERM, grace period, SIGKILL) on stop, on drop, on panic, on a
//! termination signal, and — through the parent-death signal and the run's
//! reaper — when the test process itself is killed.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use process_wrap::tokio::{ChildWrapper, CommandWrap, ProcessGroup};

use crate::{procinfo, reaper, signals, Layout, Probe, RunId};

/// Lines of a log quoted in an error.
const TAIL_LINES: usize = 20;

/// How a process is to be started.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Short name: names the log file (`<name>.log`) and appears in errors.
    pub name: String,
    /// The program to run.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables set on top of the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    /// Working folder; the log folder when unset.
    pub current_dir: Option<PathBuf>,
    /// Folder of the log file.
    pub log_dir: PathBuf,
    /// Time between SIGTERM and SIGKILL on stop.
    pub stop_grace: Duration,
    /// A process meant to outlive its starter (a service shared by the tests
    /// of a run): no parent-death signal, its own session, and its record
    /// names the shared-state file that says who still uses it.
    pub shared_state: Option<PathBuf>,
}

impl ProcessSpec {
    /// A process called `name` running `program`, logging into `log_dir`.
    pub fn new(
        name: impl Into<String>,
        program: impl AsRef<OsStr>,
        log_dir: impl Into<PathBuf>,
    ) -> ProcessSpec {
        ProcessSpec {
            name: name.into(),
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            current_dir: None,
            log_dir: log_dir.into(),
            stop_grace: Duration::from_secs(5),
            shared_state: None,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets one environment variable.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets the working folder.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Sets the SIGTERM-to-SIGKILL grace period.
    pub fn stop_grace(mut self, grace: Duration) -> Self {
        self.stop_grace = grace;
        self
    }

    /// The command line as a person would type it (for logs and errors).
    pub fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

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

/// A running process group that dies with its owner.
pub struct ManagedProcess {
    name: String,
    command: String,
    child: Box<dyn ChildWrapper>,
    pgid: u32,
    leader_start_ticks: u64,
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
            .field("pgid", &self.pgid)
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
        let log = open_log(&spec.log_dir, &log_path, &command_line)
            .map_err(|e| spawn_error(e, String::new()))?;
        let stdout = log.try_clone().map_err(|e| spawn_error(e, String::new()))?;

        let mut command = tokio::process::Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(spec.current_dir.as_deref().unwrap_or(&spec.log_dir))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(log));
        let parent = std::process::id();
        let detached = spec.shared_state.is_some();
        // SAFETY: the closure only calls async-signal-safe functions.
        unsafe {
            command.pre_exec(move || {
                if detached {
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
        if detached {
            wrap.wrap(process_wrap::tokio::ProcessSession);
        } else {
            wrap.wrap(ProcessGroup::leader());
        }
        let child = wrap.spawn().map_err(|e| {
            let hint = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "; `{}` was not found: run `cargo xtask doctor` to see what is missing and the command that installs it",
                    spec.program.to_string_lossy()
                )
            } else {
                String::new()
            };
            spawn_error(e, hint)
        })?;
        let pgid = child.id().expect("a just-spawned child has a pid");
        let leader_start_ticks = procinfo::stat(pgid).map(|s| s.start_ticks).unwrap_or(0);
        let me = procinfo::me();
        let record = reaper::ProcessRecord {
            pgid,
            leader_start_ticks,
            owner_pid: me.pid,
            owner_start_ticks: me.start_ticks,
            command: command_line.clone(),
            log: log_path.clone(),
            shared_state: spec.shared_state.clone(),
        };
        let record_path = reaper::register(&layout, &run_id, &record).unwrap_or_default();
        if !detached {
            signals::track(pgid, leader_start_ticks, record_path.clone());
        }
        tracing::info!(name = %spec.name, pid = pgid, command = %command_line, log = %log_path.display(), "spawned");
        Ok(ManagedProcess {
            name: spec.name,
            command: command_line,
            child,
            pgid,
            leader_start_ticks,
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
        self.pgid
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

    /// Whether the leader still runs.
    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Every live process of the group (the leader and descendants that
    /// stayed in it).
    pub fn group_members(&self) -> Vec<procinfo::ProcStat> {
        procinfo::group_members(self.pgid, self.leader_start_ticks)
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
            tokio::time::sleep(Duration::from_millis(20)).await;
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
        tracing::warn!(name = %self.name, pid = self.pgid, signal = signal_name(signal), "signal sent to process group");
        signal_group(self.pgid, signal);
    }

    /// Stops the group: SIGTERM, up to the grace period for every member to
    /// exit, then SIGKILL. Returns the leader's exit status.
    pub async fn stop(&mut self) -> ExitStatus {
        self.teardown_with(self.stop_grace, |d| Box::pin(tokio::time::sleep(d)))
            .await
    }

    /// Kills the group at once (SIGKILL) and waits for it.
    pub async fn kill(&mut self) -> ExitStatus {
        self.teardown_with(Duration::ZERO, |d| Box::pin(tokio::time::sleep(d)))
            .await
    }

    async fn teardown_with(
        &mut self,
        grace: Duration,
        sleep: impl Fn(Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ) -> ExitStatus {
        let started = Instant::now();
        if !grace.is_zero() {
            signal_group(self.pgid, libc::SIGTERM);
            // A stopped (SIGSTOP) process must run to handle SIGTERM.
            signal_group(self.pgid, libc::SIGCONT);
            while started.elapsed() < grace && self.group_alive() {
                sleep(Duration::from_millis(10)).await;
            }
        }
        self.kill_survivors();
        while self.exit_status().is_none() && started.elapsed() < grace + Duration::from_secs(2) {
            sleep(Duration::from_millis(5)).await;
        }
        self.forget();
        tracing::info!(name = %self.name, took = ?started.elapsed(), "stopped");
        self.exit_status
            .unwrap_or_else(|| ExitStatus::from_raw(libc::SIGKILL))
    }

    fn group_alive(&mut self) -> bool {
        let _ = self.exit_status(); // reaps the leader so it stops counting
        !self.group_members().is_empty()
    }

    fn kill_survivors(&mut self) {
        signal_group(self.pgid, libc::SIGKILL);
        for member in self.group_members() {
            // SAFETY: plain kill of a pid matched by group and start time.
            unsafe { libc::kill(member.pid as i32, libc::SIGKILL) };
        }
    }

    fn forget(&mut self) {
        signals::untrack(self.pgid);
        reaper::unregister(&self.record_path);
    }

    /// Lets a shared service outlive this handle: nothing is stopped on
    /// drop; the group is found again by its pgid and start time, and the
    /// record stays for the reaper. Returns `(pgid, leader start ticks)`.
    pub fn detach(mut self) -> (u32, u64) {
        self.record_path = PathBuf::new();
        signals::untrack(self.pgid);
        let ids = (self.pgid, self.leader_start_ticks);
        self.detached = true;
        ids
    }

    /// Whether teardown already ran.
    fn torn_down(&self) -> bool {
        !self.record_path.exists()
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if self.detached || (self.torn_down() && self.group_members().is_empty()) {
            return;
        }
        // Synchronous teardown: drop may run during a panic or outside any
        // runtime.
        let started = Instant::now();
        let grace = self.stop_grace.min(Duration::from_secs(3));
        signal_group(self.pgid, libc::SIGTERM);
        signal_group(self.pgid, libc::SIGCONT);
        while started.elapsed() < grace && self.group_alive() {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_survivors();
        let reap_deadline = Instant::now() + Duration::from_secs(2);
        while self.exit_status().is_none() && Instant::now() < reap_deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.forget();
    }
}

/// Stops a group known only by its ids (a detached shared service):
/// SIGTERM, up to `grace`, then SIGKILL to every member left.
pub fn terminate_group(pgid: u32, leader_start_ticks: u64, grace: Duration) {
    signal_group(pgid, libc::SIGTERM);
    signal_group(pgid, libc::SIGCONT);
    let started = Instant::now();
    while started.elapsed() < grace && !procinfo::group_members(pgid, leader_start_ticks).is_empty()
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    for member in procinfo::group_members(pgid, leader_start_ticks) {
        // SAFETY: plain kill of a pid matched by group and start time.
        unsafe { libc::kill(member.pid as i32, libc::SIGKILL) };
    }
}

/// Sends `signal` to process group `pgid`, ignoring a group already gone.
pub fn signal_group(pgid: u32, signal: i32) {
    // SAFETY: killpg has no memory preconditions.
    unsafe { libc::killpg(pgid as i32, signal) };
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

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig} ({})", signal_name(sig)),
        _ => status.to_string(),
    }
}

fn open_log(dir: &Path, path: &Path, command: &str) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(file, "# testbed: {} spawn: {command}", timestamp())?;
    Ok(file)
}

/// The last `n` lines of the file at `path` (empty if unreadable).
pub fn tail_of(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Wall-clock time as `seconds.millis` since the Unix epoch.
pub fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
}

/// Starts a process on freshly leased ports, retrying up to three times
/// with new ports when it dies because a port was taken between lease and
/// bind (another program may bind without asking the registry).
///
/// `attempt` leases its ports, spawns, and waits for readiness.
pub async fn retry_on_port_conflict<T, F, Fut>(what: &str, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ProcessError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if e.is_port_conflict() && tries < 3 => {
                tracing::warn!(what, error = %e, "port taken between lease and bind; retrying on another port");
            }
            other => return other.map_err(anyhow::Error::from),
        }
    }
}
