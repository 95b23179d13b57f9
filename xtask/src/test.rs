//! `cargo xtask test --tier T`: plan, provision, run through nextest, reap,
//! summarise.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use testbed_etcd::EtcdCluster;
use testbed_harness::{reaper, Layout, Pins, RunId};
use testbed_nats::{NatsMode, NatsServer};
use xshell::{cmd, Shell};

use crate::capability::Capabilities;
use crate::flags::TestFlags;
use crate::summary::{self, Skipped, TierResult};
use crate::tier::Tier;
use crate::{needs, setup};

/// Runs the tiers `flags` names; returns the process exit code.
pub fn run(sh: &Shell, flags: &TestFlags) -> anyhow::Result<i32> {
    let layout = Layout::from_env();
    let run_id = RunId::fresh("xtask");
    let tiers = Tier::expand(flags.tier);
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, interrupted.clone())?;
    }
    testbed_harness::signals::handle_signals_manually();

    for r in reaper::reap_orphans(&layout) {
        println!(
            "xtask: reaped {} (pid {}) left by run {}",
            r.command, r.pid, r.run_id
        );
    }

    let needed: BTreeSet<_> = tiers
        .iter()
        .flat_map(|t| t.needs().iter().copied())
        .collect();
    let needed: Vec<_> = needed.into_iter().collect();
    if flags.no_setup {
        let pins = Pins::from_repo()?;
        let caps = Capabilities::detect(&pins);
        for need in &needed {
            anyhow::ensure!(
                caps.has(*need),
                "{need} is missing: {} (or drop --no-setup to provision on first use)",
                caps.reason(*need)
            );
        }
    } else {
        setup::ensure_for(sh, &needed)?;
    }
    let pins = Pins::from_repo()?;
    let caps = Capabilities::detect(&pins);
    let rules = needs::load(&layout.repo_root.join("tests/needs.toml"))?;
    let unmet = needs::unmet(&rules, &caps);

    println!("xtask: building the test binaries …");
    cmd!(
        sh,
        "cargo nextest list --workspace --list-type binaries-only"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .context("building the tests failed")?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut results: Vec<(Tier, TierResult)> = Vec::new();
    let mut exit_code = 0;
    for tier in tiers {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        let result = run_tier(
            sh,
            &runtime,
            &layout,
            &run_id,
            tier,
            &unmet,
            flags,
            &interrupted,
        )?;
        let ok = result.ok();
        results.push((tier, result));
        if !ok {
            exit_code = 1;
            if flags.tier == crate::flags::TierArg::All {
                println!("xtask: tier {tier} failed; the later tiers are not run");
            }
            break;
        }
    }
    summary::print(&results, &layout.run_artifacts(&run_id));
    if interrupted.load(Ordering::SeqCst) {
        println!("xtask: interrupted; every process of run {run_id} was stopped");
        return Ok(130);
    }
    Ok(exit_code)
}

#[allow(clippy::too_many_arguments)]
fn run_tier(
    sh: &Shell,
    runtime: &tokio::runtime::Runtime,
    layout: &Layout,
    run_id: &RunId,
    tier: Tier,
    unmet: &[needs::Unmet],
    flags: &TestFlags,
    interrupted: &AtomicBool,
) -> anyhow::Result<TierResult> {
    let profile = tier.profile();
    println!("\n==> tier {profile}");
    let started = Instant::now();
    // A test several unmet rules match is skipped once, with every reason.
    let mut reasons: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut exclusions = Vec::new();
    // Only the tests the user's filtersets would run count as skipped (a
    // positional name filter is not applied to this count).
    let (user_filtersets, _) = split_filtersets(&flags.nextest_args);
    for u in unmet {
        for name in list_tests(sh, profile, &and_user(&u.tests, &user_filtersets))? {
            reasons.entry(name).or_default().push(u.reason.clone());
        }
        exclusions.push(format!("not ({})", u.tests));
    }
    let skipped: Vec<Skipped> = reasons
        .into_iter()
        .map(|(name, reasons)| Skipped {
            name,
            reason: reasons.join("; "),
        })
        .collect();
    for s in &skipped {
        println!("    SKIP {} — {}", s.name, s.reason);
    }
    let filter = if exclusions.is_empty() {
        "all()".to_owned()
    } else {
        exclusions.join(" and ")
    };

    let artifacts = layout.run_artifacts(run_id);
    let shared_dir = artifacts.join(format!("shared-{profile}"));
    Layout::ensure_dir(&shared_dir)?;
    let services = if tier.shares_services() {
        Some(runtime.block_on(async {
            let nats = NatsServer::start_in(&shared_dir, "run-nats", NatsMode::JetStream).await?;
            let etcd = EtcdCluster::start_in(&shared_dir, "run-etcd", 1).await?;
            anyhow::Ok((nats, etcd))
        })?)
    } else {
        None
    };

    let junit_dir = layout.target_dir.join("nextest").join(profile);
    let junit = junit_dir.join("junit.xml");
    let _ = std::fs::remove_file(&junit);
    // nextest talks to the terminal directly (live progress); its exit
    // code and JUnit file are read afterwards.
    let mut command = std::process::Command::new("cargo");
    command
        .current_dir(sh.current_dir())
        .args(["nextest", "run", "--profile", profile, "--no-tests=warn"])
        .args(with_exclusions(&filter, &flags.nextest_args))
        .env("TESTBED_RUN_ID", run_id.as_str())
        .env("TESTBED_KEEP_LOGS", if flags.keep_logs { "1" } else { "0" });
    if let Some((nats, etcd)) = &services {
        command.envs(nats.env().into_iter().chain(etcd.env()));
    }
    let exit_code = match command.status() {
        Ok(status) => status.code().unwrap_or(130),
        Err(e) => anyhow::bail!("cannot run cargo nextest: {e}; install it with `cargo install cargo-nextest --locked` or enter `nix develop`"),
    };
    drop(services);
    let leaked: Vec<String> = reaper::reap_run(layout, run_id)
        .into_iter()
        .map(|r| format!("{} (pid {})", r.command, r.pid))
        .collect();
    if interrupted.load(Ordering::SeqCst) {
        println!("xtask: interrupted during tier {profile}");
    }

    let counts = if junit.is_file() {
        summary::read_junit(&junit)?
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

/// The names of the tier's tests that `filter` selects.
fn list_tests(sh: &Shell, profile: &str, filter: &str) -> anyhow::Result<Vec<String>> {
    let json = cmd!(
        sh,
        "cargo nextest list --profile {profile} -E {filter} --message-format json"
    )
    .quiet()
    .ignore_stderr()
    .read()
    .with_context(|| format!("listing the tests of {profile} that match {filter}"))?;
    let value: serde_json::Value = serde_json::from_str(&json)?;
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
