//! A real etcd on loopback ports (or each member on a host of its own, see
//! [`EtcdPorts::placed`]): a single node or an N-member cluster (3 for HA
//! tests), with member faults (stop, kill, start again with its data)
//! and helpers to list and watch keys — how tests see what Dynamo registers.
//!
//! Ready means etcd-client's status call on the member's own endpoint names
//! a raft leader.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use etcd_client::{Client, GetOptions, WatchOptions};
use testbed_harness::hosts::Placement;
use testbed_harness::shared::Started;
use testbed_harness::{
    retry_on_port_conflict, ManagedProcess, PortLease, Probe, ProcessError, ProcessSpec,
    TestContext,
};

/// How long members may take to elect a leader.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Raft timing: etcd's defaults (100 ms / 1 s, randomized) cost a second of
/// waiting per start; these are fast yet stable on a loaded 2-core machine.
#[derive(Debug, Clone, Copy)]
struct RaftTiming {
    heartbeat_ms: u32,
    election_ms: u32,
}

/// One member of a cluster.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: PortLease,
    peer_port: PortLease,
    placement: Placement,
    data_dir: PathBuf,
    process: Option<ManagedProcess>,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://{}:{}", self.placement.addr, self.client_port.port())
    }

    fn peer_url(&self) -> String {
        format!("http://{}:{}", self.placement.addr, self.peer_port.port())
    }
}

/// The ports of a cluster's members, leased before it starts so that its
/// endpoints can be handed out first (see [`EtcdCluster::start_on`]).
#[derive(Debug)]
pub struct EtcdPorts {
    /// Each member: its name, client port and peer port.
    members: Vec<(String, PortLease, PortLease)>,
    /// Where each member runs (loopback unless [`EtcdPorts::placed`]).
    placements: Vec<Placement>,
}

impl EtcdPorts {
    /// Leases the ports of `n` members named `<name>-<i>` (or `<name>` for
    /// one).
    pub fn lease(name: &str, n: usize) -> Result<EtcdPorts, ProcessError> {
        if n == 0 {
            return Err(ProcessError::Setup {
                name: name.to_owned(),
                reason: "an etcd cluster needs at least one member, got 0".into(),
            });
        }
        let mut members = Vec::new();
        for i in 0..n {
            let member = if n == 1 {
                name.to_owned()
            } else {
                format!("{name}-{i}")
            };
            let client = PortLease::allocate_for(&member)?;
            let peer = PortLease::allocate_for(&member)?;
            members.push((member, client, peer));
        }
        Ok(EtcdPorts {
            placements: vec![Placement::loopback(); members.len()],
            members,
        })
    }

    /// The members' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|(name, _, _)| name.clone())
            .collect()
    }

    /// Runs member `i` where `placements[i]` says (a host of its own).
    pub fn placed(mut self, placements: Vec<Placement>) -> Result<EtcdPorts, ProcessError> {
        if placements.len() != self.members.len() {
            return Err(ProcessError::Setup {
                name: "etcd".into(),
                reason: format!(
                    "{} placements for {} members",
                    placements.len(),
                    self.members.len()
                ),
            });
        }
        self.placements = placements;
        Ok(self)
    }

    /// The members' client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .zip(&self.placements)
            .map(|((_, client, _), at)| format!("http://{}:{}", at.addr, client.port()))
            .collect()
    }
}

/// A running etcd cluster (a single node is a cluster of one).
#[derive(Debug)]
pub struct EtcdCluster {
    binary: PathBuf,
    log_dir: PathBuf,
    token: String,
    timing: RaftTiming,
    shared_state: Option<PathBuf>,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// A single node for the test.
    pub async fn single(ctx: &TestContext) -> anyhow::Result<EtcdCluster> {
        Self::cluster(ctx, 1).await
    }

    /// An `n`-member cluster for the test.
    pub async fn cluster(ctx: &TestContext, n: usize) -> anyhow::Result<EtcdCluster> {
        Self::start_with(ctx.dir(), "etcd", n, None).await
    }

    /// Starts `n` members named `<name>-<i>` (or `<name>` for one) whose
    /// logs and data live in `dir`; with `shared_state`, a shared thing's
    /// members (see `testbed_harness::shared`). A member whose port was
    /// taken between lease and bind makes the cluster start again on new
    /// ports.
    pub async fn start_with(
        dir: &Path,
        name: &str,
        n: usize,
        shared_state: Option<PathBuf>,
    ) -> anyhow::Result<EtcdCluster> {
        retry_on_port_conflict(name, || async {
            let ports = EtcdPorts::lease(name, n)?;
            Self::start_on(dir, ports, shared_state.clone()).await
        })
        .await
    }

