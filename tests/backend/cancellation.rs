//! Client disconnects reach the vLLM engine, on `tiny-think`'s worker
//! (one sequence at a time): a streaming or unary request whose client goes
//! away stops generating, the worker counts the cancellation and vLLM runs
//! nothing; and a request still waiting in vLLM's queue behind another,
//! whose client goes away, leaves the queue within a second and is counted
//! as cancelled — Dynamo's own abort path, since vLLM never ran it.

use std::time::{Duration, Instant};

use serde_json::json;
use testbed_dynamo::stacks::TINY_THINK;
use testbed_dynamo::{metrics, Metrics, SharedStack};
use testbed_harness::poll::{check, Poll};
use testbed_harness::run_test;
use testbed_tests::{assert_cancelled, disconnect_mid_stream, Before};

use crate::{vllm, COMPLETIONS};

/// Tokens asked for: seconds of generation, so that a request that was not
/// cancelled is visibly still running or has generated them all.
const MAX_TOKENS: u64 = 1500;

fn long(prompt: &str) -> serde_json::Value {
    json!({"model": TINY_THINK, "prompt": prompt, "max_tokens": MAX_TOKENS, "ignore_eos": true})
}

fn worker_metrics(stack: &SharedStack) -> String {
    stack.workers_of(TINY_THINK)[0].metrics_url.clone()
}

/// Waits until vLLM's gauge `name` (running or waiting requests) is `n`.
async fn gauge_is(url: &str, name: &str, n: f64, within: Duration) -> anyhow::Result<()> {
    Poll::new(format!("{name} reaching {n}"))
        .timeout(within)
        .every(Duration::from_millis(20))
        .until(|| async {
            let v = Metrics::scrape(url).await?.value(name, &[]);
            Ok(check(v == n, || format!("{name} {v}")))
        })
        .await
}

/// After a cancellation: vLLM generated some tokens but far from all, and
/// still runs nothing a second later.
async fn stopped_early(url: &str, before: &Metrics, what: &str) -> anyhow::Result<()> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = Metrics::scrape(url).await?;
    let generated = metrics::delta(before, &after, "vllm:generation_tokens_total", &[]);
    println!("{what}: {generated} tokens generated of {MAX_TOKENS} asked");
    assert!(
        generated >= 1.0,
        "{what}: tokens were generated before the disconnect"
    );
    assert!(
        generated < MAX_TOKENS as f64,
        "{what}: the cancelled request ran to its end"
    );
    assert_eq!(
        after.value("vllm:num_requests_running", &[]),
        0.0,
        "{what}: nothing runs"
    );
    Ok(())
}

/// Waits until the worker runs exactly one request (the test's own).
async fn one_running(url: &str) -> anyhow::Result<()> {
    gauge_is(
        url,
        "vllm:num_requests_running",
        1.0,
        Duration::from_secs(30),
    )
    .await
}

#[test]
fn streaming_and_unary_disconnects_cancel_the_request_in_vllm() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let url = worker_metrics(&stack);
        let frontend = stack.frontend_metrics_url();

        let before = Before::scrape(&frontend, &url).await?;
        disconnect_mid_stream(
            stack.client(),
            COMPLETIONS,
            long("a very long story"),
            || async { one_running(&url).await },
        )
        .await?;
        assert_cancelled(&before).await?;
        stopped_early(&url, before.worker(), "streaming").await?;

        let before = Before::scrape(&frontend, &url).await?;
        let request = stack
            .client()
            .send_unread(COMPLETIONS, &long("a long answer"))
            .await?;
        one_running(&url).await?;
        request.abandon().await?;
        assert_cancelled(&before).await?;
        stopped_early(&url, before.worker(), "unary").await
    });
}

#[test]
fn a_queued_request_whose_client_leaves_is_cancelled_before_it_runs() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let url = worker_metrics(&stack);
        let client = stack.client();
        let first = client
            .send_unread(COMPLETIONS, &long("the one that runs"))
            .await?;
        one_running(&url).await?;
        let before = Metrics::scrape(&url).await?;
        let queued = client
            .send_unread(COMPLETIONS, &long("the one that waits"))
            .await?;
        gauge_is(
            &url,
            "vllm:num_requests_waiting",
            1.0,
            Duration::from_secs(10),
        )
        .await?;
        let left = Instant::now();
        queued.abandon().await?;
        Poll::new("the queued request leaving vLLM's queue, counted as cancelled")
            .timeout(Duration::from_secs(1))
            .every(Duration::from_millis(10))
            .until(|| async {
                let m = Metrics::scrape(&url).await?;
                let waiting = m.value("vllm:num_requests_waiting", &[]);
                let cancelled =
                    metrics::delta(&before, &m, "dynamo_component_cancellation_total", &[]);
                Ok(check(waiting == 0.0 && cancelled >= 1.0, || {
                    format!("waiting {waiting}, cancellations +{cancelled}")
                }))
            })
            .await?;
        println!(
            "the queued request left the queue {:?} after its client",
            left.elapsed()
        );
        let m = Metrics::scrape(&url).await?;
        assert_eq!(
            m.value("vllm:num_requests_running", &[]),
            1.0,
            "the running request was not disturbed"
        );
        first.abandon().await?;
        gauge_is(
            &url,
            "vllm:num_requests_running",
            0.0,
            Duration::from_secs(10),
        )
        .await
    });
}
