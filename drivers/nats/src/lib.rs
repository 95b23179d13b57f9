//! A real `nats-server` on a loopback port, core or JetStream, for tests and
//! for Dynamo's request and event planes.
//!
//! Ready means a real `async-nats` client connected (and, with JetStream,
//! read its account info). The server can be stopped, started again on the
//! same port with its JetStream data kept, and killed, for fault tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use testbed_harness::hosts::Placement;
use testbed_harness::shared::Started;
use testbed_harness::{
    retry_on_port_conflict, ManagedProcess, PortLease, Probe, ProcessError, ProcessSpec,
    TestContext,
};

/// How long a fresh server may take to accept a client (it takes ~12 ms).
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// What kind of server to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NatsMode {
    /// Core NATS: subjects, request/reply.
    #[default]
    Core,
    /// Core plus JetStream, storing into the server's store folder.
    JetStream,
}

/// A running (or stopped, to be started again) nats-server.
#[derive(Debug)]
pub struct NatsServer {
    name: String,
    mode: NatsMode,
    binary: PathBuf,
    port: PortLease,
    placement: Placement,
    log_dir: PathBuf,
    store_dir: PathBuf,
    shared_state: Option<PathBuf>,
    process: Option<ManagedProcess>,
}

impl NatsServer {
    /// Starts a server for the test, logging into its artifact folder.
    pub async fn start(ctx: &TestContext, mode: NatsMode) -> anyhow::Result<NatsServer> {
        Self::start_with(ctx.dir(), "nats", mode, None).await
    }

    /// Starts a server called `name` whose log and JetStream store live in
    /// `dir`; with `shared_state`, a shared thing's server (see
    /// `testbed_harness::shared`).
    pub async fn start_with(
        dir: &Path,
        name: &str,
        mode: NatsMode,
        shared_state: Option<PathBuf>,
    ) -> anyhow::Result<NatsServer> {
        retry_on_port_conflict(name, || async {
            let port = PortLease::allocate_for(name)?;
            Self::start_on(
                dir,
                name,
                mode,
                shared_state.clone(),
                port,
                Placement::loopback(),
            )
            .await
        })
        .await
    }

    /// Starts a server on `port` where `placement` says: the caller leased
    /// the port (and may have handed out its URL, see
    /// [`NatsServer::url_on`]), so a port taken meanwhile is the caller's to
    /// retry.
    pub async fn start_on(
        dir: &Path,
        name: &str,
        mode: NatsMode,
        shared_state: Option<PathBuf>,
        port: PortLease,
        placement: Placement,
    ) -> Result<NatsServer, ProcessError> {
        let binary = locate()
            .map_err(|e| ProcessError::Setup {
                name: name.to_owned(),
                reason: format!("{e:#}"),
            })?
            .path;
        let mut server = NatsServer {
            name: name.to_owned(),
            mode,
            binary,
            port,
            placement,
            log_dir: dir.to_owned(),
            store_dir: dir.join(format!("{name}-store")),
            shared_state,
            process: None,
        };
        server.launch().await?;
        Ok(server)
    }

    /// The URL of a server on `port` at `placement`.
    pub fn url_on(placement: &Placement, port: u16) -> String {
        format!("nats://{}:{port}", placement.addr)
    }

    async fn launch(&mut self) -> Result<(), ProcessError> {
        let mut spec = ProcessSpec::new(&self.name, &self.binary, &self.log_dir)
            .args([
                "-a",
                &self.placement.host(),
                "-p",
                &self.port.port().to_string(),
            ])
            .stop_grace(Duration::from_secs(5))
            .placed(&self.placement);
        if let Some(state) = &self.shared_state {
            spec = spec.shared(state);
        }
        if self.mode == NatsMode::JetStream {
            spec = spec.arg("-js").arg("-sd").arg(&self.store_dir);
        }
        let mut process = ManagedProcess::spawn(spec)?;
        process.wait_ready(&self.probe(), READY_TIMEOUT).await?;
        self.process = Some(process);
        Ok(())
    }