    /// Starts the members `ports` names, in `dir`: the caller leased them
    /// (and may have handed out their endpoints already), so a port taken
    /// meanwhile is the caller's to retry.
    pub async fn start_on(
        dir: &Path,
        ports: EtcdPorts,
        shared_state: Option<PathBuf>,
    ) -> Result<EtcdCluster, ProcessError> {
        let binary = locate()
            .map_err(|e| ProcessError::Setup {
                name: "etcd".into(),
                reason: format!("{e:#}"),
            })?
            .path;
        let n = ports.members.len();
        let timing = if n == 1 {
            RaftTiming {
                heartbeat_ms: 10,
                election_ms: 100,
            }
        } else {
            RaftTiming {
                heartbeat_ms: 25,
                election_ms: 500,
            }
        };
        let members: Vec<Member> = ports
            .members
            .into_iter()
            .zip(ports.placements)
            .map(|((name, client_port, peer_port), placement)| Member {
                data_dir: dir.join(format!("{name}-data")),
                name,
                client_port,
                peer_port,
                placement,
                process: None,
            })
            .collect();
        // A new cluster starts empty: a data directory left by an earlier
        // cluster in the same log directory (a rerun under the same run id,
        // a retried bring-up) would bring back its members and its leased
        // keys, whose stale instances a frontend would wait out.
        for m in &members {
            if m.data_dir.is_dir() {
                std::fs::remove_dir_all(&m.data_dir).map_err(|e| ProcessError::Setup {
                    name: m.name.clone(),
                    reason: format!(
                        "cannot clear {} for a new cluster: {e}",
                        m.data_dir.display()
                    ),
                })?;
            }
        }
        let mut cluster = EtcdCluster {
            binary,
            log_dir: dir.to_owned(),
            token: format!(
                "testbed-{}-{}",
                std::process::id(),
                members[0].client_port.port()
            ),
            timing,
            shared_state,
            members,
        };
        for i in 0..n {
            cluster.spawn_member(i)?;
        }
        for i in 0..n {
            cluster.wait_member(i).await?;
        }
        Ok(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn_member(&mut self, i: usize) -> Result<(), ProcessError> {
        let initial_cluster = self.initial_cluster();
        let m = &self.members[i];
        let mut spec = ProcessSpec::new(&m.name, &self.binary, &self.log_dir)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args([
                "--listen-client-urls",
                &m.client_url(),
                "--advertise-client-urls",
                &m.client_url(),
            ])
            .args([
                "--listen-peer-urls",
                &m.peer_url(),
                "--initial-advertise-peer-urls",
                &m.peer_url(),
            ])
            .args([
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-token",
                &self.token,
            ])
            .args(["--initial-cluster-state", "new"])
            .args([
                "--heartbeat-interval",
                &self.timing.heartbeat_ms.to_string(),
            ])
            .args(["--election-timeout", &self.timing.election_ms.to_string()])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stop_grace(Duration::from_secs(5))
            .placed(&m.placement);
        if let Some(state) = &self.shared_state {
            spec = spec.shared(state);
        }
        let process = ManagedProcess::spawn(spec)?;
        self.members[i].process = Some(process);
        Ok(())
    }

    async fn wait_member(&mut self, i: usize) -> Result<(), ProcessError> {
        let url = self.members[i].client_url();
        let probe = Probe::custom(
            format!("etcd-client status of {url} naming a leader"),
            move || {
                let url = url.clone();
                async move {
                    let mut client = Client::connect([url.as_str()], None)
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = client.status().await.map_err(|e| e.to_string())?;
                    if status.leader() == 0 {
                        return Err("no leader elected yet".into());
                    }
                    Ok(())
                }
            },
        );
        let process = self.members[i]
            .process
            .as_mut()
            .expect("member was spawned");
        process.wait_ready(&probe, READY_TIMEOUT).await
    }

    /// Client URLs of the members, in order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// Client URLs of the members that run now.
    pub fn live_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.process.is_some())
            .map(Member::client_url)
            .collect()
    }

