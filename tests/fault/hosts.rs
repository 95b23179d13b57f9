//! Faults across hosts: every process of the stack on a host of its own
//! (network namespaces on a bridge), and the links between them cut under
//! load. What Dynamo promises is asserted; what it does instead is a named
//! finding that fails when the behaviour changes.

use std::time::{Duration, Instant};

use testbed_dynamo::{Metrics, OpenAiClient, RouterMode, Topology, TopologyBuilder};
use testbed_harness::hosts::Direction;
use testbed_load::Stream;

use crate::{check_none_failed, load_on};

/// Two workers behind a round-robin frontend with migration on, each
/// process on its own host.
fn pair_on_hosts() -> TopologyBuilder {
    TopologyBuilder::routed(2, RouterMode::RoundRobin)
        .migration_limit(3)
        .on_hosts()
}

/// Sends `n` chats and returns how many distinct workers served them.
async fn workers_serving(t: &Topology, n: usize) -> anyhow::Result<usize> {
    let mut served = std::collections::BTreeSet::new();
    for i in 0..n {
        let body = OpenAiClient::chat_body("tiny", &format!("who serves {i}"), 4);
        let answer = testbed_tests::ok(&t.client(), "/v1/chat/completions", &body).await?;
        served.insert(Topology::served_by(&answer)?);
    }
    Ok(served.len())
}

/// A worker cut off from etcd keeps serving over TCP until its lease
/// expires (~29 s here), then leaves discovery; nothing is lost. Known
/// finding (Dynamo 1.6.1): it does not come back when the link heals — it
/// finds its lease gone ("lease not found"), withdraws and exits.
#[test]
fn a_worker_cut_off_from_etcd_leaves_discovery_and_exits_after_heal_finding() {
    pair_on_hosts().test(|mut t, _| async move {
        let load = load_on(&t, 4, 6);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cut_at = Instant::now();
        t.hosts()?
            .partition(&["worker-0"], &["etcd"], Direction::Both)?;
        // Its requests still reach it over TCP: the cut costs nothing until
        // its lease expires and the frontend drops it.
        let report = load.finish().await?;
        check_none_failed("worker-0 cut off from etcd", &report);
        t.wait_for_worker_count(1, Duration::from_secs(90)).await?;
        println!(
            "worker-0 left discovery {:?} after the cut",
            cut_at.elapsed()
        );
        let report = load_on(&t, 4, 3).finish().await?;
        check_none_failed("with worker-0 gone from discovery", &report);
        assert_eq!(
            workers_serving(&t, 6).await?,
            1,
            "only the other worker serves"
        );
        t.hosts()?.heal()?;
        let (status, took) = t.workers[0]
            .process()
            .wait_exit(Duration::from_secs(30))
            .await?;
        println!("worker-0 exited ({status:?}) {took:?} after the heal");
        assert_eq!(t.ready_workers().await?, 1, "worker-0 did not come back");
        let report = load_on(&t, 4, 2).finish().await?;
        check_none_failed("after the heal", &report);
        Ok(())
    });
}

/// Starts a 200-token stream on a slow pair (speedup 1: it is surely in
/// flight when the cut lands), cuts the frontend off from the worker
/// generating it, both ways, and returns the stream's task and the cut's
/// time.
async fn cut_mid_stream(
    t: &Topology,
    prompt: &str,
) -> anyhow::Result<(tokio::task::JoinHandle<anyhow::Result<Stream>>, Instant)> {
    let client = t.client();
    let body = OpenAiClient::chat_body("tiny", prompt, 200);
    let stream = tokio::spawn(async move { client.stream("/v1/chat/completions", body).await });
    let busy = t.busy_worker(Duration::from_secs(10)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let worker = t.workers[busy].name().to_owned();
    t.hosts()?
        .partition(&["frontend"], &[&worker], Direction::Both)?;
    Ok((stream, Instant::now()))
}

/// Known finding (Dynamo 1.6.1, defaults): the frontend does not notice a
/// worker that went silent mid-stream — no inactivity timeout is set
/// (`DYN_HTTP_BACKEND_STREAM_TIMEOUT_SECS` unset), and TCP keeps
/// retransmitting — so the stream stalls with neither tokens nor an error,
/// and nothing migrates; once the link heals, TCP delivers the rest and the
/// stream completes every token.
#[test]
fn a_stream_cut_off_from_its_worker_stalls_and_completes_after_heal_finding() {
    pair_on_hosts().speedup(1.0).test(|t, _| async move {
        let before = Metrics::scrape(&t.frontend.metrics_url()).await?;
        let (stream, cut_at) = cut_mid_stream(&t, "stall me mid-stream").await?;
        // Uncut, the whole answer takes about a second.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(
            !stream.is_finished(),
            "the stream ended within 6 s of the cut: the frontend noticed the silent worker"
        );
        t.hosts()?.heal()?;
        let stream = tokio::time::timeout(Duration::from_secs(40), stream)
            .await
            .map_err(|_| anyhow::anyhow!("the stream did not resume after the heal"))???;
        println!(
            "the stream ended {:?} after the cut (healed after 6 s)",
            cut_at.elapsed()
        );
        assert_eq!(stream.status, 200);
        assert!(stream.error().is_none(), "{:?}", stream.error());
        assert!(stream.done());
        assert_eq!(
            stream.usage().map(|u| u["completion_tokens"].clone()),
            Some(200.into()),
            "every token arrived once the link healed"
        );
        let after = Metrics::scrape(&t.frontend.metrics_url()).await?;
        let migrations = testbed_dynamo::metrics::delta(
            &before,
            &after,
            "dynamo_frontend_model_migration_total",
            &[],
        );
        assert_eq!(migrations, 0.0, "nothing migrated");
        Ok(())
    });
}

#[test]
fn with_a_stream_timeout_a_stream_cut_off_from_its_worker_migrates_to_another_host() {
    pair_on_hosts()
        .speedup(1.0)
        .frontend_env("DYN_HTTP_BACKEND_STREAM_TIMEOUT_SECS", "2")
        .test(|t, _| async move {
            let before = Metrics::scrape(&t.frontend.metrics_url()).await?;
            let (stream, cut_at) = cut_mid_stream(&t, "migrate me across hosts").await?;
            let stream = tokio::time::timeout(Duration::from_secs(60), stream)
                .await
                .map_err(|_| anyhow::anyhow!("the stream hung after its worker was cut off"))???;
            println!("the stream ended {:?} after the cut", cut_at.elapsed());
            testbed_tests::assert_migrated(&stream, 200, &t.frontend.metrics_url(), &before)
                .await?;
            Ok(())
        });
}

#[test]
fn the_frontend_restarted_on_its_host_finds_the_workers_on_theirs() {
    pair_on_hosts().test(|mut t, _| async move {
        let host = t.hosts()?.host("frontend")?.placement.addr;
        t.restart_frontend().await?;
        assert!(
            t.frontend.url().contains(&host.to_string()),
            "the new frontend runs on the frontend's host: {}",
            t.frontend.url()
        );
        assert_eq!(t.ready_workers().await?, 2);
        let report = load_on(&t, 2, 2).finish().await?;
        check_none_failed("after the frontend restart", &report);
        assert_eq!(workers_serving(&t, 6).await?, 2, "both workers serve again");
        Ok(())
    });
}
