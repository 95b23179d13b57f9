//! Migration: a stream whose worker is SIGKILLed mid-answer moves to
//! another worker and completes every token (the frontend's
//! `--migration-limit`). The test adds a `tiny` worker of its own to the
//! shared stack, steers a long stream to it through the KV router (its
//! cache holds the prompt's blocks), kills it, and waits until it has left
//! discovery, so that the stack is as it found it. The stream is steered,
//! not pinned: finding (Dynamo 1.6.1), a stream pinned with
//! `nvext.backend_instance_id` is retried on the same, dead, instance and
//! ends in 503 "Service temporarily unavailable".

use std::time::Duration;

use testbed_dynamo::stacks::{self, TINY};
use testbed_dynamo::topology::ready_workers;
use testbed_dynamo::{metrics, Metrics};
use testbed_harness::poll::{check, Poll};
use testbed_harness::run_test;

use crate::{completion, ok, pinned, vllm, COMPLETIONS};

/// Waits until the frontend counts `n` workers of `tiny`.
async fn tiny_workers(
    client: &testbed_load::OpenAiClient,
    n: usize,
    within: Duration,
) -> anyhow::Result<()> {
    Poll::new(format!("the frontend counting {n} worker(s) of {TINY}"))
        .timeout(within)
        .every(Duration::from_millis(100))
        .until(|| async {
            let count = ready_workers(client, TINY).await;
            Ok(check(count.as_ref().is_ok_and(|c| *c == n), || {
                format!("{count:?}")
            }))
        })
        .await
}

#[test]
fn a_killed_workers_stream_migrates_and_completes() {
    run_test(|ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let before_count = stack.workers_of(TINY).len();
        let mut worker = stack.spawn_worker(ctx.dir(), "doomed", TINY, &stacks::tiny_worker())?;
        tiny_workers(client, before_count + 1, worker.startup_timeout()).await?;
        let doomed = testbed_tests::instance_id(&worker.metrics_url()).await?;

        // The doomed worker caches the prompt's blocks (more than two of
        // vLLM's 128-token CPU blocks); once the router has indexed them,
        // the unpinned stream follows them there.
        let prompt = testbed_tests::prompt_of_tokens(900, 330);
        let frontend = stack.frontend_metrics_url();
        let mark = metrics::kv_index_mark(&frontend).await?;
        ok(client, COMPLETIONS, &pinned(completion(&prompt, 1), doomed)).await?;
        metrics::kv_indexed_since(&frontend, mark).await?;

        let before = Metrics::scrape(&frontend).await?;
        let max_tokens = 1600;
        let stream = tokio::spawn({
            let client = client.clone();
            let body = completion(&prompt, max_tokens);
            async move { client.stream(COMPLETIONS, body).await }
        });
        let url = worker.metrics_url();
        Poll::new("the stream to reach the doomed worker, which holds its prefix")
            .timeout(Duration::from_secs(30))
            .until(|| async {
                let m = Metrics::scrape(&url).await?;
                let running = m.value("vllm:num_requests_running", &[]);
                Ok(check(running >= 1.0, || format!("running {running}")))
            })
            .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        anyhow::ensure!(
            !stream.is_finished(),
            "the stream ended before the fault; make it longer"
        );
        worker.process().signal(libc::SIGKILL);
        let stream = tokio::time::timeout(Duration::from_secs(120), stream)
            .await
            .map_err(|_| anyhow::anyhow!("the migrated stream hung"))???;
        testbed_tests::assert_migrated(&stream, max_tokens, &stack.frontend_metrics_url(), &before)
            .await?;
        // The dead worker's registration expires (file discovery's lease).
        tiny_workers(client, before_count, Duration::from_secs(60)).await?;
        Ok(())
    });
}
