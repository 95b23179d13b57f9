//! Topologies: the services, a frontend and N workers, wired by one set of
//! planes. Aggregated (1 worker), N workers behind a router, or
//! disaggregated prefill + decode; discovery by etcd or files; events over
//! NATS (core or JetStream) or ZMQ; workers on any engine.
//!
//! Everything that can start at once does: NATS and etcd together, then
//! the frontend and every worker together; readiness is the model listed
//! with every worker, watched while every process is. Dropping a topology
//! stops all of its process groups at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use testbed_etcd::{EtcdCluster, EtcdPorts};
use testbed_harness::hosts::{HostNetwork, Placement};
use testbed_harness::poll::{check, Check, Poll};
use testbed_harness::{group, PortLease, ProcessError, ProcessGroup, TestContext};
use testbed_load::OpenAiClient;
use testbed_nats::{NatsMode, NatsServer};

use crate::engine::Disaggregation;
use crate::engine::WorkerSpec;
use crate::engines::mocker::MockerOptions;
use crate::engines::vllm::VllmOptions;
use crate::frontend::{BusyThreshold, Frontend, FrontendOptions, RouterMode};
use crate::model::TinyModel;
use crate::planes::{Discovery, EventPlane, Planes, RequestPlane, Site};
use crate::router::StandaloneRouter;
use crate::worker::Worker;

/// How often readiness is looked at while a topology starts.
const READY_POLL: Duration = Duration::from_millis(10);

/// The longest grace a topology's teardown grants: a test's teardown does
/// not wait on a slow graceful shutdown (tests of graceful shutdown signal
/// the process themselves).
const TEARDOWN_GRACE: Duration = Duration::from_secs(3);

/// Where workers register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum DiscoveryKind {
    /// A real etcd (lease-based).
    Etcd,
    /// Files in the test's folder; no etcd.
    File,
}

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RequestPlaneKind {
    /// Direct TCP.
    Tcp,
    /// Through NATS.
    Nats,
}

