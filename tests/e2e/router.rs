//! The router: KV-aware routing keeps a shared prefix on one worker and the
//! hit rate rises; distinct prefixes spread; round-robin alternates; an
//! overloaded deployment rejects, and the rejection metric counts exactly
//! the rejections seen.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use testbed_dynamo::frontend::BusyThreshold;
use testbed_dynamo::{metrics, Metrics, RouterMode, Topology, TopologyBuilder};

async fn served(t: &Topology, content: &str) -> anyhow::Result<(u64, Value)> {
    let answer = t.client().chat("tiny", content, 4).await?;
    anyhow::ensure!(answer.status == 200, "{} {}", answer.status, answer.text);
    Ok((Topology::served_by(&answer.json)?, answer.json))
}

#[test]
fn kv_routing_keeps_a_shared_prefix_on_one_worker() {
    TopologyBuilder::routed(2, RouterMode::Kv).test(|t, _| async move {
        for group in 0..2u64 {
            let prefix = crate::prompt(100 + group, 300);
            let mut workers = BTreeSet::new();
            let mut hit_rates = Vec::new();
            for i in 0..4 {
                let mark = metrics::kv_index_mark(&t.frontend.metrics_url()).await?;
                let (worker, json) = served(&t, &format!("{prefix} question {i}")).await?;
                workers.insert(worker);
                hit_rates.push(
                    json["nvext"]["timing"]["kv_hit_rate"]
                        .as_f64()
                        .unwrap_or(0.0),
                );
                if i == 0 {
                    // KV events reach the router asynchronously (worker ->
                    // event plane -> router): route the repeats once the
                    // first request's blocks are indexed.
                    metrics::kv_indexed_since(&t.frontend.metrics_url(), mark).await?;
                }
            }
            assert_eq!(
                workers.len(),
                1,
                "group {group}: requests sharing a prefix went to {workers:?}"
            );
            assert!(
                hit_rates[0] < 0.5,
                "group {group}: a cold prefix has no hits: {hit_rates:?}"
            );
            assert!(
                hit_rates[1..].iter().all(|r| *r > 0.8),
                "group {group}: repeats hit the cache: {hit_rates:?}"
            );
        }
        Ok(())
    });
}

#[test]
fn kv_routing_spreads_distinct_prefixes_under_load() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .speedup(10.0)
        .test(|t, _| async move {
            let client = t.client();
            let requests = (0..16u64).map(|i| {
                let client = client.clone();
                async move { client.chat("tiny", &crate::prompt(1000 + i, 200), 16).await }
            });
            let answers = futures::future::join_all(requests).await;
            let mut per_worker: BTreeMap<u64, usize> = BTreeMap::new();
            for a in answers {
                let a = a?;
                anyhow::ensure!(a.status == 200, "{} {}", a.status, a.text);
                *per_worker.entry(Topology::served_by(&a.json)?).or_default() += 1;
            }
            assert_eq!(
                per_worker.len(),
                2,
                "16 concurrent distinct prompts all went to one worker: {per_worker:?}"
            );
            Ok(())
        });
}

#[test]
fn round_robin_alternates() {
    TopologyBuilder::routed(2, RouterMode::RoundRobin).test(|t, _| async move {
        // 20 requests: random routing alternates by chance 1 time in 2^19
        // (with 6 it did 1 time in 32, and `cargo xtask mutate` saw it).
        let mut order = Vec::new();
        for _ in 0..20 {
            order.push(served(&t, "the same prompt every time").await?.0);
        }
        for pair in order.windows(2) {
            assert_ne!(pair[0], pair[1], "round-robin repeated a worker: {order:?}");
        }
        assert_eq!(order.iter().collect::<BTreeSet<_>>().len(), 2);
        Ok(())
    });
}

