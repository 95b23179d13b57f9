//! Where a benchmark's numbers came from: the testbed's git revision, the
//! pinned versions, and the machine.

use std::collections::BTreeMap;
use std::path::Path;

use testbed_harness::{Layout, Pins};
use testbed_load::{HostInfo, Provenance};

/// This run's provenance.
pub fn capture() -> Provenance {
    Provenance {
        git_revision: git_revision(&Layout::from_env().repo_root),
        pins: Pins::from_repo()
            .map(|p| pin_versions(&p))
            .unwrap_or_default(),
        host: host(),
    }
}

/// Every pinned version, by name (tools and envs).
pub fn pin_versions(pins: &Pins) -> BTreeMap<String, String> {
    let tools = pins
        .tools
        .iter()
        .map(|(n, t)| (n.clone(), t.version.clone()));
    let envs = pins
        .envs
        .values()
        .filter_map(|e| Some((e.package.clone(), e.version.clone()?)));
    tools
        .chain(envs)
        .chain([("python".to_owned(), pins.python.version.clone())])
        .collect()
}

/// The git revision of `repo` (`git rev-parse HEAD`), with `-dirty` when
/// tracked files differ from it; `None` outside a git checkout.
pub fn git_revision(repo: &Path) -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(repo)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// This machine's facts (empty or zero where unknown).
pub fn host() -> HostInfo {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    HostInfo {
        hostname: read("/proc/sys/kernel/hostname").trim().to_owned(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default(),
        memory_bytes: meminfo_total(&read("/proc/meminfo")).unwrap_or(0),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
    }
}

/// `MemTotal:  24000000 kB` → bytes.
pub fn meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_in_bytes() {
        assert_eq!(
            meminfo_total("MemTotal:       24555412 kB\nMemFree: 1 kB\n"),
            Some(24555412 * 1024)
        );
        assert_eq!(meminfo_total("nothing"), None);
    }

    #[test]
    fn this_machine_and_its_pins() {
        let p = capture();
        assert!(p.host.cores >= 1 && p.host.memory_bytes > 0, "{:?}", p.host);
        assert_eq!(p.pins.get("ai-dynamo").map(String::as_str), Some("1.6.1"));
        assert_eq!(
            p.pins.get("nats-server").map(String::as_str),
            Some("2.15.1")
        );
        // A clone records its commit; a tree from an archive has none.
        if testbed_harness::Layout::from_env().is_git_checkout() {
            assert!(
                p.git_revision.as_ref().is_some_and(|r| r.len() >= 40),
                "{:?}",
                p.git_revision
            );
        } else {
            assert_eq!(p.git_revision, None, "no checkout, no revision");
        }
    }
}
