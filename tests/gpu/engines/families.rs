//! The families, for any engine: one worker (serving, determinism,
//! cancellation) and two workers (KV routing).

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;
use testbed_dynamo::{
    DiscoveryKind, EventPlaneKind, OpenAiClient, RouterMode, Topology, TopologyBuilder, WorkerSpec,
};
use testbed_harness::run_test;
use testbed_tests::{assert_cancelled, disconnect_mid_stream, ok, text_of, Before};

const MODEL: &str = "tiny";
const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

/// `workers` workers of `engine` behind the router in `mode`, with file
/// discovery and ZMQ events (no etcd or NATS needed).
fn topology(engine: WorkerSpec, workers: usize, mode: RouterMode) -> TopologyBuilder {
    TopologyBuilder::routed(workers, mode)
        .discovery(DiscoveryKind::File)
        .event_plane(EventPlaneKind::Zmq)
        .engine(engine)
}

/// Serving, determinism and cancellation on one worker of `engine`.
pub fn one_worker(engine: WorkerSpec) {
    run_test(|ctx| async move {
        let t = topology(engine, 1, RouterMode::RoundRobin)
            .start(&ctx)
            .await?;
        let client = t.client();
        serving(&client).await?;
        determinism(&client).await?;
        cancellation(&t).await
    });
}

/// KV routing on two workers of `engine` sharing the GPU.
pub fn two_workers(engine: WorkerSpec) {
    run_test(|ctx| async move {
        let t = topology(engine, 2, RouterMode::Kv).start(&ctx).await?;
        for group in 0..2u64 {
            let prefix = testbed_tests::prompt(500 + group, 200);
            let mut workers = BTreeSet::new();
            for i in 0..4 {
                let answer = ok(
                    &t.client(),
                    COMPLETIONS,
                    &json!({"model": MODEL, "prompt": format!("{prefix} question {i}"),
                            "max_tokens": 4, "temperature": 0.0,
                            "nvext": {"extra_fields": ["worker_id"]}}),
                )
                .await?;
                workers.insert(Topology::served_by(&answer)?);
                if i == 0 {
                    // KV events reach the router asynchronously.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            assert_eq!(
                workers.len(),
                1,
                "group {group}: requests sharing a prefix went to {workers:?}"
            );
        }
        Ok(())
    });
}

async fn serving(client: &OpenAiClient) -> anyhow::Result<()> {
    let models = client.get("/v1/models").await?;
    assert!(
        models.json["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|m| m["id"] == MODEL)),
        "/v1/models lists {MODEL}: {}",
        models.text
    );
    let chat = ok(
        client,
        CHAT,
        &json!({"model": MODEL, "max_tokens": 8, "ignore_eos": true,
                "messages": [{"role": "user", "content": "hello GPU"}]}),
    )
    .await?;
    assert_eq!(chat["usage"]["completion_tokens"], 8, "{chat}");
    assert_eq!(chat["choices"][0]["finish_reason"], "length", "{chat}");
    let stream = client
        .stream(
            COMPLETIONS,
            json!({"model": MODEL, "prompt": "count with me", "max_tokens": 16,
                   "ignore_eos": true, "stream_options": {"include_usage": true}}),
        )
        .await?;
    assert!(stream.done(), "the stream ends with [DONE]");
    assert!(stream.content_chunks() >= 1, "the stream carried tokens");
    assert_eq!(
        stream.usage().map(|u| u["completion_tokens"].clone()),
        Some(json!(16)),
        "streamed usage"
    );
    Ok(())
}

async fn determinism(client: &OpenAiClient) -> anyhow::Result<()> {
    let greedy = json!({"model": MODEL, "prompt": "the same every time", "max_tokens": 24,
                        "temperature": 0.0, "ignore_eos": true});
    let (a, b) = (
        ok(client, COMPLETIONS, &greedy).await?,
        ok(client, COMPLETIONS, &greedy).await?,
    );
    assert_eq!(text_of(&a), text_of(&b), "greedy decoding repeats");
    let seeded = json!({"model": MODEL, "prompt": "a seeded story", "max_tokens": 24,
                        "temperature": 1.0, "seed": 1234, "ignore_eos": true});
    let (a, b) = (
        ok(client, COMPLETIONS, &seeded).await?,
        ok(client, COMPLETIONS, &seeded).await?,
    );
    assert_eq!(
        text_of(&a),
        text_of(&b),
        "sampling with a fixed seed repeats"
    );
    Ok(())
}

async fn cancellation(t: &Topology) -> anyhow::Result<()> {
    let before = Before::scrape(&t.frontend.metrics_url(), &t.workers[0].metrics_url()).await?;
    let body = json!({"model": MODEL, "prompt": "a very long story", "max_tokens": 400,
                      "ignore_eos": true});
    disconnect_mid_stream(&t.client(), COMPLETIONS, body, || async {
        t.busy_worker(Duration::from_secs(30)).await.map(drop)
    })
    .await?;
    assert_cancelled(&before).await
}
