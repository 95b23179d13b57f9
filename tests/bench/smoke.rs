//! A short sweep of a real topology (2 mockers, KV router, speedup 10):
//! results and charts are written, read back, and the numbers are sane.

use std::sync::Arc;

use testbed_dynamo::{RouterMode, TopologyBuilder};
use testbed_harness::run_test;
use testbed_load::{BenchResults, BenchSpec, PromptSet, TokenCounter};

#[test]
fn sweep_of_a_real_topology_writes_sane_results_and_charts() {
    run_test(|ctx| async move {
        let builder = TopologyBuilder::routed(2, RouterMode::Kv).speedup(10.0);
        let t = builder.start(&ctx).await?;
        let tokenizer = t.model().tokenizer()?;
        let spec = BenchSpec {
            input_tokens: 64,
            output_tokens: 16,
            concurrencies: vec![1, 2],
            requests_per_point: 10,
            progress: false,
            ..BenchSpec::new(t.frontend.url(), t.model_name())
        };
        let prompts = Arc::new(PromptSet::generate(&tokenizer, 64, 20, 7)?);
        for p in &prompts.prompts {
            assert_eq!(tokenizer.count(p)?, 64, "{p:?}");
        }
        let points = testbed_load::sweep(&spec, &prompts).await?;
        drop(t);
        let results = BenchResults::new(
            ctx.run_id().as_str(),
            spec,
            "2 mockers, kv router, speedup 10",
            points,
        );
        let dir = ctx.subdir("bench")?;
        let files = results.write(&dir)?;

        // Everything comes back from disk.
        let back = BenchResults::read(&dir)?;
        assert_eq!(back.spec, results.spec);
        assert_eq!(back.points.len(), 2);
        assert_eq!(
            back.pins.get("ai-dynamo").map(String::as_str),
            Some("1.6.1")
        );
        assert!(back.host.cores > 0 && back.host.memory_bytes > 0);
        assert!(back.git_revision.as_deref().is_some_and(|r| r.len() >= 40));
        let csv = std::fs::read_to_string(dir.join("results.csv"))?;
        let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 3, "{csv}");
        assert!(rows.iter().all(|r| r.len() == rows[0].len()), "{csv}");
        assert_eq!((rows[1][0], rows[2][0]), ("1", "2"));
        for chart in ["throughput", "ttft", "itl", "latency_vs_throughput"] {
            let png = std::fs::read(dir.join(format!("{chart}.png")))?;
            assert_eq!(&png[..4], b"\x89PNG", "{chart}.png");
            let svg = std::fs::read_to_string(dir.join(format!("{chart}.svg")))?;
            assert!(
                svg.contains("<svg") && svg.contains("concurrency")
                    || chart == "latency_vs_throughput"
            );
        }
        assert_eq!(files.len(), 10);

        // The chat template adds the same tokens to every prompt: the
        // server's prompt count is exact and the same for every request.
        let rendered = format!(
            "{}<user>{}\n<assistant>",
            testbed_dynamo::model::BOS,
            prompts.get(0)
        );
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
