//! `cargo xtask test --tier T`: plan, provision, hold what the tier
//! shares, run through nextest, reap, summarise.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use testbed_harness::{reaper, Layout, Pins, RunId};
use xshell::Shell;

use crate::capability::{Capabilities, Need};
use crate::coverage::{self, CoverageRun, CoverageSetup};
use crate::exit::{self, Exit};
use crate::flags::TestFlags;
use crate::partition::Partition;
use crate::runner::Hold;
use crate::summary::{self, Skipped, TierResult};
use crate::tier::{Tier, TierArg};
use crate::{archive, cargo, needs, report, retention, runner, setup};

/// Set by `--json`: stdout then carries the JSON summary alone.
static JSON: AtomicBool = AtomicBool::new(false);

/// A progress line: stdout, or stderr when stdout carries JSON.
macro_rules! say {
    ($($arg:tt)*) => {
        if JSON.load(Ordering::Relaxed) { eprintln!($($arg)*) } else { println!($($arg)*) }
    };
}

/// The tests `--target` runs against a running deployment: the e2e
/// families that only send requests.
const REMOTE_FAMILIES: &str = "binary(e2e) & test(/^remote::/)";

/// Runs the tiers `flags` names; returns the process exit code.
pub fn run(sh: &Shell, flags: &TestFlags) -> anyhow::Result<i32> {
    JSON.store(flags.json, Ordering::Relaxed);
    if flags.target.is_some() && flags.tier != TierArg::One(Tier::E2e) {
        return Err(exit::usage(anyhow::anyhow!(
            "--target runs the e2e families that only send requests: use it with --tier e2e"
        )));
    }
    let layout = Layout::from_env();
    let run_id = RunId::fresh("xtask");
    let tiers = flags.tier.tiers();
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, interrupted.clone())?;
    }

    for r in reaper::reap_orphans(&layout) {
        say!("xtask: reaped {} left by run {}", r.describe(), r.run_id);
    }
    let keep = retention::keep_from_env().map_err(exit::usage)?;
    let (removed, bytes) = retention::prune(&layout.target_dir.join("testbed"), keep);
    if removed > 0 {
        say!(
            "xtask: removed the {removed} oldest run folder(s) under {} ({:.0} MB): the newest {keep} are kept (TESTBED_KEEP_RUNS)",
            layout.target_dir.join("testbed").display(),
            bytes as f64 / 1e6
        );
    }

    // From an archive, nothing is built: its binaries and testbed-runner.
    // Checked before anything is provisioned: a wrong file or tree is the
    // caller's to fix (exit 2).
    let archive = match &flags.archive {
        Some(file) => {
            let extracted = archive::Extracted::open(&layout, file).map_err(exit::usage)?;
            say!(
                "xtask: the test binaries of {} (built from revision {})",
                file.display(),
                extracted.manifest.describe()
            );
            Some(extracted)
        }
        None => None,
    };

    let mut needed: Vec<Need> = tiers.iter().flat_map(|t| t.needs()).collect();
    needed.sort();
    needed.dedup();
    let pins = Pins::from_repo()?;
    if !flags.no_setup {
        setup::ensure_for(sh, &needed).map_err(exit::missing)?;
    }
    // The build and the capability checks (a Python import or two) at once.
    if archive.is_none() {
        say!("xtask: building the test binaries …");
    }
    let (built, caps) = std::thread::scope(|scope| {
        let caps = scope.spawn(|| Capabilities::detect(&pins));
        let built = match &archive {
            Some(a) => Ok(a.tests()),
            None => cargo::BuiltTests::build(&layout),
        };
        (built, caps.join())
    });
    let caps = caps.map_err(|_| anyhow::anyhow!("a capability check panicked"))?;
    if flags.no_setup {
        for need in &needed {
            if !caps.has(need) {
                return Err(exit::missing(anyhow::anyhow!(
                    "{need} is missing: {} (or drop --no-setup to provision on first use)",
                    caps.reason(need)
                )));
            }
        }
    }
    let built = built?;
    let coverage = if flags.coverage || flags.coverage_gate {
        Some(CoverageSetup::new(
            &layout,
            &pins,
            flags
                .coverage_gate
                .then_some(flags.coverage_baseline.as_path()),
        )?)
    } else {
        None
    };
    let mut below_baseline = false;
    let mut measured_coverage: Vec<(Tier, Vec<coverage::Component>)> = Vec::new();
    let rules = needs::load(&layout.repo_root.join("tests/needs.toml"), &pins)?;
    let mut unmet = needs::unmet(&rules, &caps);
    if flags.target.is_some() {
        unmet.push(needs::Unmet {
            tests: format!("not ({REMOTE_FAMILIES})"),
            reason: "starts, stops or reconfigures processes of its own: with --target only the families of tests/e2e/remote.rs run".into(),
        });
    }
    // Tiers that hold shared services start them with testbed-runner.
    let runner = match &archive {
        _ if !tiers.iter().any(|t| t.shares_services()) => None,
        Some(a) => Some(a.runner()?),
        None => Some(runner::build(&layout)?),
    };

    let mut results: Vec<(Tier, TierResult)> = Vec::new();
    let mut code = Exit::Success.code();
    for tier in tiers {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        let measured = match &coverage {
            Some(c) => Some(CoverageRun::prepare(
                &layout
                    .run_artifacts(&run_id)
                    .join("coverage")
                    .join(tier.name()),
                &c.dynamo,
            )?),
            None => None,
        };
        let plan = TierPlan {
            layout: &layout,
            built: &built,
            runner: runner.as_deref(),
            run_id: &run_id,
            unmet: &unmet,
            flags,
            interrupted: &interrupted,
            extra_env: measured.as_ref().map(CoverageRun::env).unwrap_or_default(),
        };
        let result = plan.run(tier)?;
        if let (Some(setup), Some(run)) = (&coverage, &measured) {
            let (passed, components) = report_coverage(tier, setup, run);
            below_baseline |= !passed;
            measured_coverage.extend(components.map(|c| (tier, c)));
        }
        let ok = result.ok();
        results.push((tier, result));
        if !ok {
            code = Exit::TestsFailed.code();
            if flags.tier == TierArg::All {
                say!("xtask: tier {tier} failed; the later tiers are not run");
            }
            break;
        }
    }
    let logs = layout.run_artifacts(&run_id);
    summary::print(&results, &logs, flags.json);
    if let Err(e) = summary::save(&results, &logs, flags.partition.as_ref()) {
        say!("xtask: the run's summary could not be saved: {e:#}");
    }
    match write_report(
        &layout,
        &pins,
        run_id.as_str(),
        &logs,
        &results,
        &measured_coverage,
    ) {
        Ok(path) => say!("report: {}", path.display()),
        Err(e) => say!("xtask: the run report could not be written: {e:#}"),
    }
    if flags.json {
        std::println!(
            "{}",
            serde_json::to_string_pretty(&summary::json(&results, &logs))?
        );
    }
    if interrupted.load(Ordering::SeqCst) {
        eprintln!("xtask: interrupted; every process of run {run_id} was stopped");
        return Ok(Exit::Interrupted.code());
    }
    if below_baseline && code == Exit::Success.code() {
        return Ok(Exit::CoverageBelowBaseline.code());
    }
    Ok(code)
}