/// How events travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EventPlaneKind {
    /// NATS, core server.
    #[cfg_attr(feature = "clap", value(name = "nats"))]
    NatsCore,
    /// NATS with JetStream enabled on the server.
    #[cfg_attr(feature = "clap", value(name = "jetstream"))]
    NatsJetStream,
    /// ZMQ; no NATS needed.
    Zmq,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    discovery: DiscoveryKind,
    request_plane: RequestPlaneKind,
    event_plane: EventPlaneKind,
    workers: usize,
    disaggregated: bool,
    frontend: FrontendOptions,
    mocker: MockerOptions,
    engine: Option<WorkerSpec>,
    model_name: String,
    /// Workers of other models behind the same frontend.
    others: Vec<(String, WorkerSpec)>,
    etcd_members: usize,
    /// Every process on a host of its own (see [`TopologyBuilder::on_hosts`]).
    on_hosts: bool,
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
            others: Vec::new(),
            etcd_members: 1,
            on_hosts: false,
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
        Self::default().workers(n).router_mode(mode)
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

    /// Sets the number of aggregated workers.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// How many workers of the main model it starts.
    pub fn worker_count(&self) -> usize {
        if self.disaggregated {
            2
        } else {
            self.workers
        }
    }

    /// Sets the frontend's router mode.
    pub fn router_mode(mut self, mode: RouterMode) -> Self {
        self.frontend.router_mode = mode;
        self
    }

    /// Sets the migration limit.
    pub fn migration_limit(mut self, n: u32) -> Self {
        self.frontend.migration_limit = n;
        self
    }

    /// Makes the frontend reject requests above `busy`.
    pub fn busy(mut self, busy: BusyThreshold) -> Self {
        self.frontend.busy = Some(busy);
        self
    }

    /// Adds arguments to the frontend's command line.
    pub fn frontend_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.frontend
            .extra_args
            .extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets every mocker's settings.
    pub fn mocker(mut self, options: MockerOptions) -> Self {
        self.mocker = options;
        self
    }

    /// Sets every mocker's speedup ratio (1 = realistic timing, 100 = fast).
    pub fn speedup(mut self, ratio: f64) -> Self {
        self.mocker.speedup_ratio = ratio;
        self
    }

    /// Runs real vLLM workers with `options` instead of mockers.
    pub fn vllm(self, options: VllmOptions) -> Self {
        self.engine(WorkerSpec::Vllm(options))
    }

    /// Runs every worker with `engine` instead of a mocker.
    pub fn engine(mut self, engine: WorkerSpec) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Sets the served model name.
    pub fn model_name(mut self, name: &str) -> Self {
        self.model_name = name.to_owned();
        self
    }

    /// Adds a worker serving another model, `model_name`, behind the same
    /// frontend (in its own Dynamo namespace, which `spec` names).
    pub fn other_model(mut self, model_name: &str, spec: WorkerSpec) -> Self {
        self.others.push((model_name.to_owned(), spec));
        self
    }

    /// Sets the etcd cluster's size (3 for HA tests).
    pub fn etcd_members(mut self, n: usize) -> Self {
        self.etcd_members = n.max(1);
        self
    }

    /// Sets an environment variable of the frontend (a Dynamo setting with
    /// no flag).
    pub fn frontend_env(mut self, key: &str, value: &str) -> Self {
        self.frontend.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Puts NATS, each etcd member, the frontend and each worker on a host
    /// of its own (a network namespace, see [`testbed_harness::hosts`]),
    /// each named like its process, talking over host addresses; the test
    /// reaches them from its own namespace. Needs `CAP_NET_ADMIN`.
    pub fn on_hosts(mut self) -> Self {
        self.on_hosts = true;
        self
    }

    /// The names of the workers' processes, in start order.
    fn worker_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .roles()
            .iter()
            .enumerate()
            .map(|(i, role)| match role {
                Disaggregation::Aggregated => format!("worker-{i}"),
                Disaggregation::Prefill => format!("prefill-{i}"),
                Disaggregation::Decode => format!("decode-{i}"),
            })
            .collect();
        names.extend(
            self.others
                .iter()
                .enumerate()
                .map(|(i, (model_name, _))| format!("{model_name}-{i}")),
        );
        names
    }

    /// What each worker runs, for a worker in `role`.
    fn worker_spec(&self, role: Disaggregation) -> anyhow::Result<WorkerSpec> {
        match &self.engine {
            None => Ok(WorkerSpec::Mocker(MockerOptions {
                disaggregation: role,
                ..self.mocker.clone()
            })),
            Some(WorkerSpec::Vllm(options)) if role != Disaggregation::Aggregated => {
                Ok(WorkerSpec::Vllm(VllmOptions {
                    disaggregation: Some(role),
                    ..options.clone()
                }))
            }
            Some(engine) => {
                anyhow::ensure!(
                    role == Disaggregation::Aggregated,
                    "disaggregated {} workers are not supported by the testbed yet",
                    engine.engine().name
                );
                Ok(engine.clone())
            }
        }
    }

    fn roles(&self) -> Vec<Disaggregation> {
        if self.disaggregated {
            vec![Disaggregation::Prefill, Disaggregation::Decode]
        } else {
            vec![Disaggregation::Aggregated; self.workers]
        }
    }

    /// Starts everything in the test's folder and waits until the model is
    /// ready with every worker.
    pub async fn start(self, ctx: &TestContext) -> anyhow::Result<Topology> {
        self.start_in(ctx.dir().to_owned(), None).await
    }

    /// Runs a test (see [`testbed_harness::run_test`]) whose body gets this
    /// topology, started in the test's folder, and the test's context. The
    /// topology stops when the body drops it or returns.
    pub fn test<F, Fut>(self, body: F)
    where
        F: FnOnce(Topology, TestContext) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        testbed_harness::run_test(|ctx| async move {
            let topology = self.start(&ctx).await?;
            body(topology, ctx).await
        });
    }

    /// Starts everything in `dir`; with `shared_state`, every process is a
    /// shared stack's (see [`crate::shared`]). A service whose port was
    /// taken between lease and bind makes the whole bring-up start again.
    pub(crate) async fn start_in(
        self,
        dir: PathBuf,
        shared_state: Option<PathBuf>,
    ) -> anyhow::Result<Topology> {
        let mut attempt = 0;
        loop {
            match self.clone().bring_up(&dir, shared_state.as_deref()).await {
                Err(BringUp::PortConflict(e)) if attempt < 2 => {
                    attempt += 1;
                    tracing::warn!(error = %e, "a service's port was taken between lease and bind; starting again on new ports");
                }
                Err(BringUp::PortConflict(e)) => return Err(e.into()),
                Err(BringUp::Failed(e)) => return Err(e),
                Ok(topology) => return Ok(topology),
            }
        }
    }

    /// One bring-up. Dynamo's processes spend their first ~0.4 s importing
    /// Python, and retry NATS and etcd until they answer, so they are
    /// spawned with the services rather than after them (the services'
    /// ports are leased first): the services' start leaves the critical
    /// path.
    async fn bring_up(self, dir: &Path, shared_state: Option<&Path>) -> Result<Topology, BringUp> {
        let started = Instant::now();
        let python = Frontend::python()?;
        let roles = self.roles();
        let specs = roles
            .iter()
            .map(|r| self.worker_spec(*r))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let startup_timeout = specs
            .iter()
            .chain(self.others.iter().map(|(_, spec)| spec))
            .map(|s| s.engine().startup_timeout)
            .max()
            .unwrap_or(Duration::from_secs(60));
        let model = TinyModel::ensure()?;

        let needs_nats =
            self.request_plane == RequestPlaneKind::Nats || self.event_plane != EventPlaneKind::Zmq;
        let nats_port = match needs_nats {
            true => Some(PortLease::allocate_for("nats").map_err(anyhow::Error::from)?),
            false => None,
        };
        let etcd_ports = match self.discovery {
            DiscoveryKind::Etcd => {
                Some(EtcdPorts::lease("etcd", self.etcd_members).map_err(anyhow::Error::from)?)
            }
            DiscoveryKind::File => None,
        };
        let hosts = match self.on_hosts {
            false => None,
            true => {
                let mut names: Vec<String> = Vec::new();
                if nats_port.is_some() {
                    names.push("nats".into());
                }
                if let Some(ports) = &etcd_ports {
                    names.extend(ports.names());
                }
                names.push("frontend".into());
                names.extend(self.worker_names());
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                Some(HostNetwork::create(dir, &names)?)
            }
        };
        let placement = |name: &str| match &hosts {
            Some(h) => h.host(name).map(|h| h.placement.clone()),
            None => Ok(Placement::loopback()),
        };
        let etcd_ports = match etcd_ports {
            Some(ports) => {
                let placements = ports
                    .names()
                    .iter()
                    .map(|n| placement(n))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Some(ports.placed(placements).map_err(anyhow::Error::from)?)
            }
            None => None,
        };
        let nats_placement = placement("nats").unwrap_or_default();
        let discovery = match &etcd_ports {
            Some(ports) => Discovery::Etcd(ports.endpoints()),
            None => {
                let folder = dir.join("discovery");
                testbed_harness::Layout::ensure_dir(&folder)?;
                Discovery::File(folder)
            }
        };
        let nats_url = nats_port
            .as_ref()
            .map(|p| NatsServer::url_on(&nats_placement, p.port()));
        let planes = Planes {
            discovery,
            request: match self.request_plane {
                RequestPlaneKind::Tcp => RequestPlane::Tcp,
                RequestPlaneKind::Nats => {
                    RequestPlane::Nats(nats_url.clone().context("NATS started")?)
                }
            },
            event: match self.event_plane {
                EventPlaneKind::Zmq => EventPlane::Zmq,
                _ => EventPlane::Nats(nats_url.context("NATS started")?),
            },
        };
        let nats_mode = if self.event_plane == EventPlaneKind::NatsJetStream {
            NatsMode::JetStream
        } else {
            NatsMode::Core
        };
        let nats = async {
            match nats_port {
                Some(port) => NatsServer::start_on(
                    dir,
                    "nats",
                    nats_mode,
                    shared_state.map(Into::into),
                    port,
                    nats_placement.clone(),
                )
                .await
                .map(Some),
                None => Ok(None),
            }
        };
        let etcd = async {
            match etcd_ports {
                Some(ports) => EtcdCluster::start_on(dir, ports, shared_state.map(Into::into))
                    .await
                    .map(Some),
                None => Ok(None),
            }
        };
        let services = async {
            let (nats, etcd) = tokio::join!(nats, etcd);
            // Whichever started is stopped by its drop if the other failed.
            match (nats, etcd) {
                (Ok(n), Ok(e)) => Ok((n, e)),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        };

        let site = Site {
            dir,
            planes: &planes,
            shared_state,
            hosts: hosts.as_ref(),
        };
        let worker_names = self.worker_names();
        // The frontend and every worker start at once; readiness is the
        // model listed with every worker.
        let dynamo = || -> anyhow::Result<(Frontend, Vec<Worker>)> {
            let frontend = Frontend::spawn(&site, "frontend", &self.frontend, &python)?;
            let mut workers = Vec::new();
            let mut names = worker_names.iter();
            for spec in &specs {
                let name = names.next().expect("a name per worker");
                workers.push(Worker::spawn(&site, name, &model, &self.model_name, spec)?);
            }
            for (model_name, spec) in &self.others {
                let name = names.next().expect("a name per worker");
                workers.push(Worker::spawn(&site, name, &model, model_name, spec)?);
            }
            Ok((frontend, workers))
        };
        let (services, dynamo) = tokio::join!(services, async { dynamo() });
        let (frontend, workers) = dynamo?;
        let (nats, etcd) = match services {
            Ok(s) => s,
            Err(e) => {
                let mut groups = Vec::new();
                let mut frontend = frontend;
                groups.push(frontend.detach());
                for mut w in workers {
                    groups.push(w.detach());
                }
                group::stop_all(&groups, Duration::ZERO);
                return Err(match e.is_port_conflict() {
                    true => BringUp::PortConflict(e),
                    false => BringUp::Failed(e.into()),
                });
            }
        };
        let mut topology = Topology {
            dir: dir.to_owned(),
            python,
            model,
            planes: planes.clone(),
            nats,
            etcd,
            frontend,
            workers,
            builder: self,
            detached: false,
            hosts,
        };
        topology.wait_for_models(startup_timeout).await?;
        if topology.builder.disaggregated {
            topology.wait_until_served(startup_timeout).await?;
        }
        tracing::info!(after = ?started.elapsed(), "topology ready");
        Ok(topology)
    }
}

