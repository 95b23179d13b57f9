//! Metrics move by exactly what the test caused: requests, TTFT and ITL on
//! the frontend, requests on the worker.

use testbed_dynamo::{metrics, Metrics, OpenAiClient, TopologyBuilder};
use testbed_harness::run_test;

#[test]
fn request_ttft_and_itl_metrics_count_what_was_sent() {
    run_test(|ctx| async move {
        let t = TopologyBuilder::aggregated().start(&ctx).await?;
        let url = t.frontend.metrics_url();
        let worker_url = t.workers[0].metrics_url();
        let before = Metrics::scrape(&url).await?;
        let worker_before = Metrics::scrape(&worker_url).await?;
        let tokens = 10u32;
        for i in 0..3 {
            let s = t
                .client()
                .stream(
                    "/v1/chat/completions",
                    OpenAiClient::chat_body("tiny", &format!("m{i}"), tokens),
                )
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
    run_test(|ctx| async move {
        let t = TopologyBuilder::aggregated()
            .mocker(testbed_dynamo::MockerOptions {
                num_gpu_blocks: Some(512),
                ..Default::default()
            })
            .start(&ctx)
            .await?;
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
