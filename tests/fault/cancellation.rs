//! Client disconnects: the worker cancels, the frontend counts the
//! disconnected client, and nothing stays in flight.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use testbed_dynamo::{Metrics, TopologyBuilder};
use testbed_harness::run_test;
use testbed_tests::assert_cancelled;

fn slow() -> TopologyBuilder {
    TopologyBuilder::aggregated().speedup(1.0)
}

#[test]
fn streaming_client_disconnect_cancels_on_the_worker() {
    run_test(|ctx| async move {
        let t = slow().start(&ctx).await?;
        let fb = Metrics::scrape(&t.frontend.metrics_url()).await?;
        let wb = Metrics::scrape(&t.workers[0].metrics_url()).await?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "long story"}], "max_tokens": 500, "stream": true});
        let resp = http
            .post(format!("{}/v1/chat/completions", t.frontend.url()))
            .json(&body)
            .send()
            .await?;
        assert_eq!(resp.status(), 200);
        let mut bytes = resp.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(10), bytes.next()).await?;
        assert!(first.is_some(), "the stream started");
        // The first event can precede the worker's start (under load): go
        // away only once the worker is generating.
        t.busy_worker(Duration::from_secs(10)).await?;
        drop(bytes); // the client goes away mid-stream
        drop(http);
        assert_cancelled(&t, &fb, &wb).await
    });
}

#[test]
fn unary_client_disconnect_cancels_on_the_worker() {
    run_test(|ctx| async move {
        let t = slow().start(&ctx).await?;
        let fb = Metrics::scrape(&t.frontend.metrics_url()).await?;
        let wb = Metrics::scrape(&t.workers[0].metrics_url()).await?;
        let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "long answer"}], "max_tokens": 500});
        let request = t
            .client()
            .send_unread("/v1/chat/completions", &body)
            .await?;
        // Disconnect once the worker is generating, so the cancellation has
        // something to cancel.
        t.busy_worker(Duration::from_secs(10)).await?;
        request.abandon().await?;
        assert_cancelled(&t, &fb, &wb).await
    });
}