/// Why one bring-up failed.
enum BringUp {
    /// A service lost its port between lease and bind: start again.
    PortConflict(ProcessError),
    /// Anything else.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for BringUp {
    fn from(e: anyhow::Error) -> Self {
        BringUp::Failed(e)
    }
}

impl From<ProcessError> for BringUp {
    fn from(e: ProcessError) -> Self {
        BringUp::Failed(e.into())
    }
}

/// A running deployment. Dropping it stops every process at once.
#[derive(Debug)]
pub struct Topology {
    dir: PathBuf,
    python: PathBuf,
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
    /// Handed over to a shared stack: nothing is stopped on drop.
    detached: bool,
    /// Its hosts, with [`TopologyBuilder::on_hosts`]. Declared last: the
    /// namespaces go after the processes in them.
    hosts: Option<HostNetwork>,
}

impl Drop for Topology {
    fn drop(&mut self) {
        if !self.detached {
            // An idle stack has nothing to drain, and each Dynamo process
            // spends ~0.37 s exiting gracefully when idle (measured): kill
            // it at once. Anything in flight, an unreadable metric, or
            // Python coverage being collected (written at exit) gets the
            // graceful stop.
            let grace = if self.is_idle() && !collecting_coverage() {
                Duration::ZERO
            } else {
                TEARDOWN_GRACE
            };
            group::stop_all(&self.groups(), grace);
        }
    }
}

