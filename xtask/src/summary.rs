//! Results per tier: read back from nextest's JUnit file, with the tests
//! xtask excluded added as skipped (in the table and in a JUnit file of
//! their own), and printed as one table at the end of a run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::tier::Tier;

/// A test xtask excluded, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// `binary::test` name.
    pub name: String,
    /// The reason, with the command that fixes it.
    pub reason: String,
}

/// What one tier did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TierResult {
    /// Tests that passed (flaky ones included).
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests that passed only on a retry.
    pub flaky: usize,
    /// Tests excluded for unmet needs.
    pub skipped: Vec<Skipped>,
    /// Wall time of the tier.
    #[serde(serialize_with = "seconds", deserialize_with = "from_seconds")]
    pub wall: Duration,
    /// nextest's exit code.
    pub exit_code: i32,
    /// The JUnit files.
    pub junit: Vec<PathBuf>,
    /// Processes the reaper had to kill after the tier: leaks.
    pub leaked: Vec<String>,
}

impl TierResult {
    /// Whether the tier counts as passed.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.exit_code == 0 && self.leaked.is_empty()
    }
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 10.0).round() / 10.0)
}

fn from_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = <f64 as serde::Deserialize>::deserialize(d)?;
    Duration::try_from_secs_f64(s).map_err(serde::de::Error::custom)
}

/// Counts of one JUnit file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JunitCounts {
    /// Test cases without failure or error.
    pub passed: usize,
    /// Test cases with a failure or error.
    pub failed: usize,
    /// Passed test cases that failed on an earlier try.
    pub flaky: usize,
}

/// Reads nextest's JUnit XML.
pub fn read_junit(path: &Path) -> anyhow::Result<JunitCounts> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    parse_junit(&text).with_context(|| format!("parse {}", path.display()))
}

/// Counts test cases in JUnit XML text.
pub fn parse_junit(text: &str) -> anyhow::Result<JunitCounts> {
    let doc = roxmltree::Document::parse(text)?;
    let mut counts = JunitCounts::default();
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let has = |tag: &str| case.children().any(|c| c.has_tag_name(tag));
        if has("failure") || has("error") {
            counts.failed += 1;
        } else if has("skipped") {
            continue;
        } else {
            counts.passed += 1;
            if has("flakyFailure") || has("flakyError") {
                counts.flaky += 1;
            }
        }
    }
    Ok(counts)
}

/// Writes the excluded tests of a tier as JUnit `<skipped>` cases.
pub fn write_skipped_junit(path: &Path, tier: Tier, skipped: &[Skipped]) -> anyhow::Result<()> {
    use quick_junit::{Report, TestCase, TestCaseStatus, TestSuite};
    let mut report = Report::new(format!("testbed-{tier}-skipped"));
    let mut suite = TestSuite::new(format!("{tier} (excluded by cargo xtask: unmet needs)"));
    for s in skipped {
        let mut status = TestCaseStatus::skipped();
        status.set_message(s.reason.clone());
        suite.add_test_case(TestCase::new(s.name.clone(), status));
    }
    report.add_test_suite(suite);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, report.to_string()?)?;
    Ok(())
}

/// The whole run as JSON (for machines: `cargo xtask test --json`).
pub fn json(results: &[(Tier, TierResult)], logs: &Path) -> serde_json::Value {
    let tiers: Vec<serde_json::Value> = results
        .iter()
        .map(|(tier, r)| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["tier"] = tier.name().into();
            v["ok"] = r.ok().into();
            v
        })
        .collect();
    let total = |f: fn(&TierResult) -> usize| results.iter().map(|(_, r)| f(r)).sum::<usize>();
    serde_json::json!({
        "tiers": tiers,
        "passed": total(|r| r.passed),
        "failed": total(|r| r.failed),
        "skipped": total(|r| r.skipped.len()),
        "flaky": total(|r| r.flaky),
        "ok": results.iter().all(|(_, r)| r.ok()),
        "logs": logs,
    })
}

