//! Metrics move by exactly what the test caused: requests, TTFT and ITL on
//! the frontend, requests on the worker.

use testbed_dynamo::{metrics, Metrics, TopologyBuilder};

#[test]
fn request_ttft_and_itl_metrics_count_what_was_sent() {
    TopologyBuilder::aggregated().test(|t, _| async move {
        let url = t.frontend.metrics_url();
        let worker_url = t.workers[0].metrics_url();
        let before = Metrics::scrape(&url).await?;
        let worker_before = Metrics::scrape(&worker_url).await?;
        let tokens = 10u32;
        for i in 0..3 {
            let s = t
                .client()
                .stream_chat("tiny", &format!("m{i}"), tokens)
                .await?;
            anyhow::ensure!(s.done(), "stream {i} did not finish");
        }
        for i in 0..2 {
            anyhow::ensure!(
                t.client()
                    .chat("tiny", &format!("u{i}"), tokens)
                    .await?
                    .status
                    == 200
            );
        }
        let after = Metrics::scrape(&url).await?;
        let worker_after = Metrics::scrape(&worker_url).await?;
        let d = |name: &str, labels: &[(&str, &str)]| metrics::delta(&before, &after, name, labels);
        assert_eq!(
            d(
                "dynamo_frontend_requests_total",
                &[("model", "tiny"), ("status", "success")]
            ),
            5.0
        );
        assert_eq!(
            d(
                "dynamo_frontend_requests_total",
                &[("model", "tiny"), ("request_type", "stream")]
            ),
            3.0
        );
        assert_eq!(
            d(
                "dynamo_frontend_time_to_first_token_seconds",
                &[("model", "tiny")]
            ),
            5.0,
            "one TTFT per request"
        );
        let itl = d(
            "dynamo_frontend_inter_token_latency_seconds",
            &[("model", "tiny")],
        );
        assert!(
            itl >= 5.0 && itl <= 5.0 * f64::from(tokens),
            "ITL observations {itl} for 5 requests of {tokens} tokens"
        );
        assert_eq!(
            d("dynamo_frontend_output_tokens_total", &[("model", "tiny")]),
            5.0 * f64::from(tokens)
        );
        assert_eq!(
            metrics::delta(
                &worker_before,
                &worker_after,
                "dynamo_component_requests_total",
                &[]
            ),
            5.0,
            "the worker counted 5 requests"
        );
        assert_eq!(after.value("dynamo_frontend_inflight_requests", &[]), 0.0);
        Ok(())
    });
}

/// The frontend's per-model gauges report what the worker was started
/// with: its KV block size and capacity (`--num-gpu-blocks-override`), the
/// engine's batch limits (the mocker's defaults: 256 sequences, 8192
/// batched tokens) and no context limit (0: none given).
#[test]
fn model_gauges_report_the_workers_configuration() {
    TopologyBuilder::aggregated()
        .mocker(testbed_dynamo::MockerOptions {
            num_gpu_blocks: Some(512),
            ..Default::default()
        })
        .test(|t, _| async move {
            let m = Metrics::scrape(&t.frontend.metrics_url()).await?;
            let model = [("model", "tiny")];
            let gauges = [
                ("dynamo_frontend_model_kv_cache_block_size", 16.0),
                ("dynamo_frontend_model_total_kv_blocks", 512.0),
                ("dynamo_frontend_model_max_num_seqs", 256.0),
                ("dynamo_frontend_model_max_num_batched_tokens", 8192.0),
                ("dynamo_frontend_model_context_length", 0.0),
            ];
            for (name, want) in gauges {
                assert_eq!(m.value(name, &model), want, "{name}");
            }
            Ok(())
        });
}

/// The time a mocker worker takes for `tokens` tokens of one request.
async fn decode_time(
    ctx: &testbed_harness::TestContext,
    speedup: f64,
    tokens: u32,
) -> anyhow::Result<std::time::Duration> {
    let t = TopologyBuilder::aggregated()
        .speedup(speedup)
        .start(ctx)
        .await?;
    // The first request pays for connections and the tokenizer's warm-up.
    t.client().chat("tiny", "warm up", 2).await?;
    let started = std::time::Instant::now();
    let answer = t.client().chat("tiny", "how fast are you?", tokens).await?;
    anyhow::ensure!(answer.status == 200, "{}", answer.text);
    Ok(started.elapsed())
}

/// `--speedup-ratio` scales the mocker's simulated timing: the same
/// 64-token answer takes at least 5 times longer at ratio 1 than at 50
/// (measured: ~? s against ~? ms). Compared in one test, so that a slow
/// machine slows both.
#[test]
fn the_speedup_ratio_scales_the_mockers_timing() {
    testbed_harness::run_test(|ctx| async move {
        let slow = decode_time(&ctx, 1.0, 64).await?;
        let fast = decode_time(&ctx, 50.0, 64).await?;
        println!("64 tokens: {slow:?} at speedup 1, {fast:?} at speedup 50");
        assert!(
            slow >= fast * 5,
            "speedup 50 is not faster: {slow:?} at 1, {fast:?} at 50"
        );
        Ok(())
    });
}