/// Whether the testbed collects Python coverage in this run (see
/// `cargo xtask test --coverage`).
fn collecting_coverage() -> bool {
    std::env::var_os("TESTBED_COVERAGE").is_some_and(|v| !v.is_empty())
}

impl Topology {
    /// Whether nothing is in flight: the frontend and every live worker
    /// report 0 in-flight requests (read without awaiting, for `Drop`). A
    /// worker that does not answer at all is dead and counts as idle; any
    /// other failure counts as busy.
    pub fn is_idle(&mut self) -> bool {
        const READ: Duration = Duration::from_millis(200);
        let inflight = |url: &str, name: &str| -> Option<f64> {
            let text = testbed_harness::loopback_get::get(url, READ).ok()?;
            Some(crate::Metrics::parse(&text).ok()?.value(name, &[]))
        };
        if inflight(
            &self.frontend.metrics_url(),
            "dynamo_frontend_inflight_requests",
        ) != Some(0.0)
        {
            return false;
        }
        for w in &mut self.workers {
            if !w.process().is_running() {
                continue;
            }
            if inflight(&w.metrics_url(), "dynamo_component_inflight_requests") != Some(0.0) {
                return false;
            }
        }
        true
    }

    /// Stops the frontend and starts a new one with the same settings (on a
    /// new port); waits until it has rediscovered every live worker.
    pub async fn restart_frontend(&mut self) -> anyhow::Result<()> {
        self.frontend.process().stop().await;
        let site = self.site();
        let restarted = Frontend::spawn(
            &site,
            "frontend-restarted",
            &self.builder.frontend,
            &self.python,
        )?;
        self.frontend = restarted;
        self.wait_for_models(Duration::from_secs(60)).await
    }

