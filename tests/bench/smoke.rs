//! The benchmark path as a user runs it: `cargo xtask bench` (the runner)
//! starts a real topology (2 mockers, KV router, speedup 10), sweeps it,
//! and writes results and charts, which are read back and must be sane.

use std::process::Command;

use testbed_harness::run_test;
use testbed_load::{BenchResults, TokenCounter};

#[test]
fn bench_command_sweeps_a_real_topology_and_writes_sane_results_and_charts() {
    run_test(|ctx| async move {
        let dir = ctx.subdir("bench")?;
        let out = Command::new(testbed_tests::runner_binary()?)
            .args([
                "bench",
                "--concurrency",
                "1,2",
                "--requests",
                "10",
                "--rounds",
                "1",
            ])
            .args(["--isl", "64", "--osl", "16", "--out"])
            .arg(&dir)
            .env("TESTBED_RUN_ID", ctx.run_id().as_str())
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        anyhow::ensure!(
            out.status.success(),
            "bench failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        assert!(
            stderr.contains("bench: c=2: 10/10 ok"),
            "progress is printed per point: {stderr}"
        );

        let back = BenchResults::read(&dir)?;
        assert_eq!(back.points.len(), 2);
        assert_eq!(
            back.topology,
            "2 mocker(s), kv router, speedup 10; uniform 64 tokens"
        );
        assert_eq!(
            back.pins.get("ai-dynamo").map(String::as_str),
            Some("1.6.1")
        );
        assert!(back.host.cores > 0 && back.host.memory_bytes > 0);
        // A clone records its commit; a tree from an archive has none.
        if testbed_harness::Layout::from_env().is_git_checkout() {
            assert!(back.git_revision.as_deref().is_some_and(|r| r.len() >= 40));
        } else {
            assert_eq!(back.git_revision, None, "no checkout, no revision");
        }
        let csv = std::fs::read_to_string(dir.join("results.csv"))?;
        let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 3, "{csv}");
        assert!(rows.iter().all(|r| r.len() == rows[0].len()), "{csv}");
        assert_eq!((rows[1][0], rows[2][0]), ("1", "2"));
        for chart in ["throughput", "ttft", "itl", "latency_vs_throughput"] {
            let png = std::fs::read(dir.join(format!("{chart}.png")))?;
            assert_eq!(&png[..4], b"\x89PNG", "{chart}.png");
            let svg = std::fs::read_to_string(dir.join(format!("{chart}.svg")))?;
            assert!(svg.contains("<svg"), "{chart}.svg is an SVG");
            let axis = if chart == "latency_vs_throughput" {
                "tokens/s"
            } else {
                "concurrency"
            };
            assert!(svg.contains(axis), "{chart}.svg labels its axis {axis:?}");
        }

        // The chat template adds the same tokens to every prompt: the
        // server's prompt count is exact and the same for every request.
        // (The bench's prompts come from seed 1.)
        let tokenizer = testbed_dynamo::TinyModel::ensure()?.tokenizer()?;
        let first = testbed_load::prompts::exact_prompt(&tokenizer, 64, 1)?;
        let rendered = format!("{}<user>{first}\n<assistant>", testbed_dynamo::model::BOS);
        let expected = tokenizer.count(&rendered)? as u64;
        for p in &back.points {
            let why = format!("{p:#?}");
            assert_eq!((p.completed, p.failed), (10, 0), "{why}");
            assert!(p.errors.is_empty(), "{why}");
            assert_eq!(p.output_tokens, 10 * 16, "{why}");
            assert!(p.output_token_rate > 0.0 && p.request_rate > 0.0, "{why}");
            assert_eq!(
                (p.input_tokens_min, p.input_tokens_max),
                (expected, expected),
                "{why}"
            );
            for s in [&p.ttft_ms, &p.itl_ms, &p.e2e_ms] {
                assert!(
                    s.min <= s.p50 && s.p50 <= s.p90 && s.p90 <= s.p99 && s.p99 <= s.max,
                    "{why}"
                );
            }
            assert!(p.ttft_ms.p50 > 0.0 && p.ttft_ms.p50 < p.e2e_ms.p50, "{why}");
            assert_eq!(p.ttft_ms.count, 10);
            assert_eq!(p.itl_ms.count, 10 * 15, "{why}");
        }
        Ok(())
    });
}

/// Runs the runner's `bench` with `args` into `dir` and reads the results.
fn bench(
    ctx: &testbed_harness::TestContext,
    dir: &std::path::Path,
    args: &[&str],
) -> anyhow::Result<BenchResults> {
    let out = Command::new(testbed_tests::runner_binary()?)
        .arg("bench")
        .args(args)
        .args(["--rounds", "1", "--out"])
        .arg(dir)
        .current_dir(&testbed_harness::Layout::from_env().repo_root)
        .env("TESTBED_RUN_ID", ctx.run_id().as_str())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "bench {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    BenchResults::read(dir)
}

/// A Mooncake trace is replayed at its own timestamps (sped up), and an
/// open-loop sweep offers Poisson arrivals at each `--rate`.
#[test]
fn trace_replay_keeps_the_timestamps_and_rates_are_offered_open_loop() {
    run_test(|ctx| async move {
        let trace = bench(
            &ctx,
            &ctx.subdir("trace")?,
            &[
                "--workload",
                "trace",
                "--trace",
                "tests/data/mooncake-sample.jsonl",
                "--trace-speed",
                "4",
            ],
        )?;
        let [point] = &trace.points[..] else {
            panic!("a replay is one point: {:#?}", trace.points);
        };
        assert_eq!(
            (point.completed, point.failed, point.load().as_str()),
            (60, 0, "trace")
        );
        // The sample's last request is sent at 4622 ms: 1.16 s at speed 4.
        assert!(
            point.duration_s >= 4.622 / 4.0,
            "the replay waited for each timestamp: {} s",
            point.duration_s
        );
        assert!(
            point.input_tokens_min < point.input_tokens_max,
            "the trace's lengths vary"
        );

        let rates = bench(
            &ctx,
            &ctx.subdir("rates")?,
            &[
                "--workload",
                "shared-prefix",
                "--rate",
                "20,40",
                "--requests",
                "20",
                "--isl",
                "64",
                "--osl",
                "8",
            ],
        )?;
        assert!(
            rates
                .topology
                .ends_with("shared prefix: 8 groups, 58 of 64 tokens shared"),
            "{}",
            rates.topology
        );
        let loads: Vec<String> = rates.points.iter().map(|p| p.load()).collect();
        assert_eq!(loads, ["20 req/s", "40 req/s"]);
        // 20 arrivals at 20/s take 0.95 s on average; a closed loop would
        // send them all in a fraction of that.
        assert!(rates.points[0].duration_s > 0.4, "{:#?}", rates.points[0]);
        assert!(rates
            .points
            .iter()
            .all(|p| p.completed == 20 && p.failed == 0));
        Ok(())
    });
}