#[test]
fn overload_answers_503_and_the_rejection_metric_matches() {
    // Rejection needs a configured busy threshold (none by default) and,
    // in 1.6.1, the KV router; slow tokens keep the worker busy.
    TopologyBuilder::routed(1, RouterMode::Kv)
        .busy(BusyThreshold {
            active_decode_blocks: 0.0001,
            active_prefill_tokens: 1,
            status: 503,
        })
        .speedup(1.0)
        .test(|t, _| async move {
            let before = Metrics::scrape(&t.frontend.metrics_url()).await?;
            let client = t.client();
            let requests = (0..80u64).map(|i| {
                let client = client.clone();
                async move { client.chat("tiny", &format!("overload {i}"), 100).await }
            });
            let answers = futures::future::join_all(requests).await;
            let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
            for a in &answers {
                *statuses
                    .entry(a.as_ref().map_err(|e| anyhow::anyhow!("{e:#}"))?.status)
                    .or_default() += 1;
            }
            let rejected = statuses.get(&503).copied().unwrap_or(0);
            assert!(rejected >= 1, "no 503 among {statuses:?}");
            assert_eq!(
                statuses.keys().filter(|s| **s != 200 && **s != 503).count(),
                0,
                "only 200 and 503: {statuses:?}"
            );
            let after = Metrics::scrape(&t.frontend.metrics_url()).await?;
            let counted = metrics::delta(
                &before,
                &after,
                "dynamo_frontend_model_rejection_total",
                &[("model", "tiny")],
            );
            assert_eq!(
                counted, rejected as f64,
                "rejection metric vs 503s seen ({statuses:?})"
            );
            Ok(())
        });
}

/// `--router-kv-overlap-score-credit 0` tells the KV router to ignore what
/// the workers cache: repeats of a shared prefix then spread over both
/// workers (load decides), where the default keeps them on one. Shows that
/// the flag reaches the router.
#[test]
fn kv_routing_without_overlap_credit_ignores_the_cache() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .frontend_args(["--router-kv-overlap-score-credit", "0"])
        .test(|t, _| async move {
            let prefix = crate::prompt(300, 300);
            let mut workers = BTreeSet::new();
            let mark = metrics::kv_index_mark(&t.frontend.metrics_url()).await?;
            workers.insert(served(&t, &format!("{prefix} question 0")).await?.0);
            // A router that honours the cache would have it indexed within
            // milliseconds; this one applies no events at all (measured), so
            // the wait gives up after 2 s either way.
            let indexed = tokio::time::timeout(
                std::time::Duration::from_secs(2),
                metrics::kv_indexed_since(&t.frontend.metrics_url(), mark),
            )
            .await;
            println!(
                "KV events applied after the first request: {}",
                matches!(indexed, Ok(Ok(())))
            );
            for i in 1..16 {
                workers.insert(served(&t, &format!("{prefix} question {i}")).await?.0);
            }
            assert_eq!(
                workers.len(),
                2,
                "a cache-blind router spread the prefix: {workers:?}"
            );
            Ok(())
        });
}

/// KV events reach every router: a second KV-routed frontend (a replica)
/// indexes the blocks of a request that went through the first one only,
/// and routes its repeat to the worker that holds them, with a cache hit.
#[test]
fn a_router_replica_learns_the_cache_from_the_workers_events() {
    TopologyBuilder::routed(2, RouterMode::Kv).test(|t, _| async move {
        let replica = t.replica_frontend("frontend-replica").await?;
        let mark = metrics::kv_index_mark(&replica.metrics_url()).await?;
        let prompt = format!("{} question", crate::prompt(400, 300));
        let (holder, _) = served(&t, &prompt).await?;
        metrics::kv_indexed_since(&replica.metrics_url(), mark).await?;
        let answer = replica.client().chat("tiny", &prompt, 4).await?;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let hit = answer.json["nvext"]["timing"]["kv_hit_rate"]
            .as_f64()
            .unwrap_or(0.0);
        assert_eq!(
            Topology::served_by(&answer.json)?,
            holder,
            "the replica follows the cache"
        );
        assert!(hit > 0.8, "the replica saw the cached blocks: {hit}");
        Ok(())
    });
}
