//! The KV router's state outside one frontend: the standalone router
//! process (`python -m dynamo.router`) indexes the workers' KV events and
//! answers which worker holds a prefix; a router that starts after the
//! cache was built — restarted, or a new replica — rebuilds its index from
//! the workers (each keeps a local indexer; Dynamo 1.6.1 keeps no
//! JetStream stream to replay, see `discovery::jetstream_enabled_event_plane`).

use std::time::Duration;

use serde_json::json;
use testbed_dynamo::{EventPlaneKind, RouterMode, StandaloneRouter, Topology, TopologyBuilder};
use testbed_harness::poll::{Check, Poll};

/// 80 token ids (5 blocks of 16) of the mocker's vocabulary, different for
/// each `seed`.
fn tokens(seed: u32) -> Vec<u32> {
    (0..80)
        .map(|i| 1000 + (seed * 131 + i * 7) % 1000)
        .collect()
}

/// Serves `tokens` as a completion prompt through the frontend; returns
/// the worker that served it.
async fn serve(t: &Topology, tokens: &[u32]) -> anyhow::Result<u64> {
    let body = json!({"model": "tiny", "prompt": tokens, "max_tokens": 2,
        "nvext": {"extra_fields": ["worker_id"]}});
    let answer = t.client().post("/v1/completions", &body).await?;
    anyhow::ensure!(answer.status == 200, "{} {}", answer.status, answer.text);
    Topology::served_by(&answer.json)
}

/// Waits until `router` says `holder` holds at least 4 blocks of `tokens`
/// and no other worker holds any; returns the overlap it reported.
async fn wait_for_holder(
    router: &StandaloneRouter,
    tokens: &[u32],
    holder: u64,
) -> anyhow::Result<Vec<(u64, u64)>> {
    Poll::new(format!("the router to index worker {holder}'s blocks"))
        .timeout(Duration::from_secs(20))
        .every(Duration::from_millis(200))
        .until(|| async {
            let overlap = router.overlap(tokens).await?;
            let held = |id: u64| {
                overlap
                    .iter()
                    .filter(|(w, _)| *w == id)
                    .map(|(_, n)| *n)
                    .sum::<u64>()
            };
            let others = overlap
                .iter()
                .filter(|(w, _)| *w != holder)
                .map(|(_, n)| n)
                .sum::<u64>();
            Ok(if held(holder) >= 4 && others == 0 {
                Check::Done(overlap)
            } else {
                Check::NotYet(format!("overlap {overlap:?}"))
            })
        })
        .await
}

/// Sends `prefix` with a new tail through `client` and checks that it went
/// to `holder` with a cache hit: the router that chose knew the cache.
async fn assert_sent_to_holder(
    client: &testbed_dynamo::OpenAiClient,
    prefix: &[u32],
    holder: u64,
) -> anyhow::Result<()> {
    let mut repeat = prefix.to_vec();
    repeat.extend([1600, 1601, 1602]);
    let body = json!({"model": "tiny", "prompt": repeat, "max_tokens": 2,
        "nvext": {"extra_fields": ["worker_id", "timing"]}});
    let answer = client.post("/v1/completions", &body).await?;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        Topology::served_by(&answer.json)?,
        holder,
        "the prefix went to its holder: {}",
        answer.text
    );
    let hit = answer.json["nvext"]["timing"]["kv_hit_rate"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(hit > 0.5, "a cache hit: {}", answer.text);
    Ok(())
}

#[test]
fn the_standalone_router_knows_which_worker_holds_a_prefix() {
    TopologyBuilder::routed(2, RouterMode::Kv).test(|t, _| async move {
        let router = t.standalone_router("router", &[]).await?;
        let prefix = tokens(1);
        let before = router.overlap(&prefix).await?;
        assert!(
            before.iter().all(|(_, n)| *n == 0),
            "nothing is cached yet: {before:?}"
        );
        let holder = serve(&t, &prefix).await?;
        let overlap = wait_for_holder(&router, &prefix, holder).await?;
        println!("overlap after one request on {holder}: {overlap:?}");
        assert_eq!(
            router.best_worker(&prefix).await?,
            holder,
            "the router picks the worker that holds the prefix"
        );
        let unrelated = router.overlap(&tokens(2)).await?;
        assert!(
            unrelated.iter().all(|(_, n)| *n == 0),
            "an unrelated prompt matches nothing: {unrelated:?}"
        );
        Ok(())
    });
}

#[test]
fn a_restarted_standalone_router_rebuilds_its_index_from_the_workers() {
    TopologyBuilder::routed(2, RouterMode::Kv).test(|t, _| async move {
        let mut router = t.standalone_router("router", &[]).await?;
        let prefix = tokens(3);
        let holder = serve(&t, &prefix).await?;
        wait_for_holder(&router, &prefix, holder).await?;
        // A graceful stop deregisters it (a SIGKILLed router stays in
        // discovery until its lease expires, and queries may reach it).
        router.process().stop().await;
        drop(router);
        // No event about these blocks is published again: whatever the new
        // process knows, it asked the workers for.
        let restarted = t.standalone_router("router-restarted", &[]).await?;
        wait_for_holder(&restarted, &prefix, holder).await?;
        assert_eq!(restarted.best_worker(&prefix).await?, holder);
        Ok(())
    });
}

/// The frontend's embedded KV router, restarted on the JetStream event
/// plane, routes a cached prefix back to its holder with a cache hit.
#[test]
fn a_restarted_kv_router_on_jetstream_routes_a_prefix_to_its_holder() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .event_plane(EventPlaneKind::NatsJetStream)
        .test(|mut t, _| async move {
            let prefix = tokens(4);
            let mark = testbed_dynamo::metrics::kv_index_mark(&t.frontend.metrics_url()).await?;
            let holder = serve(&t, &prefix).await?;
            testbed_dynamo::metrics::kv_indexed_since(&t.frontend.metrics_url(), mark).await?;
            t.restart_frontend().await?;
            assert_sent_to_holder(&t.client(), &prefix, holder).await
        });
}

/// Router replicas (two KV frontends with `--router-replica-sync`): one
/// replica restarts and still routes a prefix the other one served to its
/// holder, with a cache hit.
#[test]
fn a_restarted_router_replica_routes_a_prefix_to_its_holder() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .frontend_args(["--router-replica-sync"])
        .test(|t, _| async move {
            let replica = t.replica_frontend("frontend-replica").await?;
            let mark = testbed_dynamo::metrics::kv_index_mark(&replica.metrics_url()).await?;
            let prefix = tokens(5);
            let holder = serve(&t, &prefix).await?;
            testbed_dynamo::metrics::kv_indexed_since(&replica.metrics_url(), mark).await?;
            drop(replica);
            let restarted = t.replica_frontend("frontend-replica-restarted").await?;
            assert_sent_to_holder(restarted.client(), &prefix, holder).await
        });
}
