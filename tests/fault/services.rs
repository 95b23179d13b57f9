//! Service faults: NATS restarts (core and JetStream), etcd member loss in a
//! 3-member cluster, single-etcd loss, and a frontend restart.

use std::time::Duration;

use testbed_dynamo::{EventPlaneKind, RequestPlaneKind, RouterMode, Topology, TopologyBuilder};
use testbed_harness::poll::{Check, Poll};
use testbed_harness::run_test;

use crate::{check_none_failed, check_nothing_lost, load_on};

/// Waits until a request succeeds again, then requires `n` in a row.
async fn recovers(t: &Topology, n: usize, within: Duration) -> anyhow::Result<Duration> {
    let client = t.client();
    let ((), took) = Poll::new("a request succeeding again")
        .timeout(within)
        .every(Duration::from_millis(200))
        .until_timed(|| async {
            Ok(match client.chat("tiny", "are you back?", 4).await {
                Ok(a) if a.status == 200 => Check::Done(()),
                Ok(a) => Check::NotYet(format!("{} {}", a.status, a.text)),
                Err(e) => Check::NotYet(format!("{e:#}")),
            })
        })
        .await?;
    for i in 0..n {
        let a = client
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
    TopologyBuilder::routed(2, RouterMode::RoundRobin)
        .etcd_members(3)
        .test(|mut t, _| async move {
            for member in 0..3 {
                let load = load_on(&t, 2, 3);
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

/// Single-node etcd loss, as Dynamo 1.6.1 behaves: the frontend and the
/// workers do not exit (they reconnect, retrying), and once etcd is back on
/// its address the deployment serves again with every worker. While etcd is
/// down, requests may be served or may hang (both were seen on this
/// machine): that is printed as a finding, not asserted.
#[test]
fn single_etcd_loss_is_survived_and_service_resumes_when_it_returns() {
    TopologyBuilder::routed(2, RouterMode::RoundRobin).test(|mut t, _| async move {
        t.etcd.as_mut().unwrap().kill_member(0).await;
        let during = tokio::time::timeout(
            Duration::from_secs(5),
            t.client().chat("tiny", "etcd is down", 4),
        )
        .await;
        match &during {
            Ok(Ok(a)) => println!("finding: with etcd down a request got {}", a.status),
            Ok(Err(e)) => println!("finding: with etcd down a request failed: {e:#}"),
            Err(_) => println!("finding: with etcd down a request hung for 5 s"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(
            t.frontend.process().is_running(),
            "the frontend survives etcd's loss"
        );
        for w in &mut t.workers {
            assert!(
                w.process().is_running(),
                "{} survives etcd's loss",
                w.name()
            );
        }
        assert_eq!(
            t.client().get("/live").await?.status,
            200,
            "the frontend stays live"
        );
        t.etcd.as_mut().unwrap().start_member(0).await?;
        let took = recovers(&t, 10, Duration::from_secs(60)).await?;
        println!("requests succeed again {took:?} after etcd returned");
        t.wait_for_worker_count(2, Duration::from_secs(30)).await?;
        let report = load_on(&t, 2, 2).finish().await?;
        check_none_failed("after etcd returned", &report);
        Ok(())
    });
}

#[test]
fn frontend_restart_rediscovers_the_workers() {
    TopologyBuilder::routed(2, RouterMode::RoundRobin).test(|mut t, _| async move {
        t.restart_frontend().await?;
        assert_eq!(t.ready_workers().await?, 2);
        let report = load_on(&t, 2, 2).finish().await?;
        check_none_failed("after the frontend restart", &report);
        Ok(())
    });
}
