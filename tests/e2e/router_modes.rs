//! Every router mode of Dynamo 1.6.1 beyond KV and round-robin (which
//! `router.rs` covers), each shown to do what its name says with a check
//! that fails for the other modes: random spreads without alternating,
//! power-of-two and least-loaded avoid a busy worker, direct serves only
//! the named worker, and KV routing without KV events (the approximate
//! mode) follows its own routing decisions.

use std::collections::BTreeMap;
use std::time::Duration;

use testbed_dynamo::{OpenAiClient, RouterMode, Topology, TopologyBuilder};
use testbed_harness::run_test;
use testbed_tests::pinned;

/// Which worker served `content` (a short chat).
async fn served(t: &Topology, content: &str) -> anyhow::Result<u64> {
    let answer = t.client().chat("tiny", content, 2).await?;
    anyhow::ensure!(answer.status == 200, "{} {}", answer.status, answer.text);
    Topology::served_by(&answer.json)
}

/// The workers' instance ids, in the topology's order.
async fn ids(t: &Topology) -> anyhow::Result<Vec<u64>> {
    let mut ids = Vec::new();
    for w in &t.workers {
        ids.push(testbed_tests::instance_id(&w.metrics_url()).await?);
    }
    Ok(ids)
}

#[test]
fn random_spreads_evenly_without_alternating() {
    TopologyBuilder::routed(2, RouterMode::Random).test(|t, _| async move {
        let mut order = Vec::new();
        for i in 0..60 {
            order.push(served(&t, &format!("the same prompt {}", i % 2)).await?);
        }
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for w in &order {
            *counts.entry(*w).or_default() += 1;
        }
        let switches = order.windows(2).filter(|p| p[0] != p[1]).count();
        println!("random: {counts:?}, {switches} switches in 59 pairs");
        // Binomial(60, 1/2): 15..=45 holds but 1 time in ~10^4; strict
        // rotation would switch 59 times, random ~30 (± 4).
        assert_eq!(counts.len(), 2, "both workers served: {counts:?}");
        assert!(
            counts.values().all(|&n| (15..=45).contains(&n)),
            "{counts:?}"
        );
        assert!(
            switches < 50,
            "random does not alternate: {switches} switches"
        );
        Ok(())
    });
}

/// With one worker busy on a long stream, `mode` sends every short request
/// to the idle one (random would send about half to the busy one).
async fn prefers_the_idle_worker(
    ctx: &testbed_harness::TestContext,
    mode: RouterMode,
) -> anyhow::Result<()> {
    let t = TopologyBuilder::routed(2, mode)
        .speedup(1.0)
        .start(ctx)
        .await?;
    let client = t.client();
    let long = tokio::spawn(async move { client.stream_chat("tiny", "a long story", 2000).await });
    let busy = t.busy_worker(Duration::from_secs(10)).await?;
    let busy_id = ids(&t).await?[busy];
    let mut to_busy = 0;
    for i in 0..8 {
        if served(&t, &format!("short {i}")).await? == busy_id {
            to_busy += 1;
        }
    }
    anyhow::ensure!(
        !long.is_finished(),
        "the long stream ended before the short requests; make it longer"
    );
    long.abort();
    assert_eq!(
        to_busy, 0,
        "{mode:?}: {to_busy} of 8 short requests went to the busy worker"
    );
    Ok(())
}

#[test]
fn power_of_two_prefers_the_idle_worker() {
    run_test(|ctx| async move { prefers_the_idle_worker(&ctx, RouterMode::PowerOfTwo).await });
}

#[test]
fn least_loaded_prefers_the_idle_worker() {
    run_test(|ctx| async move { prefers_the_idle_worker(&ctx, RouterMode::LeastLoaded).await });
}

#[test]
fn direct_serves_only_the_named_worker_and_refuses_unnamed_requests() {
    TopologyBuilder::routed(2, RouterMode::Direct).test(|t, _| async move {
        let client = t.client();
        let unnamed = client.chat("tiny", "anyone", 2).await?;
        assert_eq!(unnamed.status, 400, "{}", unnamed.text);
        assert!(unnamed.text.contains("Invalid request"), "{}", unnamed.text);
        for id in ids(&t).await? {
            for i in 0..5 {
                let body = pinned(
                    OpenAiClient::chat_body("tiny", &format!("to {id} {i}"), 2),
                    id,
                );
                let answer = client.post("/v1/chat/completions", &body).await?;
                assert_eq!(answer.status, 200, "{}", answer.text);
                assert_eq!(Topology::served_by(&answer.json)?, id, "{}", answer.text);
            }
        }
        Ok(())
    });
}

#[test]
fn device_aware_weighted_serves_on_both_workers() {
    TopologyBuilder::routed(2, RouterMode::DeviceAwareWeighted).test(|t, _| async move {
        let mut seen = BTreeMap::<u64, usize>::new();
        for i in 0..16 {
            *seen
                .entry(served(&t, &format!("weighted {i}")).await?)
                .or_default() += 1;
        }
        println!("device-aware-weighted: {seen:?}");
        assert_eq!(seen.len(), 2, "both (CPU) workers serve: {seen:?}");
        Ok(())
    });
}

/// Without KV events the router predicts each worker's cache from its own
/// routing: a prompt first sent to one worker (named) is routed back to
/// it, for each worker in turn.
#[test]
fn approximate_kv_routing_follows_its_own_decisions() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .frontend_args(["--no-router-kv-events"])
        .test(|t, _| async move {
            let client = t.client();
            for (group, holder) in ids(&t).await?.into_iter().enumerate() {
                let prefix = testbed_tests::prompt(900 + group as u64, 300);
                let first = pinned(
                    OpenAiClient::chat_body("tiny", &format!("{prefix} first"), 2),
                    holder,
                );
                let answer = client.post("/v1/chat/completions", &first).await?;
                assert_eq!(
                    Topology::served_by(&answer.json)?,
                    holder,
                    "{}",
                    answer.text
                );
                for i in 0..3 {
                    let w = served(&t, &format!("{prefix} repeat {i}")).await?;
                    assert_eq!(
                        w, holder,
                        "group {group}: repeat {i} follows the first request"
                    );
                }
            }
            Ok(())
        });
}
