//! Comparing runs: an identical rerun passes at 10%, a planted 20%
//! regression (slower latencies, lower rates) is flagged by name.

use std::sync::Arc;
use std::time::Duration;

use testbed_harness::run_test;
use testbed_load::{
    compare, sweep, BenchResults, BenchSpec, LoopbackSseServer, PromptSet, SseServerConfig,
};

/// Every latency 20% longer, every rate 20% lower.
fn planted_regression(mut r: BenchResults) -> BenchResults {
    for p in &mut r.points {
        for s in [&mut p.ttft_ms, &mut p.itl_ms, &mut p.e2e_ms] {
            for v in [
                &mut s.mean,
                &mut s.min,
                &mut s.p50,
                &mut s.p90,
                &mut s.p99,
                &mut s.max,
            ] {
                *v *= 1.2;
            }
        }
        p.request_rate /= 1.2;
        p.output_token_rate /= 1.2;
        p.duration_s *= 1.2;
    }
    r
}

#[test]
fn compare_flags_a_planted_regression_and_passes_an_identical_rerun() {
    run_test(|ctx| async move {
        let server = LoopbackSseServer::start(SseServerConfig {
            ttft: Duration::from_millis(5),
            itl: Duration::from_millis(1),
            ..SseServerConfig::default()
        })?;
        let spec = BenchSpec {
            output_tokens: 8,
            requests_per_point: 20,
            concurrencies: vec![1, 4],
            progress: false,
            ..BenchSpec::new(&server.url(), "loopback")
        };
        let prompts = Arc::new(PromptSet {
            tokens: 1,
            prompts: vec!["hello".into()],
        });
        let points = sweep(&spec, &prompts).await?;
        let base = BenchResults::new("base", spec, "loopback", points);
        let (old_dir, same_dir, slow_dir) =
            (ctx.subdir("old")?, ctx.subdir("same")?, ctx.subdir("slow")?);
        base.write(&old_dir)?;
        base.write(&same_dir)?;
        planted_regression(base.clone()).write(&slow_dir)?;
        let old = BenchResults::read(&old_dir)?;

        let same = compare(&old, &BenchResults::read(&same_dir)?, 10.0);
        assert!(same.regressions().is_empty(), "{}", same.table());
        assert!(same.unmatched.is_empty());

        let slow = compare(&old, &BenchResults::read(&slow_dir)?, 10.0);
        let table = slow.table();
        println!("{table}");
        let flagged: std::collections::BTreeSet<&str> =
            slow.regressions().iter().map(|r| r.metric).collect();
        for metric in [
            "request_rate",
            "output_token_rate",
            "ttft_p50_ms",
            "ttft_p99_ms",
            "itl_p50_ms",
            "e2e_p50_ms",
            "e2e_p99_ms",
        ] {
            assert!(flagged.contains(metric), "{metric} not flagged:\n{table}");
        }
        assert!(!flagged.contains("failed"));
        assert!(
            table.contains("REGRESSED") && table.contains("+20.0%"),
            "{table}"
        );
        // Above the planted change, nothing is flagged.
        assert!(compare(&old, &BenchResults::read(&slow_dir)?, 25.0)
            .regressions()
            .is_empty());
        Ok(())
    });
}
