//! Client disconnects reach the vLLM engine: the request stops generating
//! (far fewer tokens than asked), vLLM has nothing running, and the worker
//! counts the cancellation.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use testbed_dynamo::{metrics, Metrics, RouterMode, Topology};
use testbed_harness::poll::{check, Poll};
use testbed_harness::run_test;

use crate::{vllm_topology, MODEL};

/// Tokens asked for (the prompt is a few): ~3 s of generation on an idle
/// 2-core machine, so that a request that was not cancelled is visibly
/// still running or has generated them all.
const MAX_TOKENS: u64 = 2000;

#[test]
fn client_disconnects_cancel_the_request_in_vllm() {
    run_test(|ctx| async move {
        let t = vllm_topology(1, RouterMode::RoundRobin, 2048)
            .start(&ctx)
            .await?;
        let http = reqwest::Client::builder().no_proxy().build()?;
        let url = format!("{}/v1/completions", t.frontend.url());
        let body = |stream: bool| {
            json!({"model": MODEL, "prompt": "a very long story", "max_tokens": MAX_TOKENS,
                   "ignore_eos": true, "stream": stream})
        };

        // Streaming: go away after the first tokens.
        let before = Metrics::scrape(&t.workers[0].metrics_url()).await?;
        let resp = http.post(&url).json(&body(true)).send().await?;
        assert_eq!(resp.status(), 200);
        let mut bytes = resp.bytes_stream();
        let first = tokio::time::timeout(Duration::from_secs(30), bytes.next()).await?;
        assert!(first.is_some(), "the stream started");
        wait_running(&t, 1.0).await?;
        drop(bytes);
        assert_cancelled(&t, &before, "streaming").await?;

        // Unary: a connection the client closes while vLLM generates.
        let before = Metrics::scrape(&t.workers[0].metrics_url()).await?;
        let request = t
            .client()
            .send_unread("/v1/completions", &body(false))
            .await?;
        wait_running(&t, 1.0).await?;
        request.abandon().await?;
        assert_cancelled(&t, &before, "unary").await
    });
}

/// Waits until vLLM runs `n` requests.
async fn wait_running(t: &Topology, n: f64) -> anyhow::Result<()> {
    let url = t.workers[0].metrics_url();
    Poll::new(format!("vLLM running {n} request(s)"))
        .timeout(Duration::from_secs(30))
        .every(Duration::from_millis(50))
        .until(|| async {
            let running = Metrics::scrape(&url)
                .await?
                .value("vllm:num_requests_running", &[]);
            Ok(check(running == n, || {
                format!("vllm:num_requests_running {running}")
            }))
        })
        .await
}

/// Waits until vLLM runs nothing and the worker counted a cancellation;
/// then checks that the request stopped early and stays stopped.
async fn assert_cancelled(t: &Topology, before: &Metrics, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let url = t.workers[0].metrics_url();
    let waited = Poll::new(format!("{what}: the disconnect cancelling the request"))
        .every(Duration::from_millis(50))
        .until(|| async {
            let m = Metrics::scrape(&url).await?;
            let running = m.value("vllm:num_requests_running", &[]);
            let cancelled = metrics::delta(before, &m, "dynamo_component_cancellation_total", &[]);
            Ok(check(running == 0.0 && cancelled >= 1.0, || {
                format!("vllm:num_requests_running {running}, dynamo_component_cancellation_total +{cancelled}")
            }))
        })
        .await;
    if let Err(e) = waited {
        anyhow::bail!(
            "{e:#}\nthe frontend's disconnect and cancellation lines:\n{}\nthe worker's:\n{}",
            cancellation_lines(&t.frontend.log()),
            cancellation_lines(t.workers[0].process_ref().log_path()),
        );
    }
    println!("{what}: cancelled after {:?}", started.elapsed());
    // A request that was not cancelled would keep adding tokens until
    // MAX_TOKENS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = Metrics::scrape(&url).await?;
    let generated = metrics::delta(before, &after, "vllm:generation_tokens_total", &[]);
    println!("{what}: {generated} tokens generated of {MAX_TOKENS} asked");
    assert!(
        generated >= 1.0,
        "{what}: vllm:generation_tokens_total counted the tokens generated before the disconnect"
    );
    assert!(
        generated < MAX_TOKENS as f64,
        "{what}: the cancelled request generated all {MAX_TOKENS} tokens"
    );
    assert_eq!(
        after.value("vllm:num_requests_running", &[]),
        0.0,
        "{what}: nothing runs after the cancellation"
    );
    Ok(())
}

/// The lines of a Dynamo log that speak of disconnects and cancellations,
/// for a failure message.
fn cancellation_lines(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            ["unexpectedly", "cancell", "request_type"]
                .iter()
                .any(|w| l.contains(w))
        })
        .collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}
