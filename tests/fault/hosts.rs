//! Faults across hosts: every process of the stack on a host of its own
//! (network namespaces on a bridge), and the links between them cut under
//! load. What Dynamo promises is asserted; what it does instead is a named
//! finding that fails when the behaviour changes.

use std::time::{Duration, Instant};

use testbed_dynamo::{Metrics, OpenAiClient, RouterMode, Topology, TopologyBuilder};
use testbed_harness::hosts::Direction;
use testbed_harness::poll::{Check, Poll};
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

/// A 3-member etcd under load, each member, the frontend and each worker on
/// a host of its own. Cut one member off (a minority): nothing fails and
/// both workers stay listed. Cut two off (the majority): requests are still
/// served at first (routing needs no etcd), but known finding (Dynamo
/// 1.6.1): once their leases cannot be kept (~20–25 s), the frontend and
/// every worker shut themselves down — the whole deployment, for a quorum
/// loss of etcd alone.
#[test]
fn an_etcd_minority_cut_is_survived_and_a_majority_cut_stops_every_process_finding() {
    pair_on_hosts().etcd_members(3).test(|mut t, _| async move {
        let dynamo = ["frontend", "worker-0", "worker-1", "nats"];
        let others: Vec<&str> = ["etcd-1", "etcd-2"]
            .iter()
            .chain(&dynamo)
            .copied()
            .collect();
        t.hosts()?
            .partition(&["etcd-0"], &others, Direction::Both)?;
        for round in 0..2 {
            let report = load_on(&t, 4, 6).finish().await?;
            check_none_failed(&format!("etcd-0 cut off, round {round}"), &report);
            assert_eq!(t.ready_workers().await?, 2, "both workers stay listed");
        }
        t.hosts()?.heal()?;

        let rest: Vec<&str> = ["etcd-2"].iter().chain(&dynamo).copied().collect();
        let cut_at = Instant::now();
        t.hosts()?
            .partition(&["etcd-0", "etcd-1"], &rest, Direction::Both)?;
        let report = load_on(&t, 4, 6).finish().await?;
        check_none_failed("etcd without quorum, the first seconds", &report);
        let deadline = Duration::from_secs(90);
        let (status, _) = t.frontend.process().wait_exit(deadline).await?;
        println!(
            "the frontend exited ({status:?}) {:?} after the quorum loss",
            cut_at.elapsed()
        );
        for w in &mut t.workers {
            let left = deadline.saturating_sub(cut_at.elapsed());
            let (status, _) = w.process().wait_exit(left).await?;
            println!(
                "{} exited ({status:?}) {:?} after the quorum loss",
                w.name(),
                cut_at.elapsed()
            );
        }
        t.hosts()?.heal()?;
        Ok(())
    });
}

/// What the KV router made of one new long prompt sent twice.
#[derive(Debug)]
struct Repeat {
    /// The worker that served it first.
    first: u64,
    /// Blocks the router indexed from that first request's KV events.
    indexed: f64,
    /// The worker the repeat went to.
    repeat: u64,
    /// The router's KV hit rate for the repeat.
    hit: f64,
}

async fn send_twice(t: &Topology, seed: u64) -> anyhow::Result<Repeat> {
    let url = t.frontend.metrics_url();
    let prompt = format!("{} question", testbed_tests::prompt(seed, 300));
    let body = OpenAiClient::chat_body("tiny", &prompt, 4);
    let mark = testbed_dynamo::metrics::kv_index_mark(&url).await?;
    let first = testbed_tests::ok(&t.client(), "/v1/chat/completions", &body).await?;
    // Events arrive within milliseconds when they arrive at all.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let indexed = testbed_dynamo::metrics::kv_index_mark(&url).await? - mark;
    let repeat = testbed_tests::ok(&t.client(), "/v1/chat/completions", &body).await?;
    Ok(Repeat {
        first: Topology::served_by(&first)?,
        indexed,
        repeat: Topology::served_by(&repeat)?,
        hit: repeat["nvext"]["timing"]["kv_hit_rate"]
            .as_f64()
            .unwrap_or(0.0),
    })
}

/// New prompts, sent twice each, until one is first served by `worker`
/// (the KV router spreads new prompts by load).
async fn first_served_by(t: &Topology, worker: u64, seed: u64) -> anyhow::Result<Repeat> {
    for k in 0..16 {
        let r = send_twice(t, seed + k).await?;
        if r.first == worker {
            return Ok(r);
        }
    }
    anyhow::bail!("16 new prompts, none served first by worker {worker}")
}

