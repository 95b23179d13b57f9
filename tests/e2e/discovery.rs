//! Discovery and planes: the same request flow on etcd and on files, over a
//! TCP or NATS request plane, with NATS (core or JetStream) or ZMQ events;
//! what Dynamo registers in etcd and publishes on NATS.

use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use testbed_dynamo::{
    DiscoveryKind, EventPlaneKind, RequestPlaneKind, RouterMode, Topology, TopologyBuilder,
};
use testbed_harness::poll::{check, Poll};

async fn smoke(t: &Topology) -> anyhow::Result<()> {
    let answer = t.client().chat("tiny", "smoke", 6).await?;
    anyhow::ensure!(answer.status == 200, "{} {}", answer.status, answer.text);
    anyhow::ensure!(
        answer.json["usage"]["completion_tokens"] == 6,
        "{}",
        answer.text
    );
    let stream = t.client().stream_chat("tiny", "smoke", 6).await?;
    anyhow::ensure!(
        stream.done() && stream.usage().is_some_and(|u| u["completion_tokens"] == 6),
        "stream: {:?}",
        stream.events
    );
    Ok(())
}

/// The default planes: requests over TCP (none on NATS), KV events over
/// NATS, consumed by the KV router (its count of applied events rises).
#[test]
fn etcd_tcp_and_nats_events() {
    TopologyBuilder::routed(2, RouterMode::Kv).test(|t, _| async move {
        assert!(t.etcd.is_some() && t.nats.is_some());
        let metrics = t.frontend.metrics_url();
        let mark = testbed_dynamo::metrics::kv_index_mark(&metrics).await?;
        let subjects = nats_subjects_during(&t, smoke(&t)).await?;
        assert!(
            !subjects
                .iter()
                .any(|s| s.starts_with("dynamo_backend.generate-")),
            "no request travelled over NATS: {subjects:?}"
        );
        assert!(
            subjects.iter().any(|s| s.ends_with(".kv-events")),
            "KV events were published on NATS: {subjects:?}"
        );
        testbed_dynamo::metrics::kv_indexed_since(&metrics, mark).await
    });
}

#[test]
fn file_discovery_with_zmq_events_needs_neither_etcd_nor_nats() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .discovery(DiscoveryKind::File)
        .event_plane(EventPlaneKind::Zmq)
        .test(|t, _| async move {
            assert!(t.etcd.is_none() && t.nats.is_none(), "no etcd, no NATS");
            smoke(&t).await
        });
}

/// Subjects seen on the topology's NATS while `during` runs.
async fn nats_subjects_during<F: std::future::Future<Output = anyhow::Result<()>>>(
    t: &Topology,
    during: F,
) -> anyhow::Result<Vec<String>> {
    let client = t
        .nats
        .as_ref()
        .context("the topology has NATS")?
        .client()
        .await?;
    let mut all = client.subscribe(">").await?;
    client.flush().await?;
    during.await?;
    let mut subjects = Vec::new();
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(300), all.next()).await {
        subjects.push(msg.subject.to_string());
    }
    Ok(subjects)
}

