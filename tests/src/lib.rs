//! Helpers the tier binaries share. Tests never spawn services or pick ports
//! themselves: they ask the drivers; what is here only glues test code.

use serde_json::Value;
use testbed_dynamo::client::Stream;
use testbed_dynamo::{metrics, Metrics, OpenAiClient, TinyModel, Topology};

/// Tokens of `text` by the fixture's tokenizer (no special tokens added).
pub fn token_count(text: &str) -> usize {
    let tokenizer = TinyModel::ensure()
        .expect("the tiny model")
        .tokenizer()
        .expect("its tokenizer");
    tokenizer.encode(text, false).expect("encode").len()
}

/// A prompt of `words` generated words, distinct per `seed`.
pub fn prompt(seed: u64, words: usize) -> String {
    let syllables = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "we", "zu", "pe", "do",
    ];
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..words)
        .map(|_| {
            let mut w = String::new();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.push_str(syllables[(x % syllables.len() as u64) as usize]);
            }
            w
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts that a stream whose worker was killed mid-way was migrated
/// transparently: status 200, no error event, `[DONE]`, every one of
/// `max_tokens` tokens, and the frontend's migration counter rose since
/// `before`.
pub async fn assert_migrated(
    stream: &Stream,
    max_tokens: u32,
    frontend_metrics_url: &str,
    before: &Metrics,
) -> anyhow::Result<()> {
    assert_eq!(stream.status, 200);
    assert!(
        stream.error().is_none(),
        "migration hid the failure: {:?}",
        stream.error()
    );
    assert!(stream.done(), "the migrated stream finished");
    assert_eq!(
        stream.usage().map(|u| u["completion_tokens"].clone()),
        Some(max_tokens.into()),
        "every token arrived"
    );
    let after = Metrics::scrape(frontend_metrics_url).await?;
    let migrations = metrics::delta(before, &after, "dynamo_frontend_model_migration_total", &[]);
    assert!(
        migrations >= 1.0,
        "the migration metric rose ({migrations})"
    );
    Ok(())
}

/// POSTs and insists on 200, returning the JSON body.
pub async fn ok(client: &OpenAiClient, path: &str, body: &Value) -> anyhow::Result<Value> {
    let answer = client.post(path, body).await?;
    anyhow::ensure!(
        answer.status == 200,
        "POST {path} answered {}: {}",
        answer.status,
        answer.text
    );
    Ok(answer.json)
}

/// The text of a completion or chat answer's first choice.
pub fn text_of(answer: &Value) -> String {
    let choice = &answer["choices"][0];
    choice["text"]
        .as_str()
        .or_else(|| choice["message"]["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// `usage.completion_tokens`.
pub fn completion_tokens(answer: &Value) -> u64 {
    answer["usage"]["completion_tokens"].as_u64().unwrap_or(0)
}

/// Waits (10 s at most) until the first worker of `t` counted a
/// cancellation since `worker_before`, the frontend a disconnected client
/// since `frontend_before`, and both have nothing in flight. Only Dynamo's
/// own metrics: it holds for every engine.
pub async fn assert_cancelled(
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
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("the disconnect was not cancelled through: {last}")
}