    fn probe(&self) -> Probe {
        let url = self.url();
        let jetstream = self.mode == NatsMode::JetStream;
        Probe::custom(
            format!(
                "async-nats connect to {url}{}",
                if jetstream {
                    " and JetStream account info"
                } else {
                    ""
                }
            ),
            move || {
                let url = url.clone();
                async move {
                    let client = async_nats::connect(&url).await.map_err(|e| e.to_string())?;
                    if jetstream {
                        // The raw API call: async-nats's typed account query
                        // cannot parse the answer of the pinned 2.9 server.
                        let answer = client
                            .request("$JS.API.INFO", "".into())
                            .await
                            .map_err(|e| e.to_string())?;
                        let text = String::from_utf8_lossy(&answer.payload);
                        if !text.contains("account_info_response") || text.contains("\"error\"") {
                            return Err(format!("JetStream not ready: {text}"));
                        }
                    }
                    Ok(())
                }
            },
        )
    }

    /// `nats://<address>:<port>`.
    pub fn url(&self) -> String {
        Self::url_on(&self.placement, self.port.port())
    }

    /// The server's port (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port.port()
    }

    /// The mode it runs in.
    pub fn mode(&self) -> NatsMode {
        self.mode
    }

    /// The variables that point another process at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![("NATS_SERVER".into(), self.url())]
    }

    /// A new client connection.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(self.url())
            .await
            .with_context(|| format!("connect to {}", self.url()))
    }

    /// A JetStream context on a new connection.
    pub async fn jetstream(&self) -> anyhow::Result<async_nats::jetstream::Context> {
        anyhow::ensure!(
            self.mode == NatsMode::JetStream,
            "{} runs without JetStream",
            self.name
        );
        Ok(async_nats::jetstream::new(self.client().await?))
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace period). Its
    /// port stays leased and its store stays, for [`NatsServer::start_again`].
    pub async fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop().await;
        }
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill().await;
        }
    }

    /// Starts a stopped server again on the same port, with its JetStream
    /// data.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.process.is_none(), "{} is still running", self.name);
        self.launch().await?;
        Ok(())
    }

    /// Stop then start again.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.start_again().await
    }

    /// The running process, for fault injection (stall/resume).
    pub fn process(&mut self) -> Option<&mut ManagedProcess> {
        self.process.as_mut()
    }

    /// Lets a shared stack's server outlive this handle; its group, if it
    /// runs.
    pub fn detach(&mut self) -> Option<testbed_harness::ProcessGroup> {
        self.process.as_mut().map(ManagedProcess::detach)
    }

    /// The JetStream store folder.
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }
}

/// A NATS server (JetStream enabled) shared by the tests of a run: started
/// by the first user (or held by `cargo xtask` for the whole tier) and
/// stopped by the last. Tests that share it keep their subjects apart with
/// [`TestContext::namespace`].
#[derive(Debug)]
pub struct SharedNats {
    url: String,
    _lease: testbed_harness::shared::SharedLease,
}

impl SharedNats {
    /// Joins (or starts) the run's shared server.
    pub async fn acquire() -> anyhow::Result<SharedNats> {
        let (url, lease) = testbed_harness::shared::acquire("nats", |start| async move {
            let mut server = NatsServer::start_with(
                &start.dir,
                "shared-nats",
                NatsMode::JetStream,
                Some(start.state_file),
            )
            .await?;
            let url = server.url();
            Ok(Started {
                stop_grace: Duration::from_secs(5),
                groups: server.detach().into_iter().collect(),
                value: url,
            })
        })
        .await?;
        Ok(SharedNats { url, _lease: lease })
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A new client connection.
    pub async fn client(&self) -> anyhow::Result<async_nats::Client> {
        async_nats::connect(&self.url)
            .await
            .with_context(|| format!("connect to {}", self.url))
    }
}

/// Finds the nats-server binary the pins name.
pub fn locate() -> anyhow::Result<testbed_harness::tool::FoundTool> {
    testbed_harness::tool::locate("nats-server")
}
