//! How a managed process is to be started.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

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
    /// The network namespace to run in (a host of a
    /// [`crate::hosts::HostNetwork`]); the test's own when unset.
    pub netns: Option<String>,
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
            netns: None,
        }
    }

    /// `sh -c script`: a process whose behaviour a test writes inline.
    pub fn shell(
        name: impl Into<String>,
        script: impl AsRef<OsStr>,
        log_dir: impl Into<PathBuf>,
    ) -> ProcessSpec {
        ProcessSpec::new(name, "sh", log_dir).arg("-c").arg(script)
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

    /// Sets environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
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

    /// Marks the process as a shared service whose users `state_file`
    /// lists: it outlives its starter (see the field).
    pub fn shared(mut self, state_file: impl Into<PathBuf>) -> Self {
        self.shared_state = Some(state_file.into());
        self
    }

    /// Runs the process where `placement` says (its host's namespace).
    pub fn placed(mut self, placement: &crate::hosts::Placement) -> Self {
        self.netns = placement.netns.clone();
        self
    }

    /// The program and arguments to execute: on a host, behind
    /// `ip netns exec NAMESPACE` (which execs the program: same pid, same
    /// process group).
    pub fn argv(&self) -> (OsString, Vec<OsString>) {
        match &self.netns {
            None => (self.program.clone(), self.args.clone()),
            Some(ns) => {
                let ip = crate::hosts::ip_binary()
                    .map(PathBuf::into_os_string)
                    .unwrap_or_else(|| "ip".into());
                let mut args: Vec<OsString> = vec![
                    "netns".into(),
                    "exec".into(),
                    ns.into(),
                    self.program.clone(),
                ];
                args.extend(self.args.iter().cloned());
                (ip, args)
            }
        }
    }

    /// The command line as a person would type it (for logs and errors).
    pub fn command_line(&self) -> String {
        let (program, args) = self.argv();
        crate::shell::join(
            std::iter::once(&program)
                .chain(&args)
                .map(|a| a.to_string_lossy().into_owned()),
        )
    }
}
