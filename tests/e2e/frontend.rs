//! The frontend: models, chat and completions (unary and streaming, usage
//! consistent with the tokenizer), health, readiness, the error contract,
//! and what a client that gives up does.

use std::time::Duration;

use serde_json::json;
use testbed_dynamo::{metrics, Metrics, TopologyBuilder};
use testbed_harness::poll::{check, Poll};

#[test]
fn health_live_and_ready() {
    TopologyBuilder::aggregated().test(|t, _| async move {
        let c = t.client();
        assert_eq!(c.get("/health").await?.status, 200);
        let live = c.get("/live").await?;
        assert_eq!(
            (live.status, live.json["status"].as_str()),
            (200, Some("live"))
        );
        let ready = c.get("/v1/models/tiny/ready").await?;
        assert_eq!(ready.json["ready"], true);
        assert_eq!(testbed_dynamo::topology::count_workers(&ready.json), 1);
        assert_eq!(
            c.get("/v1/models/nope/ready").await?.status,
            404,
            "unknown models are not ready"
        );
        Ok(())
    });
}

#[test]
fn client_timeout_frees_the_request() {
    // Slow generation: speedup 1, 400 tokens take seconds.
    TopologyBuilder::aggregated().speedup(1.0).test(|t, _| async move {
        let before = Metrics::scrape(&t.frontend.metrics_url()).await?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(300))
            .build()?;
        let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "long"}], "max_tokens": 400});
        let err = http
            .post(format!("{}/v1/chat/completions", t.frontend.url()))
            .json(&body)
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        Poll::new("the frontend counting the disconnected client, with nothing in flight")
            .until(|| async {
                let now = Metrics::scrape(&t.frontend.metrics_url()).await?;
                let disconnected =
                    metrics::delta(&before, &now, "dynamo_frontend_disconnected_clients", &[]);
                let inflight = now.value("dynamo_frontend_inflight_requests", &[]);
                Ok(check(disconnected >= 1.0 && inflight == 0.0, || {
                    format!("disconnected +{disconnected}, in flight {inflight}")
                }))
            })
            .await?;
        Ok(())
    });
}

#[test]
fn model_whose_workers_all_left_is_404() {
    TopologyBuilder::aggregated().test(|mut t, _| async move {
        t.workers[0].process().stop().await;
        t.wait_for_worker_count(0, Duration::from_secs(15)).await?;
        let answer = t.client().chat("tiny", "anyone there?", 4).await?;
        assert_eq!(answer.status, 404, "{}", answer.text);
        let models = t.client().models().await?;
        assert!(
            models.is_empty(),
            "the model is no longer listed: {models:?}"
        );
        Ok(())
    });
}