/// `<logs>/report.html` (and `.md`) of run `run_name` for the tiers that
/// ran.
pub fn write_report(
    layout: &Layout,
    pins: &Pins,
    run_name: &str,
    logs: &Path,
    results: &[(Tier, TierResult)],
    coverage: &[(Tier, Vec<coverage::Component>)],
) -> anyhow::Result<std::path::PathBuf> {
    let mut cases = Vec::new();
    for (tier, result) in results {
        let mut tier_cases = Vec::new();
        for junit in result.junit.iter().filter(|p| p.ends_with("junit.xml")) {
            tier_cases.extend(report::cases_from_junit(&std::fs::read_to_string(junit)?)?);
        }
        cases.push((*tier, tier_cases));
    }
    let run = report::RunReport {
        run_id: run_name,
        tiers: results,
        cases,
        coverage,
        provenance: report::provenance(pins, &layout.repo_root),
        logs,
    };
    report::write(&run, logs)
}

/// Reports a tier's coverage (and checks it against the baseline, with
/// `--coverage-gate`): whether the gate passed, and the components.
fn report_coverage(
    tier: Tier,
    setup: &CoverageSetup,
    run: &CoverageRun,
) -> (bool, Option<Vec<coverage::Component>>) {
    say!("\n==> coverage of Dynamo's Python layer, tier {tier}");
    let components = match run.report(&setup.python) {
        Ok(c) => c,
        Err(e) => {
            say!("xtask: no coverage for tier {tier}: {e:#}");
            return (setup.baseline.is_none(), None);
        }
    };
    say!("{}", coverage::table(&components));
    say!(
        "coverage: {} (components.json, coverage.json, html/index.html)",
        run.dir.display()
    );
    let Some(baseline) = &setup.baseline else {
        return (true, Some(components));
    };
    let shortfalls = coverage::gate(baseline, tier.name(), &components);
    for s in &shortfalls {
        say!("coverage gate: {s}");
    }
    if shortfalls.is_empty() {
        say!("coverage gate: every component of tier {tier} is at or above its baseline");
    }
    (shortfalls.is_empty(), Some(components))
}