    /// Another frontend with the same options on the same planes (a router
    /// replica), ready once it counts every worker. It stops when dropped.
    pub async fn replica_frontend(&self, name: &str) -> anyhow::Result<Frontend> {
        let site = self.site();
        let frontend = Frontend::spawn(&site, name, &self.builder.frontend, &self.python)?;
        wait_for_count(
            frontend.client(),
            self.model_name(),
            self.workers.len(),
            Duration::from_secs(60),
        )
        .await?;
        Ok(frontend)
    }

    /// Where a process added to this topology lives: its folder and planes.
    fn site(&self) -> Site<'_> {
        Site {
            dir: &self.dir,
            planes: &self.planes,
            shared_state: None,
            hosts: self.hosts.as_ref(),
        }
    }

    /// Starts a standalone KV router (`python -m dynamo.router`) over this
    /// topology's workers, on its planes, with `args` (`--router-*` flags)
    /// added; see [`StandaloneRouter`].
    pub async fn standalone_router(
        &self,
        name: &str,
        args: &[&str],
    ) -> anyhow::Result<StandaloneRouter> {
        let site = self.site();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        StandaloneRouter::start(
            &site,
            &self.python,
            name,
            "dynamo.backend.generate",
            self.builder.mocker.block_size,
            &args,
        )
        .await
    }

    /// The index of a worker with a request in flight (per its own
    /// metrics), polling up to `timeout`.
    pub async fn busy_worker(&self, timeout: Duration) -> anyhow::Result<usize> {
        let urls: Vec<String> = self.workers.iter().map(Worker::metrics_url).collect();
        Poll::new("a worker reporting a request in flight")
            .timeout(timeout)
            .until(|| {
                let urls = urls.clone();
                async move {
                    for (i, url) in urls.iter().enumerate() {
                        if let Ok(m) = crate::Metrics::scrape(url).await {
                            if m.value("dynamo_component_inflight_requests", &[]) >= 1.0 {
                                return Ok(Check::Done(i));
                            }
                        }
                    }
                    Ok(Check::NotYet("every worker idle".into()))
                }
            })
            .await
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

    /// The topology's folder (logs).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Its hosts, with [`TopologyBuilder::on_hosts`]: to cut links and
    /// heal them.
    pub fn hosts(&self) -> anyhow::Result<&HostNetwork> {
        self.hosts
            .as_ref()
            .context("this topology runs on loopback: build it with .on_hosts()")
    }

    /// A client of the frontend.
    pub fn client(&self) -> OpenAiClient {
        self.frontend.client().clone()
    }

    /// Workers the frontend counts for the model now (0 when it is not
    /// listed).
    pub async fn ready_workers(&self) -> anyhow::Result<usize> {
        ready_workers(&self.client(), self.model_name()).await
    }

    /// Waits until every model of the topology is ready with every one of
    /// its live workers.
    pub async fn wait_for_models(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let mut expected: Vec<(String, usize)> = Vec::new();
        for w in &mut self.workers {
            if !w.process().is_running() {
                continue;
            }
            match expected.iter_mut().find(|(m, _)| m == w.model_name()) {
                Some((_, n)) => *n += 1,
                None => expected.push((w.model_name().to_owned(), 1)),
            }
        }
        for (model, n) in expected {
            self.wait_for(&model, n, timeout).await?;
        }
        Ok(())
    }

    /// Waits until a one-token chat request is answered. Dynamo 1.6.1's
    /// `/ready` counts a disaggregated model's decode worker as soon as it
    /// is discovered, but the frontend activates its prefill router a few
    /// milliseconds later (seconds under load), and a request in between is
    /// answered 503 "Service temporarily unavailable" (one e2e run in ~20).
    async fn wait_until_served(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let client = self.client();
        let model = self.model_name().to_owned();
        let dir = self.dir.display().to_string();
        let ((), after) = Poll::new(format!("a first request to the ready model {model} (logs in {dir})"))
            .timeout(timeout)
            .every(Duration::from_millis(50))
            .until_timed(|| async {
                let answer = client.chat(&model, "ready?", 1).await?;
                match answer.status {
                    200 => Ok(Check::Done(())),
                    503 => Ok(Check::NotYet(format!("503: {}", answer.text))),
                    status => anyhow::bail!(
                        "model {model} was ready but a first request was answered {status}: {}; logs in {dir}",
                        answer.text
                    ),
                }
            })
            .await?;
        tracing::info!(?after, "a first request was served");
        Ok(())
    }

    /// Waits until `/v1/models/{model}/ready` reports `expected` workers of
    /// the main model.
    pub async fn wait_for_model(
        &mut self,
        expected: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let model = self.model_name().to_owned();
        self.wait_for(&model, expected, timeout).await
    }

    /// Waits until `/v1/models/{model}/ready` reports `expected` workers.
    /// Fails at once, quoting its log, if a process exits meanwhile.
    async fn wait_for(
        &mut self,
        model: &str,
        expected: usize,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let client = self.client();
        let path = format!("/v1/models/{model}/ready");
        let mut last;
        loop {
            for w in &mut self.workers {
                if let Some(status) = w.process().exit_status() {
                    return Err(w.process().exited_early(status).into());
                }
            }
            if let Some(status) = self.frontend.process().exit_status() {
                return Err(self.frontend.process().exited_early(status).into());
            }
            match client.get(&path).await {
                Ok(answer) => {
                    if answer.json["ready"] == true && count_workers(&answer.json) == expected {
                        tracing::info!(model, workers = expected, after = ?started.elapsed(), "model ready");
                        return Ok(());
                    }
                    last = format!("{} {}", answer.status, answer.text);
                }
                Err(e) => last = format!("{e:#}"),
            }
            anyhow::ensure!(
                started.elapsed() < timeout,
                "model {model} did not become ready with {expected} worker(s) within {timeout:?}; last /ready answer: {last}; logs in {}",
                self.dir.display()
            );
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Waits until the frontend counts exactly `expected` workers (e.g.
    /// after a worker died), returning how long it took.
    pub async fn wait_for_worker_count(
        &self,
        expected: usize,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        wait_for_count(&self.client(), self.model_name(), expected, timeout).await
    }

    /// Every process group of the topology: services, frontend, workers.
    pub fn groups(&mut self) -> Vec<ProcessGroup> {
        let mut groups = vec![self.frontend.process_ref().group()];
        groups.extend(self.workers.iter().map(|w| w.process_ref().group()));
        if let Some(n) = &mut self.nats {
            groups.extend(n.process().map(|p| p.group()));
        }
        if let Some(e) = &mut self.etcd {
            for i in 0..e.len() {
                groups.extend(e.member_process(i).map(|p| p.group()));
            }
        }
        groups
    }

    /// Pids of every live process of the topology (services, frontend,
    /// workers, and their descendants in their groups).
    pub fn pids(&mut self) -> Vec<u32> {
        self.groups()
            .iter()
            .flat_map(|g| g.members())
            .map(|s| s.pid)
            .collect()
    }

    /// The worker that served a response, from its `nvext.worker_id`.
    pub fn served_by(response: &Value) -> anyhow::Result<u64> {
        response["nvext"]["worker_id"]["decode_worker_id"]
            .as_u64()
            .with_context(|| format!("no nvext.worker_id.decode_worker_id in {response}"))
    }

    /// Lets every process outlive this handle (a shared stack): returns
    /// the groups and what a client needs to reach the stack.
    pub(crate) fn detach(mut self) -> (Vec<ProcessGroup>, crate::shared::StackInfo) {
        let info = crate::shared::StackInfo {
            frontend_url: self.frontend.url().to_owned(),
            model_name: self.model_name().to_owned(),
            workers: self
                .workers
                .iter()
                .map(|w| crate::shared::WorkerInfo {
                    name: w.name().to_owned(),
                    model: w.model_name().to_owned(),
                    metrics_url: w.metrics_url(),
                    system_url: w.system_url(),
                })
                .collect(),
            planes: self.planes.clone(),
            dir: self.dir.clone(),
        };
        let mut groups = vec![self.frontend.detach()];
        groups.extend(self.workers.iter_mut().map(Worker::detach));
        if let Some(n) = &mut self.nats {
            groups.extend(n.detach());
        }
        if let Some(e) = &mut self.etcd {
            groups.extend(e.detach());
        }
        self.detached = true;
        (groups, info)
    }
}

/// Waits until `client`'s frontend counts exactly `expected` workers for
/// `model`, returning how long it took.
async fn wait_for_count(
    client: &OpenAiClient,
    model: &str,
    expected: usize,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let ((), took) = Poll::new(format!("the frontend counting {expected} worker(s)"))
        .timeout(timeout)
        .every(Duration::from_millis(50))
        .until_timed(|| async move {
            let n = ready_workers(client, model).await;
            Ok(check(n.as_ref().is_ok_and(|n| *n == expected), || {
                format!("{n:?} worker(s)")
            }))
        })
        .await?;
    Ok(took)
}

/// Workers a frontend counts for `model` now (0 when it is not listed).
pub async fn ready_workers(client: &OpenAiClient, model: &str) -> anyhow::Result<usize> {
    let answer = client.get(&format!("/v1/models/{model}/ready")).await?;
    Ok(count_workers(&answer.json))
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
