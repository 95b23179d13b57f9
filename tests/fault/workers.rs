//! Worker faults: SIGKILL mid-stream (with and without migration), SIGTERM
//! under load, stall (SIGSTOP) and resume under load, and the dead worker
//! leaving discovery.

use std::time::Duration;

use testbed_dynamo::{Metrics, OpenAiClient, RouterMode, TopologyBuilder};
use testbed_harness::run_test;
use testbed_load::{Load, LoadSpec};

use crate::check_nothing_lost;

/// Two slow workers (speedup 1: a 200-token answer takes a second or
/// more), so that a stream is surely in flight when the fault lands.
fn slow_pair(migration_limit: u32) -> TopologyBuilder {
    TopologyBuilder::routed(2, RouterMode::RoundRobin)
        .migration_limit(migration_limit)
        .speedup(1.0)
}

#[test]
fn sigkill_mid_stream_with_migration_completes_every_token() {
    run_test(|ctx| async move {
        let mut t = slow_pair(3).start(&ctx).await?;
        let before = Metrics::scrape(&t.frontend.metrics_url()).await?;
        let client = t.client();
        let stream = tokio::spawn(async move {
            client
                .stream(
                    "/v1/chat/completions",
                    OpenAiClient::chat_body("tiny", "migrate me", 200),
                )
                .await
        });
        let busy = t.busy_worker(Duration::from_secs(10)).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        t.workers[busy].process().signal(libc::SIGKILL);
        let stream = tokio::time::timeout(Duration::from_secs(60), stream).await???;
        testbed_tests::assert_migrated(&stream, 200, &t.frontend.metrics_url(), &before).await?;
        Ok(())
    });
}

#[test]
fn sigkill_mid_stream_without_migration_is_an_explicit_error() {
    run_test(|ctx| async move {
        let mut t = slow_pair(0).start(&ctx).await?;
        let client = t.client();
        let stream = tokio::spawn(async move {
            client
                .stream(
                    "/v1/chat/completions",
                    OpenAiClient::chat_body("tiny", "no migration", 200),
                )
                .await
        });
        let busy = t.busy_worker(Duration::from_secs(10)).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        t.workers[busy].process().signal(libc::SIGKILL);
        let stream = tokio::time::timeout(Duration::from_secs(30), stream)
            .await
            .map_err(|_| anyhow::anyhow!("the stream hung after its worker died"))???;
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
    run_test(|ctx| async move {
        let mut t = TopologyBuilder::routed(2, RouterMode::RoundRobin)
            .start(&ctx)
            .await?;
        t.workers[0].process().signal(libc::SIGKILL);
        // The worker's etcd lease must expire: ~25–30 s in 1.6.1.
        let took = t.wait_for_worker_count(1, Duration::from_secs(60)).await?;
        println!("the killed worker left discovery after {took:?}");
        let report = Load::start(LoadSpec::new(
            t.frontend.url(),
            "tiny",
            4,
            Duration::from_secs(3),
        ))
        .finish()
        .await?;
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
    run_test(|ctx| async move {
        let mut t = migrating_pair().start(&ctx).await?;
        let load = Load::start(LoadSpec::new(
            t.frontend.url(),
            "tiny",
            4,
            Duration::from_secs(5),
        ));
        tokio::time::sleep(Duration::from_secs(2)).await;
        t.workers[0].process().signal(libc::SIGTERM);
        let report = load.finish().await?;
        check_nothing_lost("SIGTERM under load", &report);
        assert_eq!(report.failed_total(), 0, "{}", report.summary());
        Ok(())
    });
}

#[test]
fn stall_and_resume_under_load_loses_nothing() {
    run_test(|ctx| async move {
        let mut t = migrating_pair().start(&ctx).await?;
        let load = Load::start(LoadSpec::new(
            t.frontend.url(),
            "tiny",
            4,
            Duration::from_secs(6),
        ));
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