/// Everything one tier's run needs.
struct TierPlan<'a> {
    layout: &'a Layout,
    /// The test binaries every nextest call reuses.
    built: &'a cargo::BuiltTests,
    /// `testbed-runner`, built when a tier holds shared services.
    runner: Option<&'a Path>,
    run_id: &'a RunId,
    unmet: &'a [needs::Unmet],
    flags: &'a TestFlags,
    interrupted: &'a AtomicBool,
    /// More variables for the tier's processes (coverage).
    extra_env: Vec<(&'static str, String)>,
}

impl TierPlan<'_> {
    fn run(&self, tier: Tier) -> anyhow::Result<TierResult> {
        let profile = tier.name();
        say!("\n==> tier {profile}");
        let started = Instant::now();
        let exclusions: Vec<String> = self
            .unmet
            .iter()
            .map(|u| format!("not ({})", u.tests))
            .collect();
        let filter = if exclusions.is_empty() {
            "all()".to_owned()
        } else {
            exclusions.join(" and ")
        };
        let mut env = vec![
            ("TESTBED_RUN_ID", self.run_id.as_str().to_owned()),
            (
                "TESTBED_KEEP_LOGS",
                if self.flags.keep_logs { "1" } else { "0" }.to_owned(),
            ),
        ];
        env.extend(self.extra_env.iter().cloned());
        if let Some(url) = &self.flags.target {
            // Read by testbed_dynamo::deployment.
            env.push(("TESTBED_TARGET_URL", url.clone()));
            if let Some(metrics) = &self.flags.metrics_url {
                env.push(("TESTBED_TARGET_METRICS_URL", metrics.clone()));
            }
        }
        // What the tier's tests share (NATS, etcd, engine stacks) is held
        // for the whole tier, so that it starts once.
        let hold = if tier.shares_services() {
            let runner = self.runner.context("testbed-runner was not built")?;
            Some(Hold::start(runner, profile, &env)?)
        } else {
            None
        };

        let junit_dir = cargo::nextest_store(self.layout).join(profile);
        let junit = junit_dir.join("junit.xml");
        let _ = std::fs::remove_file(&junit);
        // nextest talks to the terminal directly (live progress); its exit
        // code and JUnit file are read afterwards. Which tests are skipped,
        // and why, is listed meanwhile (reusing the build, a listing takes
        // no cargo lock).
        let (skipped, status) = std::thread::scope(|scope| {
            let listing = scope.spawn(|| self.skipped(profile));
            let status = cargo::command(self.layout).and_then(|mut command| {
                command
                    .args(["nextest", "run", "--profile", profile, "--no-tests=warn"])
                    .args(self.built.reuse_args())
                    .args(with_exclusions(&filter, &self.flags.nextest_args))
                    .args(self.flags.partition.iter().flat_map(|p| p.nextest_args()))
                    .envs(env.iter().map(|(k, v)| (k, v)))
                    .status()
                    .context(cargo::NEXTEST_MISSING)
            });
            (listing.join(), status)
        });
        let status = status?;
        let skipped =
            skipped.map_err(|_| anyhow::anyhow!("listing the skipped tests panicked"))??;
        for s in &skipped {
            say!("    SKIP {} — {}", s.name, s.reason);
        }
        let exit_code = status.code().unwrap_or(Exit::Interrupted.code());
        drop(hold);
        let leaked: Vec<String> = reaper::reap_run(self.layout, self.run_id)
            .into_iter()
            .map(|r| r.describe())
            .collect();
        if self.interrupted.load(Ordering::SeqCst) {
            say!("xtask: interrupted during tier {profile}");
        }
        // nextest: 0 passed, 100 tests failed, 4 no tests ran; anything else
        // (a build failure, a bad argument) means it ran nothing to count.
        let counts = if junit.is_file() {
            summary::read_junit(&junit)?
        } else if matches!(exit_code, 0 | 100) {
            anyhow::bail!(
                "nextest ran the {profile} tier (exit {exit_code}) but wrote no JUnit report at {}: the counts cannot be read",
                junit.display()
            );
        } else {
            summary::JunitCounts::default()
        };
        let skipped_junit = junit_dir.join("skipped.xml");
        summary::write_skipped_junit(&skipped_junit, tier, &skipped)?;
        Ok(TierResult {
            passed: counts.passed,
            failed: counts.failed,
            flaky: counts.flaky,
            skipped,
            wall: started.elapsed(),
            exit_code,
            junit: [junit, skipped_junit]
                .into_iter()
                .filter(|p| p.is_file())
                .collect(),
            leaked,
        })
    }

    /// The tests excluded for unmet needs, each once with every reason;
    /// only those the user's filtersets would run.
    fn skipped(&self, profile: &str) -> anyhow::Result<Vec<Skipped>> {
        let mut reasons: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let (user_filtersets, _) = split_filtersets(&self.flags.nextest_args);
        // One listing tells whether any unmet need touches this
        // tier; only then is each need listed for its reason.
        let any_unmet = self
            .unmet
            .iter()
            .map(|u| format!("({})", u.tests))
            .collect::<Vec<_>>()
            .join(" | ");
        if any_unmet.is_empty()
            || list_tests(
                self.layout,
                self.built,
                profile,
                &and_user(&any_unmet, &user_filtersets),
                self.flags.partition.as_ref(),
            )?
            .is_empty()
        {
            return Ok(Vec::new());
        }
        for u in self.unmet {
            for name in list_tests(
                self.layout,
                self.built,
                profile,
                &and_user(&u.tests, &user_filtersets),
                self.flags.partition.as_ref(),
            )? {
                reasons.entry(name).or_default().push(u.reason.clone());
            }
        }
        Ok(reasons
            .into_iter()
            .map(|(name, reasons)| Skipped {
                name,
                reason: reasons.join("; "),
            })
            .collect())
    }
}

