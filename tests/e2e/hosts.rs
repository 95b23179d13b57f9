//! Stacks on hosts: every process of the topology in a network namespace of
//! its own on a private bridge, talking over host addresses. What each
//! process listens on and what Dynamo advertises in discovery is read, not
//! assumed; the KV router still learns the cache from the workers' events
//! across hosts (NATS and ZMQ event planes).

use std::collections::BTreeSet;
use std::time::Duration;

use testbed_dynamo::{metrics, EventPlaneKind, RouterMode, Topology, TopologyBuilder};
use testbed_harness::poll::{Check, Poll};
use testbed_harness::procinfo::{self, Listener};

/// The network namespace of `pid`, as `/proc` names it.
fn netns_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Every process's host address, by pid: the group leaders of the
/// topology's services, frontend and workers, with the members of each.
fn addresses_by_pid(t: &mut Topology) -> anyhow::Result<Vec<(u32, std::net::Ipv4Addr)>> {
    let mut named: Vec<(String, Vec<u32>)> = Vec::new();
    if let Some(n) = &mut t.nats {
        named.push(("nats".into(), members(n.process().expect("running"))));
    }
    if let Some(e) = &mut t.etcd {
        for i in 0..e.len() {
            let name = if e.len() == 1 {
                "etcd".to_owned()
            } else {
                format!("etcd-{i}")
            };
            named.push((name, members(e.member_process(i).expect("running"))));
        }
    }
    named.push(("frontend".into(), members(t.frontend.process())));
    for w in &mut t.workers {
        let name = w.name().to_owned();
        named.push((name, members(w.process())));
    }
    let hosts = t.hosts()?;
    let mut out = Vec::new();
    for (name, pids) in named {
        let addr = hosts.host(&name)?.placement.addr;
        out.extend(pids.into_iter().map(|p| (p, addr)));
    }
    Ok(out)
}

fn members(p: &mut testbed_harness::ManagedProcess) -> Vec<u32> {
    p.group_members().iter().map(|s| s.pid).collect()
}

/// What Dynamo registered in etcd under `prefix`, as JSON values.
async fn registered(t: &Topology, prefix: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut etcd = t.etcd.as_ref().expect("etcd discovery").client().await?;
    let answer = etcd
        .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
        .await?;
    answer
        .kvs()
        .iter()
        .map(|kv| Ok(serde_json::from_slice(kv.value())?))
        .collect()
}

/// Sends `prompt`; returns the serving worker and the router's KV hit rate.
async fn served(t: &Topology, prompt: &str) -> anyhow::Result<(u64, f64)> {
    let answer = t.client().chat("tiny", prompt, 4).await?;
    anyhow::ensure!(answer.status == 200, "{}", answer.text);
    let hit = answer.json["nvext"]["timing"]["kv_hit_rate"]
        .as_f64()
        .unwrap_or(0.0);
    Ok((Topology::served_by(&answer.json)?, hit))
}

/// Repeats of a long prompt go to the worker that served it first, with a
/// cache hit: the router indexed that worker's KV events across hosts.
async fn routes_by_cache(t: &Topology) -> anyhow::Result<()> {
    let prompt = format!("{} question", crate::prompt(700, 300));
    let mark = metrics::kv_index_mark(&t.frontend.metrics_url()).await?;
    let (first, _) = served(t, &prompt).await?;
    metrics::kv_indexed_since(&t.frontend.metrics_url(), mark).await?;
    let mut workers = BTreeSet::from([first]);
    for _ in 0..3 {
        let (worker, hit) = served(t, &prompt).await?;
        workers.insert(worker);
        assert!(hit > 0.8, "the router saw the cached blocks: {hit}");
    }
    assert_eq!(workers.len(), 1, "repeats went to {workers:?}");
    Ok(())
}

