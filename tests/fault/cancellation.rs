//! Client disconnects: the worker cancels, the frontend counts the
//! disconnected client, and nothing stays in flight.

use std::time::Duration;

use serde_json::json;
use testbed_dynamo::TopologyBuilder;
use testbed_tests::{assert_cancelled, disconnect_mid_stream, Before};

fn slow() -> TopologyBuilder {
    TopologyBuilder::aggregated().speedup(1.0)
}

#[test]
fn streaming_client_disconnect_cancels_on_the_worker() {
    slow().test(|t, _| async move {
        let before = Before::scrape(&t.frontend.metrics_url(), &t.workers[0].metrics_url()).await?;
        let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "long story"}], "max_tokens": 500});
        disconnect_mid_stream(&t.client(), "/v1/chat/completions", body, || async {
            t.busy_worker(Duration::from_secs(10)).await.map(drop)
        })
        .await?;
        assert_cancelled(&before).await
    });
}

#[test]
fn unary_client_disconnect_cancels_on_the_worker() {
    slow().test(|t, _| async move {
        let before = Before::scrape(&t.frontend.metrics_url(), &t.workers[0].metrics_url()).await?;
        let body = json!({"model": "tiny", "messages": [{"role": "user", "content": "long answer"}], "max_tokens": 500});
        let request = t
            .client()
            .send_unread("/v1/chat/completions", &body)
            .await?;
        // Disconnect once the worker is generating, so the cancellation has
        // something to cancel.
        t.busy_worker(Duration::from_secs(10)).await?;
        request.abandon().await?;
        assert_cancelled(&before).await
    });
}