/// The names of the tier's tests that `filter` selects.
fn list_tests(
    layout: &Layout,
    built: &cargo::BuiltTests,
    profile: &str,
    filter: &str,
    partition: Option<&Partition>,
) -> anyhow::Result<Vec<String>> {
    let mut command = cargo::command(layout)?;
    command.args(["nextest", "list", "--profile", profile, "-E", filter]);
    command.args(partition.iter().flat_map(|p| p.nextest_args()));
    command
        .args(["--message-format", "json"])
        .args(built.reuse_args());
    let out = command
        .stderr(std::process::Stdio::null())
        .output()
        .with_context(|| format!("listing the tests of {profile} that match {filter}"))?;
    anyhow::ensure!(
        out.status.success(),
        "listing the tests of {profile} that match {filter} failed"
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut names = Vec::new();
    if let Some(suites) = value["rust-suites"].as_object() {
        for (binary, suite) in suites {
            if let Some(cases) = suite["testcases"].as_object() {
                for (name, case) in cases {
                    if case["filter-match"]["status"] == "matches" {
                        names.push(format!("{binary} {name}"));
                    }
                }
            }
        }
    }
    Ok(names)
}

/// The user's filtersets (`-E X`, `-EX`, `--filterset X`,
/// `--filterset=X`) and every other argument, in order.
pub fn split_filtersets(user_args: &[String]) -> (Vec<String>, Vec<String>) {
    let mut expressions = Vec::new();
    let mut rest = Vec::new();
    let mut args = user_args.iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            rest.push(arg.clone());
            rest.extend(args.by_ref().cloned());
            break;
        }
        match arg.as_str() {
            "-E" | "--filterset" | "--filter-expr" => {
                if let Some(x) = args.next() {
                    expressions.push(x.clone());
                }
            }
            a if a.starts_with("--filterset=") || a.starts_with("--filter-expr=") => {
                expressions.push(
                    a.split_once('=')
                        .map(|(_, x)| x.to_owned())
                        .unwrap_or_default(),
                );
            }
            a if a.starts_with("-E") && a.len() > 2 => expressions.push(a[2..].to_owned()),
            _ => rest.push(arg.clone()),
        }
    }
    (expressions, rest)
}

