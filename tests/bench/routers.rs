//! Dynamo's headline router result, reproduced on mockers by `cargo xtask
//! bench routers`: on groups of prompts sharing long prefixes (more groups
//! than the workers' caches hold), KV routing's TTFT p50 beats
//! round-robin's and random's by at least 20%; and the comparison turns
//! red when KV routing is told to ignore the cache (a planted regression:
//! `--router-kv-overlap-score-credit 0`).

use std::process::Command;

use testbed_harness::run_test;
use testbed_load::router_comparison::RouterComparison;
use testbed_load::BenchResults;

/// Runs `bench routers` with `args` into `dir`; (exit code, stdout).
fn routers(
    ctx: &testbed_harness::TestContext,
    dir: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<(i32, String)> {
    let out = Command::new(testbed_tests::runner_binary()?)
        .args(["bench", "routers", "--requests", "80", "--out"])
        .arg(dir)
        .args(args)
        .env("TESTBED_RUN_ID", ctx.run_id().as_str())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), stdout))
}

#[test]
fn kv_routing_beats_round_robin_and_random_on_shared_prefixes() {
    run_test(|ctx| async move {
        let dir = ctx.subdir("routers")?;
        let (code, stdout) = routers(&ctx, &dir, &[])?;
        assert_eq!(code, 0, "KV routing leads by 20%: {stdout}");
        let runs = ["kv", "round-robin", "random"]
            .map(|name| BenchResults::read(&dir.join(name)).map(|r| (name.to_owned(), r)))
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?;
        let comparison = RouterComparison::of(&runs, 20.0)?;
        assert!(comparison.kv_wins(), "{}", comparison.table());
        assert_eq!(comparison.rows.len(), 2, "points at concurrency 1 and 2");
        for (name, run) in &runs {
            assert!(
                run.points
                    .iter()
                    .all(|p| p.failed == 0 && p.completed == 80),
                "{name}"
            );
        }
        for chart in ["ttft", "throughput"] {
            let svg = std::fs::read_to_string(dir.join(format!("{chart}.svg")))?;
            for name in ["kv", "round-robin", "random"] {
                assert!(svg.contains(name), "{chart}.svg overlays {name}");
            }
        }
        Ok(())
    });
}

#[test]
fn a_kv_router_that_ignores_the_cache_fails_the_comparison() {
    run_test(|ctx| async move {
        let dir = ctx.subdir("planted")?;
        let (code, stdout) = routers(
            &ctx,
            &dir,
            &[
                "--modes",
                "kv,round-robin",
                "--frontend-arg=--router-kv-overlap-score-credit=0",
            ],
        )?;
        assert_eq!(
            code, 4,
            "the planted regression turns the comparison red: {stdout}"
        );
        assert!(stdout.contains("REGRESSED"), "{stdout}");
        Ok(())
    });
}