/// The file a run folder's summary is saved in.
pub const SUMMARY_FILE: &str = "summary.json";

/// Saves the run's results in its folder `dir`: [`SUMMARY_FILE`] (the
/// `--json` summary, plus the `partition` the run took) and a copy of each
/// tier's JUnit files as `junit/<tier>/` (nextest overwrites its own on
/// the next run), so that the folder alone is enough for `cargo xtask
/// report merge`.
pub fn save(
    results: &[(Tier, TierResult)],
    dir: &Path,
    partition: Option<&crate::partition::Partition>,
) -> anyhow::Result<PathBuf> {
    let mut saved = Vec::new();
    for (tier, r) in results {
        let mut r = r.clone();
        let junit_dir = dir.join("junit").join(tier.name());
        std::fs::create_dir_all(&junit_dir)
            .with_context(|| format!("create {}", junit_dir.display()))?;
        for junit in &mut r.junit {
            let name = junit.file_name().unwrap_or_default();
            let copy = junit_dir.join(name);
            // A merged run's files are already there.
            if *junit != copy {
                std::fs::copy(&*junit, &copy)
                    .with_context(|| format!("copy {} to {}", junit.display(), copy.display()))?;
            }
            *junit = copy;
        }
        saved.push((*tier, r));
    }
    let mut summary = json(&saved, dir);
    summary["partition"] = partition.map(|p| p.to_string()).into();
    let path = dir.join(SUMMARY_FILE);
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// A saved run: its tiers' results and the partition it took, if any.
pub type SavedRun = (Vec<(Tier, TierResult)>, Option<String>);

/// Reads a run folder's [`SUMMARY_FILE`] back.
pub fn load(dir: &Path) -> anyhow::Result<SavedRun> {
    let path = dir.join(SUMMARY_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is not a run folder of `cargo xtask test` (no {SUMMARY_FILE})",
            dir.display()
        )
    })?;
    let summary: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    let tiers = summary["tiers"]
        .as_array()
        .with_context(|| format!("{} has no tiers", path.display()))?;
    let mut results = Vec::new();
    for t in tiers {
        let name = t["tier"].as_str().unwrap_or_default();
        let tier = <Tier as clap::ValueEnum>::from_str(name, false)
            .map_err(|_| anyhow::anyhow!("{}: unknown tier {name:?}", path.display()))?;
        let mut result: TierResult = serde_json::from_value(t.clone())
            .with_context(|| format!("{}: tier {name}", path.display()))?;
        // The folder may be a copy (a CI artifact from another machine):
        // its JUnit files are the ones beside it, wherever it was saved.
        for junit in &mut result.junit {
            let file = junit.file_name().unwrap_or_default().to_owned();
            *junit = dir.join("junit").join(tier.name()).join(file);
        }
        results.push((tier, result));
    }
    Ok((results, summary["partition"].as_str().map(str::to_owned)))
}

