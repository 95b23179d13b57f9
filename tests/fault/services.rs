//! Service faults: NATS restarts (core and JetStream), etcd member loss in a
//! 3-member cluster, single-etcd loss, and a frontend restart.

use std::time::Duration;

use testbed_dynamo::load::{Load, LoadSpec};
use testbed_dynamo::{EventPlaneKind, RequestPlaneKind, RouterMode, Topology, TopologyBuilder};
use testbed_harness::run_test;

use crate::check_nothing_lost;

/// Waits until a request succeeds again, then requires `n` in a row.
async fn recovers(t: &Topology, n: usize, within: Duration) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    loop {
        if let Ok(a) = t.client().chat("tiny", "are you back?", 4).await {
            if a.status == 200 {
                break;
            }
        }
        anyhow::ensure!(
            started.elapsed() < within,
            "no successful request within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    for i in 0..n {
        let a = t
            .client()
            .chat("tiny", &format!("after recovery {i}"), 4)
            .await?;
        anyhow::ensure!(
            a.status == 200,
            "request {i} after recovery: {} {}",
            a.status,
            a.text
        );
    }
    Ok(took)
}

async fn nats_restart(
    event_plane: EventPlaneKind,
    ctx: testbed_harness::TestContext,
) -> anyhow::Result<()> {
    let mut t = TopologyBuilder::routed(2, RouterMode::Kv)
        .request_plane(RequestPlaneKind::Nats)
        .event_plane(event_plane)
        .start(&ctx)
        .await?;
    assert_eq!(t.client().chat("tiny", "before", 4).await?.status, 200);
    t.nats.as_mut().unwrap().restart().await?;
    let took = recovers(&t, 10, Duration::from_secs(30)).await?;
    println!("requests succeed again {took:?} after the NATS restart");
    Ok(())
}

#[test]
fn nats_core_restart_mid_run_recovers() {
    run_test(|ctx| nats_restart(EventPlaneKind::NatsCore, ctx));
}

#[test]
fn nats_jetstream_restart_mid_run_recovers() {
    run_test(|ctx| nats_restart(EventPlaneKind::NatsJetStream, ctx));
}

#[test]
fn etcd_cluster_loses_each_member_in_turn_under_load() {
    run_test(|ctx| async move {
        let mut builder = TopologyBuilder::routed(2, RouterMode::RoundRobin);
        builder.etcd_members = 3;
        let mut t = builder.start(&ctx).await?;
        for member in 0..3 {
            let load = Load::start(
                &t.client(),
                LoadSpec::new("tiny", 2, Duration::from_secs(3)),
            );
            t.etcd.as_mut().unwrap().kill_member(member).await;
            let report = load.finish().await?;
            check_nothing_lost(&format!("etcd member {member} down"), &report);
            assert_eq!(
                report.failed_total(),
                0,
                "member {member} down: {}",
                report.summary()
            );
            t.etcd.as_mut().unwrap().start_member(member).await?;
        }
        assert_eq!(
            t.ready_workers().await?,
            2,
            "both workers stayed registered"
        );
        Ok(())
    });
}

#[test]
fn single_etcd_loss_keeps_serving_known_workers() {
    run_test(|ctx| async move {
        let mut t = TopologyBuilder::routed(2, RouterMode::RoundRobin)
            .start(&ctx)
            .await?;
        t.etcd.as_mut().unwrap().kill_member(0).await;
        // Requests travel over TCP: the frontend keeps routing to the
        // workers it already knows while etcd is gone.
        let report = Load::start(
            &t.client(),
            LoadSpec::new("tiny", 2, Duration::from_secs(3)),
        )
        .finish()
        .await?;
        check_nothing_lost("etcd down", &report);
        assert_eq!(report.failed_total(), 0, "{}", report.summary());
        Ok(())
    });
}

#[test]
fn frontend_restart_rediscovers_the_workers() {
    run_test(|ctx| async move {
        let mut t = TopologyBuilder::routed(2, RouterMode::RoundRobin)
            .start(&ctx)
            .await?;
        t.restart_frontend().await?;
        assert_eq!(t.ready_workers().await?, 2);
        let report = Load::start(
            &t.client(),
            LoadSpec::new("tiny", 2, Duration::from_secs(2)),
        )
        .finish()
        .await?;
        check_nothing_lost("after the frontend restart", &report);
        assert_eq!(report.failed_total(), 0, "{}", report.summary());
        Ok(())
    });
}
