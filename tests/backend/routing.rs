//! KV-aware routing with real KV events: the two `tiny` workers publish
//! what they cache (ZMQ, per-worker `ipc://` sockets) and the frontend's KV
//! router sends repeats of a long prompt to the worker that holds its
//! blocks, which reuses them. Each prompt's first request is pinned to a
//! different worker, so the repeats must follow the cache, not a tie-break.

use serde_json::Value;
use testbed_dynamo::metrics;
use testbed_dynamo::stacks::TINY;
use testbed_harness::run_test;

use crate::{completion, instance_ids, ok, pinned, vllm, COMPLETIONS};

/// Tokens reused from the prefix cache, as the usage reports them.
fn cached_tokens(answer: &Value) -> u64 {
    answer["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0)
}

fn served_by(answer: &Value) -> u64 {
    answer["nvext"]["worker_id"]["decode_worker_id"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn kv_router_sends_a_cached_prefix_back_to_the_worker_holding_it() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let ids = instance_ids(&stack, TINY).await?;
        let frontend = stack.frontend_metrics_url();
        for (group, holder) in ids.iter().enumerate() {
            // More than two of vLLM's 128-token CPU blocks.
            let prompt = testbed_tests::prompt_of_tokens(700 + group as u64, 330);
            let mark = metrics::kv_index_mark(&frontend).await?;
            let first = ok(
                client,
                COMPLETIONS,
                &pinned(completion(&prompt, 4), *holder),
            )
            .await?;
            assert_eq!(served_by(&first), *holder, "the first request is pinned");
            assert_eq!(
                cached_tokens(&first),
                0,
                "group {group}: a cold prompt has nothing cached"
            );
            // KV events reach the router asynchronously (engine, ZMQ,
            // worker, event plane, router): route once they are indexed.
            metrics::kv_indexed_since(&frontend, mark).await?;
            for i in 0..3 {
                let answer = ok(client, COMPLETIONS, &completion(&prompt, 4)).await?;
                let hit = answer["nvext"]["timing"]["kv_hit_rate"]
                    .as_f64()
                    .unwrap_or(0.0);
                println!(
                    "group {group} repeat {i}: worker {} (holder {holder}), cached {}, hit rate {hit}",
                    served_by(&answer),
                    cached_tokens(&answer)
                );
                assert_eq!(
                    served_by(&answer),
                    *holder,
                    "group {group}: the repeat follows the cache"
                );
                assert!(
                    cached_tokens(&answer) >= 256,
                    "group {group}: two blocks reused: {answer}"
                );
                assert!(
                    hit > 0.5,
                    "group {group}: the router saw the cached blocks: {hit}"
                );
            }
        }
        Ok(())
    });
}
