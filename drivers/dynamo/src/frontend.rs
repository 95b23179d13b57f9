//! `python -m dynamo.frontend`: the OpenAI-compatible HTTP entry point and
//! router, on a leased loopback port.

use std::path::PathBuf;
use std::time::Duration;

use testbed_harness::pyenv::PythonEnv;
use testbed_harness::{
    retry_on_port_conflict, ManagedProcess, PortLease, Probe, ProcessError, ProcessSpec,
};
use testbed_load::OpenAiClient;

use crate::planes::Site;

/// How the frontend picks a worker: every `--router-mode` Dynamo 1.6.1
/// accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum RouterMode {
    /// Strict rotation.
    #[default]
    RoundRobin,
    /// Uniformly random.
    Random,
    /// The less busy of two random workers.
    PowerOfTwo,
    /// KV-cache aware: prefers the worker holding the prompt's prefix.
    Kv,
    /// The worker the request names (header or `nvext`).
    Direct,
    /// The worker with the fewest requests in flight.
    LeastLoaded,
    /// Weighted by each worker's device.
    DeviceAwareWeighted,
}

impl RouterMode {
    /// Every mode.
    pub const ALL: [RouterMode; 7] = [
        RouterMode::RoundRobin,
        RouterMode::Random,
        RouterMode::PowerOfTwo,
        RouterMode::Kv,
        RouterMode::Direct,
        RouterMode::LeastLoaded,
        RouterMode::DeviceAwareWeighted,
    ];

    /// The `--router-mode` value.
    pub fn as_arg(self) -> &'static str {
        match self {
            RouterMode::RoundRobin => "round-robin",
            RouterMode::Random => "random",
            RouterMode::PowerOfTwo => "power-of-two",
            RouterMode::Kv => "kv",
            RouterMode::Direct => "direct",
            RouterMode::LeastLoaded => "least-loaded",
            RouterMode::DeviceAwareWeighted => "device-aware-weighted",
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
    /// Environment variables on top of the planes' (Dynamo settings that
    /// have no flag, e.g. `DYN_HTTP_BACKEND_STREAM_TIMEOUT_SECS`).
    pub env: Vec<(String, String)>,
}

impl FrontendOptions {
    /// The frontend's arguments after its HTTP host and port.
    pub fn args(&self, site: &Site<'_>) -> Vec<String> {
        let mut args: Vec<String> = [
            "--router-mode",
            self.router_mode.as_arg(),
            "--discovery-backend",
            site.planes.discovery_backend(),
            "--event-plane",
            site.planes.event_plane(),
            "--migration-limit",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.push(self.migration_limit.to_string());
        if let Some(ns) = &self.namespace {
            args.extend(["--namespace".into(), ns.clone()]);
        }
        if let Some(busy) = &self.busy {
            args.extend([
                "--active-decode-blocks-threshold".into(),
                busy.active_decode_blocks.to_string(),
                "--active-prefill-tokens-threshold".into(),
                busy.active_prefill_tokens.to_string(),
            ]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// A running frontend.
#[derive(Debug)]
pub struct Frontend {
    process: ManagedProcess,
    port: PortLease,
    client: OpenAiClient,
}

impl Frontend {
    /// The Dynamo env's interpreter, which runs every frontend.
    pub fn python() -> anyhow::Result<PathBuf> {
        PythonEnv::named("dynamo")?.require()
    }

    /// Spawns a frontend with `python` (see [`Frontend::python`]) without
    /// waiting; see [`Frontend::wait_live`].
    pub fn spawn(
        site: &Site<'_>,
        name: &str,
        options: &FrontendOptions,
        python: &std::path::Path,
    ) -> Result<Frontend, ProcessError> {
        let port = PortLease::allocate_for(name)?;
        let at = site.placement(name);
        let mut spec = ProcessSpec::new(name, python, site.dir)
            .args([
                "-m",
                "dynamo.frontend",
                "--http-host",
                &at.host(),
                "--http-port",
            ])
            .arg(port.port().to_string())
            .args(options.args(site))
            .stop_grace(Duration::from_secs(10))
            .envs(site.planes.env(site.dir, name, &at))
            .placed(&at);
        spec = spec.envs(options.env.iter().map(|(k, v)| (k, v)));
        if let Some(busy) = &options.busy {
            spec = spec.env("DYN_HTTP_OVERLOAD_STATUS_CODE", busy.status.to_string());
        }
        if let Some(state) = site.shared_state {
            spec = spec.shared(state);
        }
        let process = ManagedProcess::spawn(spec)?;
        let client = OpenAiClient::new(format!("http://{}:{}", at.addr, port.port()));
        Ok(Frontend {
            process,
            port,
            client,
        })
    }

    /// Waits until `/live` answers, watching the process.
    pub async fn wait_live(&mut self) -> Result<(), ProcessError> {
        let probe = Probe::http_ok(format!("{}/live", self.url()));
        self.process
            .wait_ready(&probe, Duration::from_secs(60))
            .await
    }

    /// Starts a frontend and waits until it is live, on another port if its
    /// own was taken meanwhile.
    pub async fn start(
        site: &Site<'_>,
        name: &str,
        options: &FrontendOptions,
    ) -> anyhow::Result<Frontend> {
        let python = Frontend::python()?;
        retry_on_port_conflict(name, || async {
            let mut frontend = Frontend::spawn(site, name, options, &python)?;
            frontend.wait_live().await?;
            Ok(frontend)
        })
        .await
    }

    /// `http://ADDRESS:PORT`.
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

    /// The process, read-only.
    pub fn process_ref(&self) -> &ManagedProcess {
        &self.process
    }

    /// The log file.
    pub fn log(&self) -> PathBuf {
        self.process.log_path().to_owned()
    }

    /// Lets a shared stack's frontend outlive this handle.
    pub fn detach(&mut self) -> testbed_harness::ProcessGroup {
        self.process.detach()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "clap")]
    #[test]
    fn command_line_names_are_dynamos() {
        use clap::ValueEnum;
        for mode in RouterMode::ALL {
            assert_eq!(mode.to_possible_value().unwrap().get_name(), mode.as_arg());
        }
    }

    #[test]
    fn every_mode_is_listed_once() {
        let mut names: Vec<&str> = RouterMode::ALL.iter().map(|m| m.as_arg()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 7);
    }
}
