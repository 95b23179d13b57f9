//! `testbed-runner`: the heavy half of the command line (it links the
//! drivers: NATS and etcd clients, tokenizers, plotting), built on demand
//! and run by xtask for `up`, `bench`, and to hold what a tier's tests
//! share.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use testbed_harness::Layout;

/// Builds `testbed-runner` (quietly when it is up to date) and returns its
/// path.
pub fn build(layout: &Layout) -> anyhow::Result<PathBuf> {
    let status = crate::cargo::command(layout)?
        // `--workspace` resolves features as the test build does, so the
        // runner links the libraries that build already made (with
        // `--package` alone every shared crate was compiled a second time).
        .args(["build", "--quiet", "--workspace", "--bin", "testbed-runner"])
        .status()
        .context("cannot run cargo")?;
    anyhow::ensure!(status.success(), "building testbed-runner failed");
    let exe = crate::cargo::target_dir(layout)?
        .join("debug")
        .join("testbed-runner");
    anyhow::ensure!(exe.is_file(), "{} was not built", exe.display());
    Ok(exe)
}

/// Becomes `testbed-runner ARGS…` (exec): its signals, output and exit
/// code are the command's own. Returns only if it cannot be started.
pub fn exec(layout: &Layout, args: &[String]) -> anyhow::Result<i32> {
    use std::os::unix::process::CommandExt;
    let exe = build(layout)?;
    let error = Command::new(&exe)
        .args(args)
        .current_dir(&layout.repo_root)
        .exec();
    Err(error).with_context(|| format!("cannot start {}", exe.display()))
}

/// A held `testbed-runner hold`: what a tier's tests share stays up while
/// this lives.
pub struct Hold {
    child: Child,
}

impl Hold {
    /// Starts `testbed-runner hold --tier TIER` and waits until it says
    /// everything is up.
    pub fn start(
        exe: &std::path::Path,
        tier: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Hold> {
        use std::io::BufRead;
        let mut child = Command::new(exe)
            .args(["hold", "--tier", tier])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start testbed-runner hold")?;
        let stdout = child.stdout.take().expect("piped");
        let mut lines = std::io::BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line?;
            if line.trim() == "ready" {
                return Ok(Hold { child });
            }
            eprintln!("{line}");
        }
        let status = child.wait()?;
        anyhow::bail!("testbed-runner hold ended ({status}) before the shared services were up")
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        // Closing its stdin is the signal to let go.
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}
