//! KV-aware routing with real KV events: two vLLM workers publish what they
//! cache (ZMQ, per-worker `ipc://` sockets), and the frontend's KV router
//! sends repeats of a long prompt to the worker that holds its blocks —
//! which then reuses them.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use testbed_dynamo::{RouterMode, Topology};
use testbed_harness::run_test;

use crate::{completion, ok, prompt_of_tokens, vllm_topology};

/// Tokens reused from the prefix cache, as the usage reports them.
fn cached_tokens(answer: &Value) -> u64 {
    answer["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0)
}

/// The router's predicted hit rate for the worker it chose.
fn kv_hit_rate(answer: &Value) -> f64 {
    answer["nvext"]["timing"]["kv_hit_rate"]
        .as_f64()
        .unwrap_or(0.0)
}

#[test]
fn kv_router_sends_a_cached_prefix_back_to_the_worker_holding_it() {
    run_test(|ctx| async move {
        let t = vllm_topology(2, RouterMode::Kv, 512).start(&ctx).await?;
        let client = t.client();
        let mut first_workers = BTreeSet::new();
        for group in 0..2u64 {
            // More than two of vLLM's 128-token CPU blocks.
            let prompt = prompt_of_tokens(700 + group, 330);
            let mut workers = Vec::new();
            let mut answers = Vec::new();
            for i in 0..4 {
                let answer = ok(&client, "/v1/completions", &completion(&prompt, 4)).await?;
                workers.push(Topology::served_by(&answer)?);
                answers.push(answer);
                if i == 0 {
                    // KV events reach the router asynchronously (engine ->
                    // ZMQ -> worker -> event plane -> router): give the
                    // first request's blocks time to be indexed.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            let cached: Vec<u64> = answers.iter().map(cached_tokens).collect();
            let hits: Vec<f64> = answers.iter().map(kv_hit_rate).collect();
            println!(
                "group {group}: workers {workers:?}, cached tokens {cached:?}, kv hit rates {hits:?}"
            );
            assert!(
                workers.iter().all(|w| *w == workers[0]),
                "group {group}: repeats of a cached prompt went to {workers:?}"
            );
            assert_eq!(
                cached[0], 0,
                "group {group}: a cold prompt has nothing cached"
            );
            assert!(
                cached[1..].iter().all(|c| *c >= 256),
                "group {group}: repeats reuse at least two blocks: cached tokens {cached:?}"
            );
            assert!(
                hits[1..].iter().all(|h| *h > 0.5),
                "group {group}: the router saw the cached blocks: kv hit rates {hits:?}"
            );
            first_workers.insert(workers[0]);
        }
        println!("first workers of the two groups: {first_workers:?}");
        Ok(())
    });
}