/// `filter` restricted to what the user's filtersets select (nextest ORs
/// repeated filtersets).
fn and_user(filter: &str, user: &[String]) -> String {
    if user.is_empty() {
        return filter.to_owned();
    }
    let user: Vec<String> = user.iter().map(|x| format!("({x})")).collect();
    format!("({}) and ({filter})", user.join(" | "))
}

/// The nextest arguments with `filter` (the needs' exclusions) applied:
/// nextest ORs repeated `-E` filtersets, so the user's own are folded into
/// one `-E '(X | …) and (filter)'`; everything else passes through.
pub fn with_exclusions(filter: &str, user_args: &[String]) -> Vec<String> {
    let (expressions, rest) = split_filtersets(user_args);
    let combined = and_user(filter, &expressions);
    let mut out = vec!["-E".to_owned(), combined];
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--coverage-gate` on one e2e test: a baseline above what the run
    /// measures fails it (exit 6, the component named), one below passes.
    #[test]
    fn slow_coverage_gate_fails_below_the_baseline_and_passes_above() {
        let layout = Layout::from_env();
        let dir = tempfile::tempdir().unwrap();
        let gate = |frontend_min: f64| {
            let baseline = dir.path().join(format!("baseline-{frontend_min}.toml"));
            std::fs::write(
                &baseline,
                format!("[tiers.e2e]\nfrontend = {frontend_min:.1}\n"),
            )
            .unwrap();
            let mut cmd = std::process::Command::new("cargo");
            cmd.current_dir(&layout.repo_root)
                .args(["xtask", "test", "--tier", "e2e", "--coverage-gate"])
                .arg("--coverage-baseline")
                .arg(&baseline)
                .args(["--", "-E", "test(=remote::models_lists_the_served_model)"]);
            cargo::clean_env(&mut cmd);
            let out = cmd.output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.code(), text)
        };
        let (code, text) = gate(100.0);
        assert_eq!(code, Some(Exit::CoverageBelowBaseline.code()), "{text}");
        assert!(
            text.contains("coverage gate: frontend: ")
                && text.contains("below its baseline of 100.0%"),
            "{text}"
        );
        assert!(
            text.contains("frontend "),
            "the table lists the component: {text}"
        );
        let (code, text) = gate(1.0);
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.contains("coverage gate: every component of tier e2e is at or above its baseline"),
            "{text}"
        );
    }

    /// The integration tier's NATS and etcd families run against the
    /// binaries `TESTBED_NATS_SERVER` and `TESTBED_ETCD` name (wrappers that
    /// log each start, then run the pinned binaries), and pass.
    #[test]
    fn slow_a_tier_runs_against_overridden_service_binaries() {
        let layout = Layout::from_env();
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        let mut envs = Vec::new();
        for (var, name) in [
            ("TESTBED_NATS_SERVER", "nats-server"),
            ("TESTBED_ETCD", "etcd"),
        ] {
            let real = testbed_harness::tool::locate(name).unwrap().path;
            let wrapper = dir.join(name);
            let calls = dir.join(format!("{name}.calls"));
            std::fs::write(
                &wrapper,
                format!(
                    "#!/bin/sh\necho \"$@\" >> {}\nexec {} \"$@\"\n",
                    calls.display(),
                    real.display()
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
            envs.push((var, wrapper));
        }
        let mut cmd = std::process::Command::new("cargo");
        cmd.current_dir(&layout.repo_root)
            .args([
                "xtask",
                "test",
                "--tier",
                "integration",
                "--",
                "-E",
                "test(/^(nats|etcd|isolated)::/)",
            ])
            .envs(envs.iter().map(|(k, v)| (k, v)));
        cargo::clean_env(&mut cmd);
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the tier failed with the overrides:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
        let nats = read("nats-server.calls");
        let etcd = read("etcd.calls");
        assert!(
            nats.lines().any(|l| l.contains("-js")),
            "JetStream servers ran through the override: {nats:?}"
        );
        assert!(
            nats.lines().filter(|l| l.contains("-p ")).count() >= 5,
            "every server ran through the override: {nats:?}"
        );
        assert!(
            etcd.lines().any(|l| l.contains("--initial-cluster")),
            "etcd members ran through the override: {etcd:?}"
        );
        assert!(text.contains("integration"), "{text}");
    }

    /// `cargo xtask` at the repo root with `args`; its exit status, stdout
    /// and stderr.
    fn xtask(args: &[&str]) -> (Option<i32>, String, String) {
        xtask_with(args, &[])
    }

    /// [`xtask`] with more environment variables.
    fn xtask_with(args: &[&str], envs: &[(&str, &Path)]) -> (Option<i32>, String, String) {
        let mut cmd = std::process::Command::new("cargo");
        cmd.current_dir(&Layout::from_env().repo_root)
            .arg("xtask")
            .args(args);
        cargo::clean_env(&mut cmd);
        cmd.envs(envs.iter().copied());
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The names of the test cases a run folder's unit JUnit file lists.
    fn unit_cases(summary: &serde_json::Value) -> Vec<String> {
        let dir = std::path::PathBuf::from(summary["logs"].as_str().unwrap());
        let text = std::fs::read_to_string(dir.join("junit/unit/junit.xml")).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        let mut names: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .map(|c| {
                format!(
                    "{} {}",
                    c.attribute("classname").unwrap_or_default(),
                    c.attribute("name").unwrap_or_default()
                )
            })
            .collect();
        names.sort();
        names
    }

    /// The unit tier in two shares (`--partition hash:1/2` and `2/2`) runs
    /// each of its tests exactly once, and `report merge` of the two run
    /// folders counts what a whole run counts; merging a share with itself
    /// is refused.
    #[test]
    fn slow_two_shares_run_the_tier_once_and_merge_into_the_whole() {
        let run = |extra: &[&str]| -> serde_json::Value {
            let mut args = vec!["test", "--tier", "unit", "--json"];
            args.extend(extra);
            let (code, stdout, stderr) = xtask(&args);
            assert_eq!(code, Some(0), "{stderr}");
            serde_json::from_str(&stdout).unwrap()
        };
        let whole = run(&[]);
        let first = run(&["--partition", "hash:1/2"]);
        let second = run(&["--partition", "hash:2/2"]);
        let (a, b) = (unit_cases(&first), unit_cases(&second));
        assert!(!a.is_empty() && !b.is_empty(), "both shares ran tests");
        let twice: Vec<&String> = a.iter().filter(|n| b.contains(n)).collect();
        assert!(twice.is_empty(), "ran in both shares: {twice:?}");
        let mut union = [a.clone(), b.clone()].concat();
        union.sort();
        assert_eq!(union, unit_cases(&whole), "the shares are the whole tier");

        let scratch = tempfile::tempdir().unwrap();
        let out = scratch.path().join("merged");
        let dir = |s: &serde_json::Value| s["logs"].as_str().unwrap().to_owned();
        let (code, stdout, stderr) = xtask(&[
            "report",
            "merge",
            &dir(&first),
            &dir(&second),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(code, Some(0), "{stderr}");
        let merged: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        for count in ["passed", "failed", "skipped"] {
            assert_eq!(merged[count], whole[count], "{count}: {merged}");
        }
        assert!(
            out.join("report.html").is_file(),
            "the merged run has a report"
        );
        assert_eq!(unit_cases(&merged), unit_cases(&whole));

        let (code, _, stderr) = xtask(&["report", "merge", &dir(&first), &dir(&first)]);
        assert_ne!(code, Some(0));
        assert!(stderr.contains("ran in two shares"), "{stderr}");
    }

    /// `cargo xtask archive`, then a tier run from the archive in a second
    /// checkout of the same tree (another path: nothing is built there, the
    /// tests read that checkout and write their results under it); once
    /// the checkout differs from the archived tree, the run is refused with
    /// the file named.
    #[test]
    fn slow_an_archive_runs_from_another_checkout_of_the_same_tree() {
        let layout = Layout::from_env();
        let scratch = tempfile::tempdir().unwrap();
        let file = scratch.path().join("tests.tar.zst");
        let (code, stdout, stderr) = xtask(&["archive", "--out", file.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        assert!(
            stdout.contains("cargo xtask test --tier <TIER> --archive"),
            "{stdout}"
        );

        // The second checkout: the files the archive recorded, as they are
        // now (a git checkout's tracked files, or the whole tree of one
        // unpacked from `git archive`, as CI's unprivileged user has).
        let checkout = scratch.path().join("checkout");
        let manifest = crate::archive::Manifest::of_checkout(&layout.repo_root).unwrap();
        for path in manifest.files.keys() {
            let to = checkout.join(path);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(layout.repo_root.join(path), &to).unwrap();
        }
        let run = || {
            xtask_with(
                &[
                    "test",
                    "--tier",
                    "integration",
                    "--archive",
                    file.to_str().unwrap(),
                    "--json",
                    "--",
                    "-E",
                    "test(/^(harness_process|nats)::/)",
                ],
                &[("TESTBED_REPO_ROOT", &checkout)],
            )
        };
        let (code, stdout, stderr) = run();
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            !stderr.contains("Compiling") && !stdout.contains("building the test binaries"),
            "nothing was built: {stderr}"
        );
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert!(summary["passed"].as_u64().unwrap() >= 10, "{summary}");
        assert_eq!(summary["failed"], 0, "{summary}");
        assert!(
            checkout
                .join("target/nextest/integration/junit.xml")
                .is_file(),
            "nextest wrote its results in the second checkout: {summary}"
        );

        std::fs::write(checkout.join("tests/needs.toml"), "# changed\n").unwrap();
        let (code, _, stderr) = run();
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("is not the tree")
                && stderr.contains("tests/needs.toml differs")
                && stderr.contains("or build an archive of this tree with `cargo xtask archive`"),
            "{stderr}"
        );
    }

    /// `cargo xtask up`, stopped with SIGINT when dropped.
    struct Up(std::process::Child);

    impl Drop for Up {
        fn drop(&mut self) {
            // SAFETY: plain kill of our own child.
            unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
            let _ = self.0.wait();
        }
    }

    /// The sum of a Prometheus counter's samples at `url`.
    fn counter(url: &str, name: &str) -> f64 {
        let text = ureq::get(url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `--target` against a stack `cargo xtask up` runs: the remote
    /// families pass against it (its frontend counts their requests), every
    /// other e2e test is skipped with the reason, and the tests started no
    /// stack of their own.
    #[test]
    fn slow_target_runs_the_remote_families_against_a_running_stack() {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new("cargo");
        cmd.current_dir(&Layout::from_env().repo_root)
            .args(["xtask", "up"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        cargo::clean_env(&mut cmd);
        let mut up = Up(cmd.spawn().unwrap());
        let mut url = None;
        for line in std::io::BufReader::new(up.0.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some((_, rest)) = line.split_once(" is served at ") {
                url = Some(rest.trim().to_owned());
            }
            if line.contains("press Ctrl-C") {
                break;
            }
        }
        let url = url.expect("`cargo xtask up` printed its URL");
        let metrics = format!("{url}/metrics");
        let before = counter(&metrics, "dynamo_frontend_requests_total");
        let (code, stdout, stderr) = xtask(&["test", "--tier", "e2e", "--target", &url, "--json"]);
        assert_eq!(code, Some(0), "{stderr}");
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let remote =
            std::fs::read_to_string(Layout::from_env().repo_root.join("tests/e2e/remote.rs"))
                .unwrap()
                .matches("#[test]")
                .count();
        assert_eq!(summary["passed"], remote, "{summary}");
        assert_eq!(summary["failed"], 0);
        let skipped = summary["tiers"][0]["skipped"].as_array().unwrap();
        assert!(skipped.len() > 20, "the rest of the tier is skipped");
        assert!(
            skipped.iter().all(|s| s["reason"]
                .as_str()
                .unwrap()
                .contains("with --target only the families of tests/e2e/remote.rs run")),
            "{skipped:?}"
        );
        let served = counter(&metrics, "dynamo_frontend_requests_total") - before;
        // Four of them send completions (the others list models and send
        // malformed requests).
        assert!(
            served >= 4.0,
            "the remote families sent their requests to the target ({served})"
        );
        let (code, _, stderr) = xtask(&["test", "--tier", "unit", "--target", &url]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains("use it with --tier e2e"), "{stderr}");
        drop(up);
    }

    #[test]
    fn user_filtersets_are_anded_with_the_exclusions() {
        let args = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let cases: [(&str, Vec<String>, Vec<String>); 5] = [
            (
                "no user filter",
                args(&["router"]),
                args(&["-E", "not (a)", "router"]),
            ),
            (
                "one -E",
                args(&["-E", "test(/^hermetic::/)", "--no-capture"]),
                args(&[
                    "-E",
                    "((test(/^hermetic::/))) and (not (a))",
                    "--no-capture",
                ]),
            ),
            (
                "two filtersets are ORed, then ANDed",
                args(&["-E", "test(x)", "--filterset=test(y)"]),
                args(&["-E", "((test(x)) | (test(y))) and (not (a))"]),
            ),
            (
                "glued -E",
                args(&["-Etest(x)"]),
                args(&["-E", "((test(x))) and (not (a))"]),
            ),
            (
                "after -- nothing is a filterset",
                args(&["--", "-E", "x"]),
                args(&["-E", "not (a)", "--", "-E", "x"]),
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(with_exclusions("not (a)", &input), expected, "case {name}");
        }
    }
}