/// Prints the end-of-run table (to stderr when stdout carries JSON).
pub fn print(results: &[(Tier, TierResult)], logs: &Path, to_stderr: bool) {
    macro_rules! println {
        ($($arg:tt)*) => {
            if to_stderr { eprintln!($($arg)*) } else { std::println!($($arg)*) }
        };
    }
    println!();
    println!(
        "{:<12} {:>7} {:>7} {:>6} {:>8} {:>9}  status",
        "tier", "passed", "failed", "flaky", "skipped", "wall"
    );
    println!("{}", "-".repeat(64));
    for (tier, r) in results {
        let status = if r.ok() {
            "ok"
        } else if !r.leaked.is_empty() {
            "LEAKED PROCESSES"
        } else {
            "FAILED"
        };
        println!(
            "{:<12} {:>7} {:>7} {:>6} {:>8} {:>8.1}s  {status}",
            tier.name(),
            r.passed,
            r.failed,
            r.flaky,
            r.skipped.len(),
            r.wall.as_secs_f64()
        );
    }
    let total = |f: fn(&TierResult) -> usize| results.iter().map(|(_, r)| f(r)).sum::<usize>();
    println!("{}", "-".repeat(64));
    println!(
        "total: {} passed, {} failed, {} skipped ({} flaky)",
        total(|r| r.passed),
        total(|r| r.failed),
        total(|r| r.skipped.len()),
        total(|r| r.flaky)
    );
    for (tier, r) in results {
        let mut reasons: Vec<(&str, usize)> = Vec::new();
        for s in &r.skipped {
            match reasons.iter_mut().find(|(reason, _)| *reason == s.reason) {
                Some((_, n)) => *n += 1,
                None => reasons.push((&s.reason, 1)),
            }
        }
        for (reason, n) in reasons {
            println!("skipped in {tier}: {n} test(s): {reason}");
        }
        for leak in &r.leaked {
            println!("LEAK in {tier}: the reaper killed {leak}");
        }
        for j in &r.junit {
            println!("junit ({tier}): {}", j.display());
        }
    }
    println!(
        "logs of failed tests (and of all, with --keep-logs): {}",
        logs.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" failures="1" errors="0">
  <testsuite name="testbed-tests::e2e" tests="4">
    <testcase name="frontend::models" classname="testbed-tests::e2e" time="1.0"/>
    <testcase name="router::kv" classname="testbed-tests::e2e" time="2.0">
      <flakyFailure message="first try failed" type="test failure"/>
    </testcase>
    <testcase name="router::overload" classname="testbed-tests::e2e" time="3.0">
      <failure message="assertion failed" type="test failure"/>
      <rerunFailure message="again" type="test failure"/>
    </testcase>
    <testcase name="frontend::health" classname="testbed-tests::e2e" time="0.5"/>
  </testsuite>
</testsuites>"#;

    #[test]
    fn junit_counts_pass_fail_and_flaky() {
        assert_eq!(
            parse_junit(SAMPLE).unwrap(),
            JunitCounts {
                passed: 3,
                failed: 1,
                flaky: 1
            }
        );
    }

    /// A run folder moved elsewhere (a CI artifact downloaded on another
    /// machine) loads with the JUnit files beside it, not where it was
    /// saved.
    #[test]
    fn a_copied_run_folder_reads_its_own_junit_files() {
        let scratch = tempfile::tempdir().unwrap();
        let (saved, copied) = (scratch.path().join("saved"), scratch.path().join("copied"));
        std::fs::create_dir_all(&saved).unwrap();
        let junit = scratch.path().join("junit.xml");
        std::fs::write(&junit, SAMPLE).unwrap();
        let result = TierResult {
            passed: 3,
            junit: vec![junit],
            ..TierResult::default()
        };
        save(&[(Tier::E2e, result)], &saved, None).unwrap();
        std::fs::rename(&saved, &copied).unwrap();
        let (results, _) = load(&copied).unwrap();
        assert_eq!(
            results[0].1.junit,
            vec![copied.join("junit/e2e/junit.xml")],
            "the copy's own file"
        );
        assert_eq!(read_junit(&results[0].1.junit[0]).unwrap().passed, 3);
    }

    #[test]
    fn skipped_junit_round_trips_with_reasons() {
        let dir = std::env::temp_dir().join(format!("xtask-junit-{}", std::process::id()));
        let path = dir.join("skipped.xml");
        let skipped = vec![Skipped {
            name: "testbed-tests::gpu vllm::serving".into(),
            reason: "needs gpu: no GPU".into(),
        }];
        write_skipped_junit(&path, Tier::Gpu, &skipped).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("<skipped message=\"needs gpu: no GPU\""),
            "{text}"
        );
        assert_eq!(
            parse_junit(&text).unwrap(),
            JunitCounts::default(),
            "skipped cases are neither passed nor failed"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
