//! Client disconnects: the worker cancels, the frontend counts the
//! disconnected client, and nothing stays in flight.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use testbed_dynamo::{metrics, Metrics, Topology, TopologyBuilder};
use testbed_harness::run_test;

fn slow() -> TopologyBuilder {
    TopologyBuilder::aggregated().speedup(1.0)
}

/// Waits until the worker counted a cancellation, the frontend a
/// disconnected client, and both have nothing in flight.
async fn assert_cancelled(
    t: &Topology,
    frontend_before: &Metrics,
    worker_before: &Metrics,
) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..100 {
        let f = Metrics::scrape(&t.frontend.metrics_url()).await?;
        let w = Metrics::scrape(&t.workers[0].metrics_url()).await?;
        let cancelled = metrics::delta(
            worker_before,
            &w,
            "dynamo_component_cancellation_total",
            &[],
        );
        let disconnected = metrics::delta(
            frontend_before,
            &f,
            "dynamo_frontend_disconnected_clients",
            &[],
        );
        let inflight = (
            f.value("dynamo_frontend_inflight_requests", &[]),
            w.value("dynamo_component_inflight_requests", &[]),
        );
        if cancelled >= 1.0 && disconnected >= 1.0 && inflight == (0.0, 0.0) {
            println!("cancelled {cancelled}, disconnected {disconnected}, inflight {inflight:?}");
            return Ok(());
        }
        last = format!("worker cancellations +{cancelled}, disconnected clients +{disconnected}, inflight (frontend, worker) {inflight:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the disconnect was not cancelled through: {last}")
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
        let url = format!("{}/v1/chat/completions", t.frontend.url());
        let request = tokio::spawn(async move {
            let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "long answer"}], "max_tokens": 500});
            reqwest::Client::builder()
                .no_proxy()
                .build()?
                .post(url)
                .json(&body)
                .send()
                .await
        });
        // Disconnect once the worker is generating, so the cancellation has
        // something to cancel.
        t.busy_worker(Duration::from_secs(10)).await?;
        request.abort();
        assert!(
            request.await.is_err_and(|e| e.is_cancelled()),
            "the client gave up before any answer"
        );
        assert_cancelled(&t, &fb, &wb).await
    });
}
