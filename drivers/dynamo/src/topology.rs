//! Topologies: the services, a frontend and N workers, wired by one set of
//! planes. Aggregated (1 worker), N workers behind a router, or
//! disaggregated prefill + decode; discovery by etcd or files; events over
//! NATS (core or JetStream) or ZMQ.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use testbed_etcd::EtcdCluster;
use testbed_harness::TestContext;
use testbed_nats::{NatsMode, NatsServer};

use crate::client::OpenAiClient;
use crate::frontend::{Frontend, FrontendOptions, RouterMode};
use crate::model::TinyModel;
use crate::planes::{Discovery, EventPlane, Planes, RequestPlane};
use crate::pyenv::{EnvKind, PythonEnv};
use crate::worker::{Disaggregation, MockerOptions, VllmOptions, Worker, WorkerSpec};

/// Where workers register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryKind {
    /// A real etcd (lease-based).
    Etcd,
    /// Files in the test's folder; no etcd.
    File,
}

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestPlaneKind {
    /// Direct TCP.
    Tcp,
    /// Through NATS.
    Nats,
}

/// How events travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventPlaneKind {
    /// NATS, core server.
    NatsCore,
    /// NATS with JetStream enabled on the server.
    NatsJetStream,
    /// ZMQ; no NATS needed.
    Zmq,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    /// Discovery.
    pub discovery: DiscoveryKind,
    /// Request plane.
    pub request_plane: RequestPlaneKind,
    /// Event plane.
    pub event_plane: EventPlaneKind,
    /// Aggregated workers (ignored when disaggregated).
    pub workers: usize,
    /// One prefill and one decode worker instead.
    pub disaggregated: bool,
    /// Frontend settings.
    pub frontend: FrontendOptions,
    /// Mocker settings of every worker (unless `engine` is set).
    pub mocker: MockerOptions,
    /// When set, every worker runs this real engine instead of a mocker.
    pub engine: Option<WorkerSpec>,
    /// The served model name.
    pub model_name: String,
    /// etcd members (3 for HA tests), with etcd discovery.
    pub etcd_members: usize,
}

impl Default for TopologyBuilder {
    fn default() -> Self {
        TopologyBuilder {
            discovery: DiscoveryKind::Etcd,
            request_plane: RequestPlaneKind::Tcp,
            event_plane: EventPlaneKind::NatsCore,
            workers: 1,
            disaggregated: false,
            frontend: FrontendOptions::default(),
            mocker: MockerOptions::default(),
            engine: None,
            model_name: "tiny".into(),
            etcd_members: 1,
        }
    }
}

impl TopologyBuilder {
    /// One mocker worker, etcd + NATS: Dynamo's usual deployment, smallest.
    pub fn aggregated() -> Self {
        Self::default()
    }

    /// `n` workers behind the router in `mode`.
    pub fn routed(n: usize, mode: RouterMode) -> Self {
        let mut b = Self {
            workers: n,
            ..Self::default()
        };
        b.frontend.router_mode = mode;
        b
    }

    /// A prefill and a decode worker.
    pub fn disaggregated() -> Self {
        Self {
            disaggregated: true,
            workers: 2,
            ..Self::default()
        }
    }

    /// Sets discovery.
    pub fn discovery(mut self, d: DiscoveryKind) -> Self {
        self.discovery = d;
        self
    }

    /// Sets the request plane.
    pub fn request_plane(mut self, r: RequestPlaneKind) -> Self {
        self.request_plane = r;
        self
    }

    /// Sets the event plane.
    pub fn event_plane(mut self, e: EventPlaneKind) -> Self {
        self.event_plane = e;
        self
    }

    /// Runs real vLLM workers (`python -m dynamo.vllm`, from the vLLM env)
    /// with `options` instead of mockers.
    pub fn vllm(mut self, options: VllmOptions) -> Self {
        self.engine = Some(WorkerSpec::Vllm(options));
        self
    }

