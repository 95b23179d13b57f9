//! Two vLLM workers behind round-robin: greedy decoding gives the same
//! tokens on either (fresh) worker, and a stream whose worker is SIGKILLed
//! mid-answer moves to the other one and completes (`--migration-limit`).

use std::time::Duration;

use testbed_dynamo::{Metrics, RouterMode, Topology};
use testbed_harness::run_test;

use crate::{chat_with_logprobs, completion, ok, text_of, tokens_of, vllm_topology};

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

#[test]
fn two_workers_decode_alike_and_a_killed_stream_migrates() {
    run_test(|ctx| async move {
        let mut t = vllm_topology(2, RouterMode::RoundRobin, 2048)
            .migration_limit(3)
            .start(&ctx)
            .await?;
        let client = t.client();

        // Round-robin alternates: the same greedy request on each worker.
        let body = chat_with_logprobs("the same tokens on every worker", 32);
        let a = ok(&client, CHAT, &body).await?;
        let b = ok(&client, CHAT, &body).await?;
        let (wa, wb) = (Topology::served_by(&a)?, Topology::served_by(&b)?);
        assert_ne!(wa, wb, "round-robin used both workers");
        let ((ids_a, lp_a), (ids_b, lp_b)) = (tokens_of(&a), tokens_of(&b));
        assert_eq!(ids_a.len(), 32, "every token has its id and logprob: {a}");
        assert_eq!(
            ids_a, ids_b,
            "greedy decoding on two fresh workers gives the same tokens"
        );
        assert_eq!(text_of(&a), text_of(&b));
        let drift = lp_a
            .iter()
            .zip(&lp_b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        println!("greedy tokens on both workers: {ids_a:?}; largest logprob difference {drift}");
        assert!(
            drift < 1e-3,
            "the two workers' log-probabilities differ by {drift}"
        );
        // Streams carry the same text (vLLM may put several tokens in one
        // chunk, so chunk boundaries can differ).
        let stream_body = completion("the same tokens on every worker", 32);
        let sa = client.stream(COMPLETIONS, stream_body.clone()).await?;
        let sb = client.stream(COMPLETIONS, stream_body).await?;
        assert!(sa.done() && sb.done(), "both streams finished");
        assert_eq!(sa.text(), sb.text(), "greedy streams on two workers agree");
        assert_eq!(
            (sa.usage().map(|u| u["completion_tokens"].clone())),
            Some(32.into())
        );

        // A long stream; its worker dies mid-answer.
        let before = Metrics::scrape(&t.frontend.metrics_url()).await?;
        // ~3 s of generation on an idle 2-core machine.
        let max_tokens = 1900;
        let stream = tokio::spawn({
            let client = client.clone();
            let body = completion("migrate me", max_tokens);
            async move { client.stream(COMPLETIONS, body).await }
        });
        let busy = t.busy_worker(Duration::from_secs(30)).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        anyhow::ensure!(
            !stream.is_finished(),
            "the stream ended before the fault; make it longer"
        );
        t.workers[busy].process().signal(libc::SIGKILL);
        let stream = tokio::time::timeout(Duration::from_secs(120), stream)
            .await
            .map_err(|_| anyhow::anyhow!("the migrated stream hung"))???;
        testbed_tests::assert_migrated(&stream, max_tokens, &t.frontend.metrics_url(), &before)
            .await?;
        Ok(())
    });
}
