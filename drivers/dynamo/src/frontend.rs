//! `python -m dynamo.frontend`: the OpenAI-compatible HTTP entry point and
//! router, on a leased loopback port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testbed_harness::{retry_on_port_conflict, ManagedProcess, PortLease, Probe, ProcessSpec};

use crate::client::OpenAiClient;
use crate::planes::Planes;

/// How the frontend picks a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouterMode {
    /// Strict rotation.
    #[default]
    RoundRobin,
    /// Uniformly random.
    Random,
    /// KV-cache aware: prefers the worker holding the prompt's prefix.
    Kv,
}

impl RouterMode {
    /// The `--router-mode` value.
    pub fn as_arg(self) -> &'static str {
        match self {
            RouterMode::RoundRobin => "round-robin",
            RouterMode::Random => "random",
            RouterMode::Kv => "kv",
        }
    }
}

/// Busy thresholds: above them the frontend rejects new requests (only
/// effective in KV mode in Dynamo 1.6.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BusyThreshold {
    /// `--active-decode-blocks-threshold` (fraction 0–1).
    pub active_decode_blocks: f64,
    /// `--active-prefill-tokens-threshold`.
    pub active_prefill_tokens: u64,
    /// The status of a rejection (`DYN_HTTP_OVERLOAD_STATUS_CODE`; Dynamo's
    /// default is 529).
    pub status: u16,
}

/// Frontend settings.
#[derive(Debug, Clone, Default)]
pub struct FrontendOptions {
    /// Router mode.
    pub router_mode: RouterMode,
    /// How often a stream may move to another worker when its worker dies.
    pub migration_limit: u32,
    /// Only serve workers of this namespace.
    pub namespace: Option<String>,
    /// Reject requests above these thresholds.
    pub busy: Option<BusyThreshold>,
    /// More arguments, verbatim.
    pub extra_args: Vec<String>,
}

/// A running frontend.
#[derive(Debug)]
pub struct Frontend {
    process: ManagedProcess,
    port: PortLease,
    client: OpenAiClient,
}

impl Frontend {
    /// Starts a frontend with `python` (the Dynamo env's), logging into
    /// `dir`; ready when `/live` answers.
    pub async fn start(
        python: &Path,
        dir: &Path,
        name: &str,
        planes: &Planes,
        options: &FrontendOptions,
    ) -> anyhow::Result<Frontend> {
        retry_on_port_conflict(name, || async {
            let port = PortLease::allocate_for(name)?;
            let mut spec = ProcessSpec::new(name, python, dir)
                .args([
                    "-m",
                    "dynamo.frontend",
                    "--http-host",
                    "127.0.0.1",
                    "--http-port",
                    &port.port().to_string(),
                ])
                .args([
                    "--router-mode",
                    options.router_mode.as_arg(),
                    "--discovery-backend",
                    planes.discovery_backend(),
                ])
                .args([
                    "--event-plane",
                    planes.event_plane(),
                    "--migration-limit",
                    &options.migration_limit.to_string(),
                ])
                .args(&options.extra_args)
                .stop_grace(Duration::from_secs(10));
            if let Some(ns) = &options.namespace {
                spec = spec.args(["--namespace", ns]);
            }
            if let Some(busy) = &options.busy {
                spec = spec
                    .args([
                        "--active-decode-blocks-threshold",
                        &busy.active_decode_blocks.to_string(),
                    ])
                    .args([
                        "--active-prefill-tokens-threshold",
                        &busy.active_prefill_tokens.to_string(),
                    ])
                    .env("DYN_HTTP_OVERLOAD_STATUS_CODE", busy.status.to_string());
            }
            for (k, v) in planes.env(dir, name) {
                spec = spec.env(k, v);
            }
            let mut process = ManagedProcess::spawn(spec)?;
            let base = format!("http://127.0.0.1:{}", port.port());
            process
                .wait_ready(
                    &Probe::http_ok(format!("{base}/live")),
                    Duration::from_secs(60),
                )
                .await?;
            Ok(Frontend {
                process,
                port,
                client: OpenAiClient::new(base),
            })
        })
        .await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        self.client.base()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port.port()
    }

    /// An OpenAI client of it.
    pub fn client(&self) -> &OpenAiClient {
        &self.client
    }

    /// Its Prometheus endpoint.
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.url())
    }

    /// The process, for signals and logs.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// The log file.
    pub fn log(&self) -> PathBuf {
        self.process.log_path().to_owned()
    }
}