    /// The variables that point another process at this cluster
    /// (`ETCD_ENDPOINTS`, comma-separated).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("ETCD_ENDPOINTS".into(), self.endpoints().join(","))]
    }

    /// Number of members, running or not.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no member (never, once started).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// A client over every member's endpoint.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let endpoints = self.endpoints();
        Client::connect(&endpoints, None)
            .await
            .with_context(|| format!("connect to etcd at {endpoints:?}"))
    }

    /// A client of member `i` alone.
    pub async fn member_client(&self, i: usize) -> anyhow::Result<Client> {
        let url = self.members[i].client_url();
        Client::connect([url.as_str()], None)
            .await
            .with_context(|| format!("connect to etcd member at {url}"))
    }

    /// Stops member `i` (SIGTERM, grace, SIGKILL); its data stays.
    pub async fn stop_member(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].process.take() {
            p.stop().await;
        }
    }

    /// Kills member `i` with SIGKILL, as a crash would.
    pub async fn kill_member(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].process.take() {
            p.kill().await;
        }
    }

    /// Starts a stopped member again on its ports, with its data: it rejoins.
    pub async fn start_member(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.members[i].process.is_none(),
            "member {} is still running",
            self.members[i].name
        );
        self.spawn_member(i)?;
        self.wait_member(i).await?;
        Ok(())
    }

    /// Member `i`'s process, for fault injection (stall/resume).
    pub fn member_process(&mut self, i: usize) -> Option<&mut ManagedProcess> {
        self.members[i].process.as_mut()
    }

    /// Lets a shared stack's members outlive this handle; their groups.
    pub fn detach(&mut self) -> Vec<testbed_harness::ProcessGroup> {
        self.members
            .iter_mut()
            .filter_map(|m| m.process.as_mut().map(ManagedProcess::detach))
            .collect()
    }

    /// Every key under `prefix`, sorted.
    pub async fn keys(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        keys_under(&mut self.client().await?, prefix).await
    }
}

/// Every key under `prefix` through `client`, sorted.
pub async fn keys_under(client: &mut Client, prefix: &str) -> anyhow::Result<Vec<String>> {
    let resp = client
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await?;
    let mut keys: Vec<String> = resp
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    keys.sort();
    Ok(keys)
}

/// One change seen by [`KeyWatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyEvent {
    /// The key was written.
    Put(String),
    /// The key was deleted (or its lease expired).
    Delete(String),
}

/// A watch on every key under a prefix.
pub struct KeyWatch {
    stream: etcd_client::WatchStream,
}

impl KeyWatch {
    /// Watches `prefix` through `client`.
    pub async fn new(client: &mut Client, prefix: &str) -> anyhow::Result<KeyWatch> {
        let stream = client
            .watch(prefix, Some(WatchOptions::new().with_prefix()))
            .await?;
        Ok(KeyWatch { stream })
    }

    /// The next change, or an error after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<KeyEvent> {
        loop {
            let resp = tokio::time::timeout(timeout, self.stream.message())
                .await
                .with_context(|| format!("no etcd key change within {timeout:?}"))??
                .context("the etcd watch stream ended")?;
            if let Some(event) = resp.events().first() {
                let key = event
                    .kv()
                    .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                    .unwrap_or_default();
                return Ok(match event.event_type() {
                    etcd_client::EventType::Put => KeyEvent::Put(key),
                    etcd_client::EventType::Delete => KeyEvent::Delete(key),
                });
            }
        }
    }
}

/// An etcd (one member) shared by the tests of a run: started by the first
/// user (or held by `cargo xtask` for the whole tier) and stopped by the
/// last. Tests that share it keep their keys apart under
/// [`TestContext::namespace`].
#[derive(Debug)]
pub struct SharedEtcd {
    endpoints: Vec<String>,
    _lease: testbed_harness::shared::SharedLease,
}

impl SharedEtcd {
    /// Joins (or starts) the run's shared etcd.
    pub async fn acquire() -> anyhow::Result<SharedEtcd> {
        let (endpoints, lease) = testbed_harness::shared::acquire("etcd", |start| async move {
            let mut cluster =
                EtcdCluster::start_with(&start.dir, "shared-etcd", 1, Some(start.state_file))
                    .await?;
            let endpoints = cluster.endpoints().join(",");
            Ok(Started {
                stop_grace: Duration::from_secs(5),
                groups: cluster.detach(),
                value: endpoints,
            })
        })
        .await?;
        Ok(SharedEtcd {
            endpoints: endpoints.split(',').map(str::to_owned).collect(),
            _lease: lease,
        })
    }

    /// The client URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A new client.
    pub async fn client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.endpoints, None)
            .await
            .with_context(|| format!("connect to etcd at {:?}", self.endpoints))
    }
}

/// Finds the etcd binary the pins name.
pub fn locate() -> anyhow::Result<testbed_harness::tool::FoundTool> {
    testbed_harness::tool::locate("etcd")
}
