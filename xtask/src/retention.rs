//! How many run folders `target/testbed/` keeps: every `cargo xtask test`
//! (and each test process that starts runs of its own) leaves one, with
//! the logs of failed tests — hundreds of MB for a backend run — so
//! without a rule the folder only grows (3.7 GB after a day of work here).
//!
//! The rule: the newest [`DEFAULT_KEEP`] run folders stay (by the time in
//! their name), `TESTBED_KEEP_RUNS=N` says another number; older ones go,
//! except a folder whose run is still going (the process that named it is
//! alive: a run inside a run, such as the nested `cargo xtask` of the
//! slow tests, must not remove its caller's folder). Other folders
//! (`reuse/`, `extracted/`, `archives/`) are not runs and are left alone.

use std::path::Path;

/// Run folders kept when `TESTBED_KEEP_RUNS` is not set.
pub const DEFAULT_KEEP: usize = 20;

/// A run folder's name as [`testbed_harness::RunId::fresh`] makes it:
/// `<prefix>-<unix seconds>-<pid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunFolder {
    /// The folder's name.
    name: String,
    /// When the run started (seconds since the epoch).
    started: u64,
    /// The process that started it.
    pid: u32,
}

impl RunFolder {
    /// `None` for a folder that is not a run's.
    fn parse(name: &str) -> Option<RunFolder> {
        let mut parts = name.rsplitn(3, '-');
        let pid = parts.next()?.parse().ok()?;
        let started = parts.next()?.parse().ok()?;
        let prefix = parts.next()?;
        (!prefix.is_empty()).then(|| RunFolder {
            name: name.to_owned(),
            started,
            pid,
        })
    }
}

/// Which of `names` go when `keep` runs stay and `alive` says whether a
/// process is running.
fn to_remove(names: &[String], keep: usize, alive: impl Fn(u32) -> bool) -> Vec<String> {
    let mut runs: Vec<RunFolder> = names.iter().filter_map(|n| RunFolder::parse(n)).collect();
    runs.sort_by(|a, b| b.started.cmp(&a.started).then(b.name.cmp(&a.name)));
    runs.into_iter()
        .skip(keep)
        .filter(|r| !alive(r.pid))
        .map(|r| r.name)
        .collect()
}

/// The number of runs to keep: `TESTBED_KEEP_RUNS`, else [`DEFAULT_KEEP`].
pub fn keep_from_env() -> anyhow::Result<usize> {
    match std::env::var("TESTBED_KEEP_RUNS") {
        Err(_) => Ok(DEFAULT_KEEP),
        Ok(v) => v.trim().parse().map_err(|_| {
            anyhow::anyhow!(
                "TESTBED_KEEP_RUNS={v:?} is not a number of run folders to keep (e.g. TESTBED_KEEP_RUNS=50; 0 keeps only runs still going)"
            )
        }),
    }
}

/// Removes the run folders under `testbed_dir` beyond the newest `keep`;
/// returns how many went and the bytes they held.
pub fn prune(testbed_dir: &Path, keep: usize) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(testbed_dir) else {
        return (0, 0);
    };
    let names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut removed = (0, 0);
    for name in to_remove(&names, keep, process_alive) {
        let dir = testbed_dir.join(&name);
        let bytes = size_of(&dir);
        if std::fs::remove_dir_all(&dir).is_ok() {
            removed.0 += 1;
            removed.1 += bytes;
        }
    }
    removed
}

/// Whether process `pid` is running (a zombie is not).
fn process_alive(pid: u32) -> bool {
    testbed_harness::procinfo::stat(pid).is_some_and(|s| s.state != 'Z')
}

/// The bytes of the files under `dir`.
fn size_of(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => size_of(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a pid's process is running, as a case sees it.
    type Alive<'a> = &'a dyn Fn(u32) -> bool;

    fn names(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn only_run_folders_beyond_the_newest_go_unless_their_run_is_going() {
        let folders = names(&[
            "xtask-1000-11",
            "xtask-3000-33",
            "fault-sigint-2000-22",
            "merged-4000-44",
            "reuse",
            "extracted",
            "report-example",
            "296350a2-092f-4641-a048-1445d972fcca",
        ]);
        let nobody_alive = |_| false;
        let cases: [(&str, usize, Alive, Vec<&str>); 5] = [
            (
                "keep 2: the two oldest runs go",
                2,
                &nobody_alive,
                vec!["fault-sigint-2000-22", "xtask-1000-11"],
            ),
            ("keep more than there are", 10, &nobody_alive, vec![]),
            (
                "keep 0",
                0,
                &nobody_alive,
                vec![
                    "merged-4000-44",
                    "xtask-3000-33",
                    "fault-sigint-2000-22",
                    "xtask-1000-11",
                ],
            ),
            (
                "a run still going is kept",
                1,
                &|pid| pid == 11,
                vec!["xtask-3000-33", "fault-sigint-2000-22"],
            ),
            ("every run going", 0, &|_| true, vec![]),
        ];
        for (name, keep, alive, expected) in cases {
            assert_eq!(to_remove(&folders, keep, alive), expected, "case {name}");
        }
    }

    #[test]
    fn a_run_folder_name_is_prefix_seconds_pid() {
        let cases = [
            ("xtask-1796090425-4726", Some((1796090425, 4726))),
            (
                "fault-hosts-sigkill-1796085248-28591",
                Some((1796085248, 28591)),
            ),
            ("reuse", None),
            ("1796085248-28591", None),
            ("xtask-later-4726", None),
        ];
        for (name, expected) in cases {
            assert_eq!(
                RunFolder::parse(name).map(|r| (r.started, r.pid)),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn a_bad_keep_says_what_it_takes() {
        std::env::set_var("TESTBED_KEEP_RUNS", "lots");
        let err = keep_from_env().unwrap_err().to_string();
        assert_eq!(
            err,
            "TESTBED_KEEP_RUNS=\"lots\" is not a number of run folders to keep (e.g. TESTBED_KEEP_RUNS=50; 0 keeps only runs still going)"
        );
        std::env::set_var("TESTBED_KEEP_RUNS", "5");
        assert_eq!(keep_from_env().unwrap(), 5);
    }
}