    /// Runs every worker with `engine` (vLLM, SGLang, TensorRT-LLM)
    /// instead of a mocker.
    pub fn engine(mut self, engine: WorkerSpec) -> Self {
        self.engine = Some(engine);
        self
    }

    /// What each worker runs, for a worker in `role`.
    pub fn worker_spec(&self, role: Disaggregation) -> anyhow::Result<WorkerSpec> {
        match &self.engine {
            None => Ok(WorkerSpec::Mocker(MockerOptions {
                disaggregation: role,
                ..self.mocker.clone()
            })),
            Some(engine) => {
                anyhow::ensure!(
                    role == Disaggregation::Aggregated,
                    "disaggregated {} workers are not supported by the testbed yet",
                    engine.engine()
                );
                Ok(engine.clone())
            }
        }
    }

    /// Sets every mocker's speedup ratio (1 = realistic timing, 100 = fast).
    pub fn speedup(mut self, ratio: f64) -> Self {
        self.mocker.speedup_ratio = ratio;
        self
    }

    /// Sets the migration limit.
    pub fn migration_limit(mut self, n: u32) -> Self {
        self.frontend.migration_limit = n;
        self
    }

    /// Starts everything and waits until the model is ready with every
    /// worker.
    pub async fn start(self, ctx: &TestContext) -> anyhow::Result<Topology> {
        let python = PythonEnv::pinned(EnvKind::Dynamo)?.require()?;
        let worker_spec = self.worker_spec(Disaggregation::Aggregated)?;
        let worker_python = PythonEnv::pinned(worker_spec.env_kind())?.require()?;
        let startup_timeout = worker_spec.startup_timeout();
        let model = TinyModel::ensure()?;
        let dir = ctx.dir().to_owned();
        let needs_nats =
            self.request_plane == RequestPlaneKind::Nats || self.event_plane != EventPlaneKind::Zmq;
        let nats = if needs_nats {
            let mode = if self.event_plane == EventPlaneKind::NatsJetStream {
                NatsMode::JetStream
            } else {
                NatsMode::Core
            };
            Some(NatsServer::start(ctx, mode).await?)
        } else {
            None
        };
        let etcd = match self.discovery {
            DiscoveryKind::Etcd => Some(EtcdCluster::cluster(ctx, self.etcd_members.max(1)).await?),
            DiscoveryKind::File => None,
        };
        let discovery = match &etcd {
            Some(e) => Discovery::Etcd(e.endpoints()),
            None => Discovery::File(ctx.subdir("discovery")?),
        };
        let nats_url = nats.as_ref().map(|n| n.url());
        let planes = Planes {
            discovery,
            request: match self.request_plane {
                RequestPlaneKind::Tcp => RequestPlane::Tcp,
                RequestPlaneKind::Nats => {
                    RequestPlane::Nats(nats_url.clone().expect("NATS started"))
                }
            },
            event: match self.event_plane {
                EventPlaneKind::Zmq => EventPlane::Zmq,
                _ => EventPlane::Nats(nats_url.expect("NATS started")),
            },
        };
        let frontend = Frontend::start(&python, &dir, "frontend", &planes, &self.frontend).await?;
        let mut topology = Topology {
            dir,
            python,
            worker_python,
            model,
            planes,
            nats,
            etcd,
            frontend,
            workers: Vec::new(),
            builder: self.clone(),
            next_worker: 0,
        };
        let roles: Vec<Disaggregation> = if self.disaggregated {
            vec![Disaggregation::Prefill, Disaggregation::Decode]
        } else {
            vec![Disaggregation::Aggregated; self.workers]
        };
        let mut spawned = Vec::new();
        for role in &roles {
            spawned.push(topology.spawn_worker(*role)?);
        }
        for w in spawned {
            let w = w.wait_started().await?;
            topology.workers.push(w);
        }
        topology
            .wait_for_model(roles.len(), startup_timeout)
            .await?;
        Ok(topology)
    }
}

