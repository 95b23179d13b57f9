//! Hermeticity: every process of a topology listens on loopback only —
//! read from the listening sockets of the whole process tree, not assumed.
//! What the pinned Dynamo still binds beyond loopback is a named, exact
//! known finding, so a new one fails the test.

use testbed_dynamo::{DiscoveryKind, EventPlaneKind, RouterMode, TopologyBuilder};
use testbed_harness::poll::{Check, Poll};
use testbed_harness::procinfo::{self, Listener};

fn beyond_loopback(listeners: &[Listener]) -> Vec<&Listener> {
    listeners
        .iter()
        .filter(|l| !l.addr.ip().is_loopback())
        .collect()
}

#[test]
fn etcd_and_nats_topology_listens_on_loopback_only() {
    TopologyBuilder::routed(2, RouterMode::Kv).test(|mut t, _| async move {
        let listeners = procinfo::listeners(&t.pids());
        assert!(
            listeners.len() >= 5,
            "found the listeners of the tree: {listeners:#?}"
        );
        assert!(
            listeners.iter().any(|l| l.addr.port() == t.frontend.port()),
            "the frontend's HTTP port is among them"
        );
        let outside = beyond_loopback(&listeners);
        assert!(
            outside.is_empty(),
            "listening beyond loopback: {outside:#?}"
        );
        Ok(())
    });
}

/// Known finding (Dynamo 1.6.1): with the ZMQ event plane each mocker binds
/// its 4 event publishers (kv-events, kv_metrics, active_sequences_events,
/// forward-pass-metrics) on 0.0.0.0 — no setting moves them — and advertises
/// them at `DYN_EVENT_PLANE_HOST` (127.0.0.1 here; see `hosts.rs` for a
/// host's address). Everything else stays on loopback.
const ZMQ_PUBLISHERS_PER_MOCKER: usize = 4;

#[test]
fn zmq_topology_binds_only_the_known_mocker_publishers_beyond_loopback() {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .discovery(DiscoveryKind::File)
        .event_plane(EventPlaneKind::Zmq)
        .test(|mut t, _| async move {
            let worker_pids: Vec<Vec<u32>> = t
                .workers
                .iter_mut()
                .map(|w| w.process().group_members().iter().map(|s| s.pid).collect())
                .collect();
            // The publishers bind while the worker settles, after it registers:
            // read the sockets once every worker shows its publishers (or 5 s).
            let per_worker = |listeners: &[Listener]| -> Vec<usize> {
                let outside = beyond_loopback(listeners);
                worker_pids
                    .iter()
                    .map(|pids| outside.iter().filter(|l| pids.contains(&l.pid)).count())
                    .collect()
            };
            let pids = t.pids();
            let listeners = Poll::new("every worker binding its ZMQ publishers")
                .timeout(std::time::Duration::from_secs(5))
                .until(|| {
                    let listeners = procinfo::listeners(&pids);
                    let counts = per_worker(&listeners);
                    async move {
                        Ok(if counts.iter().all(|n| *n >= ZMQ_PUBLISHERS_PER_MOCKER) {
                            Check::Done(listeners)
                        } else {
                            Check::NotYet(format!(
                                "publishers beyond loopback per worker: {counts:?}"
                            ))
                        })
                    }
                })
                .await?;
            let outside = beyond_loopback(&listeners);
            for (i, pids) in worker_pids.iter().enumerate() {
                let n = outside.iter().filter(|l| pids.contains(&l.pid)).count();
                assert_eq!(
                    n, ZMQ_PUBLISHERS_PER_MOCKER,
                    "worker {i}: the known finding is exactly 4 ZMQ publishers: {outside:#?}"
                );
            }
            let unexplained: Vec<_> = outside
                .iter()
                .filter(|l| !worker_pids.iter().flatten().any(|p| *p == l.pid))
                .collect();
            assert!(
                unexplained.is_empty(),
                "new non-loopback listeners: {unexplained:#?}"
            );
            assert!(
                outside.iter().all(|l| l.addr.ip().is_unspecified()),
                "{outside:#?}"
            );
            Ok(())
        });
}
