//! Workers: `python -m dynamo.mocker` now; the vLLM, SGLang and
//! TensorRT-LLM workers take the same shape (a [`WorkerSpec`] variant), so
//! a topology runs either.

use std::path::Path;
use std::time::Duration;

use testbed_harness::{ManagedProcess, PortLease, PortRange, Probe, ProcessError, ProcessSpec};

use crate::model::TinyModel;
use crate::planes::Planes;

/// Prefill/decode role of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Disaggregation {
    /// Prefill and decode in one worker.
    #[default]
    Aggregated,
    /// Prefill only.
    Prefill,
    /// Decode only.
    Decode,
}

impl Disaggregation {
    fn as_arg(self) -> &'static str {
        match self {
            Disaggregation::Aggregated => "agg",
            Disaggregation::Prefill => "prefill",
            Disaggregation::Decode => "decode",
        }
    }
}

/// The mocker engine's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MockerOptions {
    /// Simulation speed: 100 makes a token take ~0.1 ms. 0 is *not*
    /// infinite in Dynamo 1.6.1 (it behaves like 1).
    pub speedup_ratio: f64,
    /// KV block size in tokens.
    pub block_size: u32,
    /// KV blocks available (the mocker's "GPU memory").
    pub num_gpu_blocks: Option<u32>,
    /// Prefill/decode role.
    pub disaggregation: Disaggregation,
    /// `dyn://namespace.component.endpoint`, when not the default.
    pub endpoint: Option<String>,
    /// More arguments, verbatim.
    pub extra_args: Vec<String>,
}

impl Default for MockerOptions {
    fn default() -> Self {
        MockerOptions {
            speedup_ratio: 100.0,
            block_size: 16,
            num_gpu_blocks: None,
            disaggregation: Disaggregation::Aggregated,
            endpoint: None,
            extra_args: Vec::new(),
        }
    }
}

/// Which engine a worker runs.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerSpec {
    /// Dynamo's simulated engine: CPU only, random tokens.
    Mocker(MockerOptions),
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    name: String,
    process: ManagedProcess,
    system_port: PortLease,
}

impl Worker {
    /// Starts a worker serving `model` as `model_name`; returns once it is
    /// spawned and its system server answers `/health` (registration with
    /// the frontend is checked by the topology's `wait_for_model`).
    pub async fn start(
        python: &Path,
        dir: &Path,
        name: &str,
        planes: &Planes,
        model: &TinyModel,
        model_name: &str,
        spec: &WorkerSpec,
    ) -> anyhow::Result<Worker> {
        let worker = Self::spawn(python, dir, name, planes, model, model_name, spec)?;
        worker.wait_started().await
    }

    /// Spawns without waiting (to start several workers at once).
    pub fn spawn(
        python: &Path,
        dir: &Path,
        name: &str,
        planes: &Planes,
        model: &TinyModel,
        model_name: &str,
        spec: &WorkerSpec,
    ) -> Result<Worker, ProcessError> {
        // Dynamo parses the system port as a signed 16-bit integer.
        let system_port =
            PortLease::allocate_in(PortRange::DEFAULT).map_err(|e| ProcessError::NoPort {
                name: name.to_owned(),
                reason: format!("{e:#}"),
            })?;
        debug_assert!(system_port.port() <= 32767);
        let WorkerSpec::Mocker(mocker) = spec;
        let model_path = model.dir.display().to_string();
        let mut process_spec = ProcessSpec::new(name, python, dir)
            .args([
                "-m",
                "dynamo.mocker",
                "--model-path",
                &model_path,
                "--model-name",
                model_name,
            ])
            .args([
                "--speedup-ratio",
                &mocker.speedup_ratio.to_string(),
                "--block-size",
                &mocker.block_size.to_string(),
            ])
            .args(["--discovery-backend", planes.discovery_backend()])
            .stop_grace(Duration::from_secs(10))
            .env("DYN_SYSTEM_PORT", system_port.port().to_string())
            .env("DYN_SYSTEM_STARTING_HEALTH_STATUS", "ready");
        if let Some(blocks) = mocker.num_gpu_blocks {
            process_spec = process_spec.args(["--num-gpu-blocks-override", &blocks.to_string()]);
        }
        if mocker.disaggregation != Disaggregation::Aggregated {
            process_spec =
                process_spec.args(["--disaggregation-mode", mocker.disaggregation.as_arg()]);
        }
        process_spec = process_spec.args(&mocker.extra_args);
        if let Some(endpoint) = &mocker.endpoint {
            process_spec = process_spec.args(["--endpoint", endpoint]);
        }
        for (k, v) in planes.env(dir, name) {
            process_spec = process_spec.env(k, v);
        }
        let process = ManagedProcess::spawn(process_spec)?;
        Ok(Worker {
            name: name.to_owned(),
            process,
            system_port,
        })
    }

    /// Waits for the worker's system server to answer `/health`.
    pub async fn wait_started(mut self) -> anyhow::Result<Worker> {
        let probe = Probe::http_ok(format!("{}/health", self.system_url()));
        self.process
            .wait_ready(&probe, Duration::from_secs(60))
            .await?;
        Ok(self)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:SYSTEM_PORT` (health, metrics).
    pub fn system_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.system_port.port())
    }

    /// Its Prometheus endpoint.
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.system_url())
    }

    /// The process, for faults and logs.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// The process, read-only.
    pub fn process_ref(&self) -> &ManagedProcess {
        &self.process
    }
}