/// A running deployment. Dropping it stops every process.
#[derive(Debug)]
pub struct Topology {
    dir: PathBuf,
    python: PathBuf,
    worker_python: PathBuf,
    model: TinyModel,
    planes: Planes,
    /// Its NATS server, when a plane uses NATS.
    pub nats: Option<NatsServer>,
    /// Its etcd, with etcd discovery.
    pub etcd: Option<EtcdCluster>,
    /// The frontend.
    pub frontend: Frontend,
    /// The workers, in start order.
    pub workers: Vec<Worker>,
    builder: TopologyBuilder,
    next_worker: usize,
}

impl Topology {
    fn spawn_worker(&mut self, role: Disaggregation) -> anyhow::Result<Worker> {
        let name = match role {
            Disaggregation::Aggregated => format!("worker-{}", self.next_worker),
            Disaggregation::Prefill => format!("prefill-{}", self.next_worker),
            Disaggregation::Decode => format!("decode-{}", self.next_worker),
        };
        self.next_worker += 1;
        let spec = self.builder.worker_spec(role)?;
        Ok(Worker::spawn(
            &self.worker_python,
            &self.dir,
            &name,
            &self.planes,
            &self.model,
            &self.builder.model_name,
            &spec,
        )?)
    }

    /// Starts one more aggregated worker and waits until the frontend counts
    /// it.
    pub async fn add_worker(&mut self) -> anyhow::Result<()> {
        let w = self
            .spawn_worker(Disaggregation::Aggregated)?
            .wait_started()
            .await?;
        self.workers.push(w);
        let n = self.live_workers();
        let timeout = self.startup_timeout();
        self.wait_for_model(n, timeout).await
    }

    fn startup_timeout(&self) -> Duration {
        self.builder
            .worker_spec(Disaggregation::Aggregated)
            .map(|s| s.startup_timeout())
            .unwrap_or(Duration::from_secs(60))
    }

    fn live_workers(&mut self) -> usize {
        self.workers
            .iter_mut()
            .filter_map(|w| w.process().is_running().then_some(()))
            .count()
    }

    /// Stops the frontend and starts a new one with the same settings (on a
    /// new port); waits until it has rediscovered every live worker.
    pub async fn restart_frontend(&mut self) -> anyhow::Result<()> {
        self.frontend.process().stop().await;
        self.frontend = Frontend::start(
            &self.python,
            &self.dir,
            "frontend-restarted",
            &self.planes,
            &self.builder.frontend,
        )
        .await?;
        let n = self.live_workers();
        self.wait_for_model(n, Duration::from_secs(60)).await
    }