/// With the NATS request plane, the request itself travels over NATS: the
/// worker's generate endpoint is a NATS subject that carries it.
#[test]
fn nats_request_plane() {
    TopologyBuilder::aggregated()
        .request_plane(RequestPlaneKind::Nats)
        .test(|t, _| async move {
            let subjects = nats_subjects_during(&t, smoke(&t)).await?;
            println!("subjects: {subjects:?}");
            // `smoke` sends two requests (unary and streaming); each is one
            // message on `<namespace>_<component>.<endpoint>-<instance>`.
            let requests = subjects
                .iter()
                .filter(|s| s.starts_with("dynamo_backend.generate-"))
                .count();
            assert_eq!(requests, 2, "each request went over NATS: {subjects:?}");
            Ok(())
        });
}
/// With the JetStream event plane the KV router still indexes the
/// workers' events; what JetStream holds is printed (Dynamo 1.6.1 keeps
/// no stream there: its KV events travel on core NATS subjects).
#[test]
fn jetstream_enabled_event_plane() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .event_plane(EventPlaneKind::NatsJetStream)
        .test(|t, _| async move {
            let metrics = t.frontend.metrics_url();
            let mark = testbed_dynamo::metrics::kv_index_mark(&metrics).await?;
            smoke(&t).await?;
            testbed_dynamo::metrics::kv_indexed_since(&metrics, mark).await?;
            let js = async_nats::jetstream::new(t.nats.as_ref().unwrap().client().await?);
            let mut names = js.stream_names();
            let mut streams = Vec::new();
            while let Some(name) = names.next().await {
                let name = name?;
                let info = js.get_stream(&name).await?.info().await?.clone();
                streams.push((name, info.state.messages));
            }
            println!("JetStream streams: {streams:?}");
            Ok(())
        });
}

#[test]
fn etcd_registration_appears_and_leaves_with_the_worker() {
    TopologyBuilder::aggregated().test(|mut t, _| async move {
        let prefix = "v1/instances/dynamo/backend/generate/";
        let etcd = t.etcd.as_ref().unwrap();
        let keys = etcd.keys(prefix).await?;
        assert_eq!(
            keys.len(),
            1,
            "one worker registered under {prefix}: {keys:?}"
        );
        assert!(
            !etcd
                .keys("v1/mdc/dynamo/backend/generate/")
                .await?
                .is_empty(),
            "its model card is published"
        );
        t.workers[0].process().stop().await;
        let etcd = t.etcd.as_ref().unwrap();
        Poll::new("a SIGTERMed worker removing its registration")
            .timeout(Duration::from_secs(5))
            .until(|| async {
                let keys = etcd.keys(prefix).await?;
                Ok(check(keys.is_empty(), || format!("{keys:?}")))
            })
            .await?;
        t.wait_for_worker_count(0, Duration::from_secs(10)).await?;
        Ok(())
    });
}

#[test]
fn kv_events_are_published_on_nats() {
    TopologyBuilder::routed(1, RouterMode::Kv).test(|t, _| async move {
        let client = t.nats.as_ref().unwrap().client().await?;
        let mut events = client.subscribe("namespace.dynamo.>").await?;
        client.flush().await?;
        let answer = t.client().chat("tiny", &crate::prompt(5, 100), 8).await?;
        assert_eq!(answer.status, 200);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut subjects = Vec::new();
        while !subjects.iter().any(|s: &String| s.ends_with(".kv-events")) {
            let msg = tokio::time::timeout_at(deadline, events.next())
                .await
                .map_err(|_| {
                    anyhow::anyhow!("no kv-events message within 10 s; saw {subjects:?}")
                })?;
            subjects.push(msg.expect("subscription open").subject.to_string());
        }
        assert!(
            subjects
                .iter()
                .any(|s| s == "namespace.dynamo.component.backend.endpoint.generate.kv-events"),
            "{subjects:?}"
        );
        Ok(())
    });
}

#[test]
fn file_discovery_registers_in_its_folder() {
    TopologyBuilder::aggregated()
        .discovery(DiscoveryKind::File)
        .test(|t, _| async move {
            let testbed_dynamo::planes::Discovery::File(folder) = &t.planes().discovery else {
                anyhow::bail!("not file discovery")
            };
            let instances = folder.join("v1").join("instances");
            let entries: Vec<String> = walk(&instances)
                .into_iter()
                .filter(|p| p.contains("generate"))
                .collect();
            assert!(
                !entries.is_empty(),
                "the worker's instance is a file under {}",
                instances.display()
            );
            let card = std::fs::read_to_string(&entries[0])?;
            assert!(
                card.contains("127.0.0.1"),
                "the registration advertises loopback: {card}"
            );
            smoke(&t).await
        });
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
