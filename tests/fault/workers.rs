//! Worker faults: SIGKILL mid-stream (with and without migration), SIGTERM
//! under load, stall (SIGSTOP) and resume under load, and the dead worker
//! leaving discovery.

use std::time::Duration;

use testbed_dynamo::{Metrics, OpenAiClient, RouterMode, Topology, TopologyBuilder};
use testbed_load::Stream;

use crate::{check_none_failed, check_nothing_lost, load_on};

/// Two slow workers (speedup 1: a 200-token answer takes a second or
/// more), so that a stream is surely in flight when the fault lands.
fn slow_pair(migration_limit: u32) -> TopologyBuilder {
    TopologyBuilder::routed(2, RouterMode::RoundRobin)
        .migration_limit(migration_limit)
        .speedup(1.0)
}

/// Streams a 200-token answer to `prompt`, SIGKILLs the worker generating
/// it, and returns the stream as the client saw it (within `within`).
async fn kill_mid_stream(
    t: &mut Topology,
    prompt: &str,
    within: Duration,
) -> anyhow::Result<Stream> {
    let client = t.client();
    let body = OpenAiClient::chat_body("tiny", prompt, 200);
    let stream = tokio::spawn(async move { client.stream("/v1/chat/completions", body).await });
    let busy = t.busy_worker(Duration::from_secs(10)).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.workers[busy].process().signal(libc::SIGKILL);
    tokio::time::timeout(within, stream)
        .await
        .map_err(|_| anyhow::anyhow!("the stream hung after its worker died"))??
}

#[test]
fn sigkill_mid_stream_with_migration_completes_every_token() {
    // One migration is all it takes: a limit of 1 must allow it.
    slow_pair(1).test(|mut t, _| async move {
        let before = Metrics::scrape(&t.frontend.metrics_url()).await?;
        let stream = kill_mid_stream(&mut t, "migrate me", Duration::from_secs(60)).await?;
        testbed_tests::assert_migrated(&stream, 200, &t.frontend.metrics_url(), &before).await?;
        Ok(())
    });
}

#[test]
fn sigkill_mid_stream_without_migration_is_an_explicit_error() {
    slow_pair(0).test(|mut t, _| async move {
        let stream = kill_mid_stream(&mut t, "no migration", Duration::from_secs(30)).await?;
        assert_eq!(stream.status, 200, "the stream had started");
        let error = stream.error().expect("an SSE error event, not silence");
        println!("error event: {error}");
        assert!(
            stream
                .usage()
                .and_then(|u| u["completion_tokens"].as_u64())
                .unwrap_or(0)
                < 200,
            "the answer is incomplete, and says so"
        );
        Ok(())
    });
}

#[test]
fn dead_worker_leaves_etcd_discovery_then_nothing_fails() {
    TopologyBuilder::routed(2, RouterMode::RoundRobin).test(|mut t, _| async move {
        t.workers[0].process().signal(libc::SIGKILL);
        // The worker's etcd lease must expire: ~25–30 s in 1.6.1.
        let took = t.wait_for_worker_count(1, Duration::from_secs(60)).await?;
        println!("the killed worker left discovery after {took:?}");
        let report = load_on(&t, 4, 3).finish().await?;
        check_nothing_lost("after the dead worker left", &report);
        assert_eq!(
            report.failed_total(),
            0,
            "no request fails once the dead worker is gone: {}",
            report.summary()
        );
        Ok(())
    });
}

/// Two fast workers with migration on: faults under steady load.
fn migrating_pair() -> TopologyBuilder {
    TopologyBuilder::routed(2, RouterMode::RoundRobin).migration_limit(3)
}

#[test]
fn sigterm_under_load_fails_nothing() {
    migrating_pair().test(|mut t, _| async move {
        let load = load_on(&t, 4, 5);
        // SIGTERM goes to a worker that is generating for a client.
        let busy = t.busy_worker(Duration::from_secs(10)).await?;
        t.workers[busy].process().signal(libc::SIGTERM);
        // It leaves discovery and exits by itself (no SIGKILL)...
        let left = t.wait_for_worker_count(1, Duration::from_secs(30)).await?;
        let worker = &mut t.workers[busy];
        let (status, exited) = worker.process().wait_exit(Duration::from_secs(30)).await?;
        println!("the SIGTERMed worker left discovery after {left:?} and exited ({status:?}) after {exited:?}");
        assert!(status.success(), "a graceful exit, not a crash: {status:?}");
        // ... while its requests finished or moved: the load fails nothing.
        let report = load.finish().await?;
        check_none_failed("SIGTERM under load", &report);
        Ok(())
    });
}

#[test]
fn stall_and_resume_under_load_loses_nothing() {
    migrating_pair().test(|mut t, _| async move {
        let load = load_on(&t, 4, 6);
        tokio::time::sleep(Duration::from_secs(1)).await;
        t.workers[0].process().signal(libc::SIGSTOP);
        tokio::time::sleep(Duration::from_secs(3)).await;
        t.workers[0].process().signal(libc::SIGCONT);
        let report = load.finish().await?;
        check_nothing_lost("stall and resume", &report);
        assert!(report.completed > 0, "{}", report.summary());
        // The stalled worker serves again afterwards.
        for i in 0..4 {
            let a = t
                .client()
                .chat("tiny", &format!("after the stall {i}"), 4)
                .await?;
            assert_eq!(a.status, 200, "{}", a.text);
        }
        Ok(())
    });
}
