//! The families, for any engine: one worker (serving, determinism,
//! cancellation) and two workers (KV routing).

use std::time::Duration;

use serde_json::json;
use testbed_dynamo::metrics;
use testbed_dynamo::{
    DiscoveryKind, EventPlaneKind, OpenAiClient, RouterMode, Topology, TopologyBuilder, WorkerSpec,
};
use testbed_tests::{assert_cancelled, disconnect_mid_stream, ok, pinned, text_of, Before};

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
    topology(engine, 1, RouterMode::RoundRobin).test(|t, _| async move {
        let client = t.client();
        serving(&client).await?;
        determinism(&client).await?;
        cancellation(&t).await
    });
}

/// KV routing on two workers of `engine` sharing the GPU: each prompt's
/// first request is pinned to a different worker, so its repeats must
/// follow the cache (not a tie-break), which the engine's KV events report
/// as holding the prefix.
pub fn two_workers(engine: WorkerSpec) {
    topology(engine, 2, RouterMode::Kv).test(|t, _| async move {
        let frontend = t.frontend.metrics_url();
        let mut holders = Vec::new();
        for w in &t.workers {
            holders.push(testbed_tests::instance_id(&w.metrics_url()).await?);
        }
        for (group, holder) in holders.iter().enumerate() {
            let prompt = testbed_tests::prompt_of_tokens(500 + group as u64, 600);
            let body = json!({"model": MODEL, "prompt": prompt, "max_tokens": 4,
                              "temperature": 0.0, "ignore_eos": true,
                              "nvext": {"extra_fields": ["worker_id", "timing"]}});
            let mark = metrics::kv_index_mark(&frontend).await?;
            let first = ok(&t.client(), COMPLETIONS, &pinned(body.clone(), *holder)).await?;
            assert_eq!(
                Topology::served_by(&first)?,
                *holder,
                "the first request is pinned"
            );
            // KV events reach the router asynchronously: route the repeats
            // once the first request's blocks are indexed.
            metrics::kv_indexed_since(&frontend, mark).await?;
            for i in 0..3 {
                let answer = ok(&t.client(), COMPLETIONS, &body).await?;
                // The router's view of the cache comes from the engine's own
                // KV events; cached_tokens is printed (not every engine
                // reports it in usage).
                let hit = answer["nvext"]["timing"]["kv_hit_rate"]
                    .as_f64()
                    .unwrap_or(0.0);
                let cached = &answer["usage"]["prompt_tokens_details"]["cached_tokens"];
                println!("group {group} repeat {i}: hit rate {hit}, cached tokens {cached}");
                assert_eq!(
                    Topology::served_by(&answer)?,
                    *holder,
                    "group {group}: the repeat follows the cache"
                );
                assert!(
                    hit > 0.5,
                    "group {group}: the engine reported the prefix cached: {answer}"
                );
            }
        }
        Ok(())
    });
}

async fn serving(client: &OpenAiClient) -> anyhow::Result<()> {
    let models = client.models().await?;
    assert!(
        models.iter().any(|m| m == MODEL),
        "/v1/models lists {MODEL}: {models:?}"
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