    /// The index of a worker with a request in flight (per its own
    /// metrics), polling up to `timeout`.
    pub async fn busy_worker(&self, timeout: Duration) -> anyhow::Result<usize> {
        let started = Instant::now();
        loop {
            for (i, w) in self.workers.iter().enumerate() {
                if let Ok(m) = crate::Metrics::scrape(&w.metrics_url()).await {
                    if m.value("dynamo_component_inflight_requests", &[]) >= 1.0 {
                        return Ok(i);
                    }
                }
            }
            anyhow::ensure!(
                started.elapsed() < timeout,
                "no worker reported a request in flight within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The served model's name.
    pub fn model_name(&self) -> &str {
        &self.builder.model_name
    }

    /// The model folder.
    pub fn model(&self) -> &TinyModel {
        &self.model
    }

    /// The planes in use.
    pub fn planes(&self) -> &Planes {
        &self.planes
    }

    /// A client of the frontend.
    pub fn client(&self) -> OpenAiClient {
        self.frontend.client().clone()
    }

    /// Workers the frontend counts for the model now (0 when it is not
    /// listed).
    pub async fn ready_workers(&self) -> anyhow::Result<usize> {
        let answer = self
            .client()
            .get(&format!("/v1/models/{}/ready", self.model_name()))
            .await?;
        Ok(count_workers(&answer.json))
    }

    /// Polls `/v1/models/{model}/ready` until it reports `expected` workers.
    /// Fails at once, quoting its log, if a worker exits meanwhile.
    pub async fn wait_for_model(
        &mut self,
        expected: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last: String;
        loop {
            for w in &mut self.workers {
                if let Some(status) = w.process().exit_status() {
                    return Err(w.process().exited_early(status).into());
                }
            }
            if let Some(status) = self.frontend.process().exit_status() {
                return Err(self.frontend.process().exited_early(status).into());
            }
            match self
                .client()
                .get(&format!("/v1/models/{}/ready", self.model_name()))
                .await
            {
                Ok(answer) => {
                    if answer.json["ready"] == true && count_workers(&answer.json) == expected {
                        tracing::info!(model = self.model_name(), workers = expected, after = ?started.elapsed(), "model ready");
                        return Ok(());
                    }
                    last = format!("{} {}", answer.status, answer.text);
                }
                Err(e) => last = format!("{e:#}"),
            }
            if started.elapsed() > timeout {
                anyhow::bail!(
                    "model {} did not become ready with {expected} worker(s) within {timeout:?}; last /ready answer: {last}; logs in {}",
                    self.model_name(),
                    self.dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the frontend counts exactly `expected` workers (e.g.
    /// after a worker died), returning how long it took.
    pub async fn wait_for_worker_count(
        &self,
        expected: usize,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if self.ready_workers().await.unwrap_or(usize::MAX) == expected {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(
                started.elapsed() < timeout,
                "the frontend did not count {expected} worker(s) within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Pids of every process of the topology (services, frontend, workers,
    /// and their descendants in their groups).
    pub fn pids(&mut self) -> Vec<u32> {
        let mut pids: Vec<u32> = Vec::new();
        pids.extend(
            self.frontend
                .process()
                .group_members()
                .iter()
                .map(|s| s.pid),
        );
        for w in &mut self.workers {
            pids.extend(w.process().group_members().iter().map(|s| s.pid));
        }
        if let Some(n) = &mut self.nats {
            if let Some(p) = n.process() {
                pids.extend(p.group_members().iter().map(|s| s.pid));
            }
        }
        if let Some(e) = &mut self.etcd {
            if let Some(p) = e.member_process(0) {
                pids.extend(p.group_members().iter().map(|s| s.pid));
            }
        }
        pids
    }

    /// The worker that served a response, from its `nvext.worker_id`.
    pub fn served_by(response: &Value) -> anyhow::Result<u64> {
        response["nvext"]["worker_id"]["decode_worker_id"]
            .as_u64()
            .with_context(|| format!("no nvext.worker_id.decode_worker_id in {response}"))
    }
}

/// Sum of workers over every namespace and worker type of a `/ready` answer.
pub fn count_workers(ready: &Value) -> usize {
    let Some(namespaces) = ready["namespaces"].as_object() else {
        return 0;
    };
    namespaces
        .values()
        .filter_map(|ns| ns["worker_types"].as_object())
        .flat_map(|types| types.values())
        .filter_map(|t| t["workers"].as_u64())
        .sum::<u64>() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_answers_are_counted() {
        let cases = [
            (
                "two aggregated",
                r#"{"model":"tiny","ready":true,"namespaces":{"dynamo":{"ready":true,"worker_types":{"aggregated":{"workers":2,"needs":[]}}}}}"#,
                2,
            ),
            (
                "prefill + decode",
                r#"{"ready":true,"namespaces":{"dynamo":{"worker_types":{"prefill":{"workers":1},"decode":{"workers":1}}}}}"#,
                2,
            ),
            ("not listed", r#"{"message":"model not found"}"#, 0),
        ];
        for (name, json, expected) in cases {
            assert_eq!(
                count_workers(&serde_json::from_str(json).unwrap()),
                expected,
                "case {name}"
            );
        }
    }
}