/// A worker cut off from NATS (the KV event plane here) under KV routing:
/// its requests travel over TCP, so nothing fails, but the router stops
/// learning what it caches — a repeat of its prompt misses the cache and
/// may go elsewhere — while the other worker's cache is still followed.
/// After the heal its events are indexed again.
#[test]
fn a_worker_cut_off_from_nats_serves_but_the_router_stops_learning_its_cache() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .on_hosts()
        .test(|t, _| async move {
            let cut = testbed_tests::instance_id(&t.workers[0].metrics_url()).await?;
            let other = testbed_tests::instance_id(&t.workers[1].metrics_url()).await?;
            t.hosts()?
                .partition(&["worker-0"], &["nats"], Direction::Both)?;
            let report = load_on(&t, 4, 4).finish().await?;
            check_none_failed("worker-0 cut off from NATS", &report);

            let blind = first_served_by(&t, cut, 1000).await?;
            println!("cut off: {blind:?}");
            assert_eq!(
                blind.indexed, 0.0,
                "no KV event of the cut worker reached the router"
            );
            assert_eq!(blind.hit, 0.0, "its repeat found no cached block");
            let seen = first_served_by(&t, other, 2000).await?;
            println!("the other: {seen:?}");
            assert!(seen.indexed > 0.0 && seen.repeat == other && seen.hit > 0.8);

            t.hosts()?.heal()?;
            let seed = std::sync::atomic::AtomicU64::new(3000);
            let (resumed, took) = Poll::new("worker-0's KV events indexed again after the heal")
                .timeout(Duration::from_secs(30))
                .until_timed(|| async {
                    let seed = seed.fetch_add(100, std::sync::atomic::Ordering::Relaxed);
                    let r = first_served_by(&t, cut, seed).await?;
                    Ok(match r.indexed > 0.0 {
                        true => Check::Done(r),
                        false => Check::NotYet(format!("{r:?}")),
                    })
                })
                .await?;
            println!("healed: {resumed:?} {took:?} after the heal");
            assert_eq!(resumed.repeat, cut, "the repeat follows its cache again");
            Ok(())
        });
}

/// A test process SIGKILLed with a whole stack on hosts: its namespaces,
/// veths and bridge outlive it (checked from outside), and the reaper
/// removes them with its processes.
#[test]
fn a_sigkilled_test_process_leaves_its_hosts_to_the_reaper() {
    testbed_harness::run_test(|ctx| async move {
        let run = testbed_harness::RunId::fresh("fault-hosts-sigkill");
        let fixture = testbed_tests::fixture_child!();
        let (mut child, mut out) =
            testbed_tests::start_fixture(&fixture, "stack-on-hosts", &run, ctx.dir())?;
        let pids: Vec<u32> = out
            .next()
            .transpose()?
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        let hosts_line = out.next().transpose()?.unwrap_or_default();
        let names: Vec<String> = hosts_line
            .split_whitespace()
            .skip(1)
            .map(str::to_owned)
            .collect();
        anyhow::ensure!(
            pids.len() >= 5 && names.len() == 11,
            "the child printed {pids:?} / {hosts_line:?}"
        );
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait()?;
        let (links, netns) = names.split_at(6);
        assert!(
            links.iter().all(|l| testbed_tests::link_exists(l)),
            "checked from outside: the bridge and veths outlived the killed test"
        );
        let reaped = testbed_harness::reaper::reap_run(&testbed_harness::Layout::from_env(), &run);
        println!(
            "the reaper removed: {}",
            reaped
                .iter()
                .map(|r| r.describe())
                .collect::<Vec<_>>()
                .join(", ")
        );
        testbed_tests::all_dead(&pids, Duration::from_secs(5)).await?;
        let left: Vec<&String> = links
            .iter()
            .filter(|l| testbed_tests::link_exists(l))
            .collect();
        assert!(left.is_empty(), "links left: {left:?}");
        let listed = testbed_tests::netns_list();
        let left: Vec<&String> = netns.iter().filter(|n| listed.contains(n)).collect();
        assert!(left.is_empty(), "namespaces left: {left:?}");
        Ok(())
    });
}