#[test]
fn a_stack_on_hosts_listens_and_advertises_only_host_addresses() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .on_hosts()
        .test(|mut t, _| async move {
            let by_pid = addresses_by_pid(&mut t)?;
            let own = netns_of(std::process::id());
            let namespaces: BTreeSet<String> = by_pid
                .iter()
                .filter(|(p, _)| procinfo::stat(*p).is_some())
                .map(|(p, _)| netns_of(*p))
                .collect();
            assert!(
                !namespaces.contains(&own),
                "no process runs in the test's namespace"
            );
            assert_eq!(
                namespaces.len(),
                5,
                "nats, etcd, frontend and 2 workers: 5 hosts"
            );
            let pids: Vec<u32> = by_pid.iter().map(|(p, _)| *p).collect();
            let listeners = procinfo::listeners(&pids);
            let misplaced: Vec<&Listener> = listeners
                .iter()
                .filter(|l| {
                    let host = by_pid.iter().find(|(p, _)| *p == l.pid).map(|(_, a)| *a);
                    Some(l.addr.ip()) != host.map(std::net::IpAddr::from)
                })
                .collect();
            assert!(
                misplaced.is_empty(),
                "every listener is on its process's host address: {misplaced:#?}"
            );
            let instances = registered(&t, "v1/instances/").await?;
            assert!(instances.len() >= 2, "{instances:?}");
            let worker_addrs: Vec<String> = ["worker-0", "worker-1"]
                .iter()
                .map(|w| Ok(t.hosts()?.host(w)?.placement.host()))
                .collect::<anyhow::Result<_>>()?;
            for value in &instances {
                let transport = value["transport"]["tcp"].as_str().unwrap_or_default();
                assert!(
                    worker_addrs
                        .iter()
                        .any(|a| transport.starts_with(&format!("{a}:"))),
                    "a worker advertises its host's address: {transport}"
                );
            }
            routes_by_cache(&t).await
        });
}

/// Dynamo 1.6.1's mocker binds its 4 ZMQ event publishers on 0.0.0.0
/// whatever `DYN_EVENT_PLANE_HOST` says, and advertises them in discovery
/// at `DYN_EVENT_PLANE_HOST` — on a host, its address, so the router on
/// another host gets the events. (On one loopback the testbed pins that
/// variable to 127.0.0.1, which is what a router elsewhere would be told.)
const ZMQ_PUBLISHERS_PER_WORKER: usize = 4;

#[test]
fn zmq_publishers_bind_every_address_and_advertise_the_event_plane_host_finding() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .event_plane(EventPlaneKind::Zmq)
        .on_hosts()
        .test(|mut t, _| async move {
            let by_pid = addresses_by_pid(&mut t)?;
            let pids: Vec<u32> = by_pid.iter().map(|(p, _)| *p).collect();
            // The publishers bind after the worker registers.
            let listeners = Poll::new("both workers binding their ZMQ publishers")
                .timeout(Duration::from_secs(10))
                .until(|| {
                    let listeners = procinfo::listeners(&pids);
                    async move {
                        let n = listeners
                            .iter()
                            .filter(|l| l.addr.ip().is_unspecified())
                            .count();
                        Ok(if n >= 2 * ZMQ_PUBLISHERS_PER_WORKER {
                            Check::Done(listeners)
                        } else {
                            Check::NotYet(format!("{n} listeners on 0.0.0.0"))
                        })
                    }
                })
                .await?;
            let unspecified: Vec<&Listener> = listeners
                .iter()
                .filter(|l| l.addr.ip().is_unspecified())
                .collect();
            assert_eq!(
                unspecified.len(),
                2 * ZMQ_PUBLISHERS_PER_WORKER,
                "{unspecified:#?}"
            );
            let channels = registered(&t, "v1/event_channels/").await?;
            let mut advertised = BTreeSet::new();
            for value in &channels {
                let endpoint = value["transport"]["config"]["endpoint"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                advertised.insert(endpoint);
            }
            // Each bound publisher is advertised at its worker's host address.
            let expected: BTreeSet<String> = unspecified
                .iter()
                .map(|l| {
                    let host = by_pid
                        .iter()
                        .find(|(p, _)| *p == l.pid)
                        .expect("a stack pid")
                        .1;
                    format!("tcp://{host}:{}", l.addr.port())
                })
                .collect();
            assert_eq!(advertised, expected);
            routes_by_cache(&t).await
        });
}
