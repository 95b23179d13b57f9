//! A worker: `python -m <engine module>` from its engine's env, with the
//! model, the planes, a leased system port (health, metrics) and whatever
//! its engine needs leased (a KV events socket or port). Every engine is
//! started, probed and stopped the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use testbed_harness::pyenv::PythonEnv;
use testbed_harness::{
    Layout, ManagedProcess, PortLease, PortRange, Probe, ProcessError, ProcessSpec,
};

use crate::engine::{EngineResources, Needs, WorkerSpec};
use crate::model::TinyModel;
use crate::planes::Site;

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    name: String,
    model_name: String,
    process: ManagedProcess,
    system_port: PortLease,
    /// The address its servers listen on (loopback, or its host's).
    addr: std::net::Ipv4Addr,
    startup_timeout: Duration,
    kv_events_socket: Option<SocketFile>,
    /// Ports its engine listens on (KV events, KV transfer), held while it
    /// lives.
    _leased_ports: Vec<PortLease>,
}

/// A Unix socket's path, removed when the worker that binds it is gone.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
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

/// The engine cache of Python env `env`: in the testbed's cache, keyed
/// like the env itself.
fn env_cache_dir(env: &PythonEnv) -> std::path::PathBuf {
    let key = env
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| env.name.clone());
    Layout::from_env().cache_dir.join("engine-cache").join(key)
}

impl Worker {
    /// Spawns worker `name` serving `model` as `model_name`, without
    /// waiting (to start several workers at once).
    pub fn spawn(
        site: &Site<'_>,
        name: &str,
        model: &TinyModel,
        model_name: &str,
        spec: &WorkerSpec,
    ) -> anyhow::Result<Worker> {
        let engine = spec.engine();
        let env = PythonEnv::named(engine.env)?;
        let python = env.require()?;
        // Engines cache what they learn about a model's code (vLLM: each
        // architecture's inspection, ~19 s a start when cold) per env,
        // shared by every worker and run.
        let engine_cache = env_cache_dir(&env);
        let no_port = |e: anyhow::Error| ProcessError::NoPort {
            name: name.to_owned(),
            reason: format!("{e:#}"),
        };
        // Dynamo parses the system port as a signed 16-bit integer.
        let system_port = PortLease::allocate_in(PortRange::DEFAULT).map_err(no_port)?;
        let mut resources = EngineResources::default();
        let mut kv_events_socket_path = None;
        let mut leased_ports = Vec::new();
        for need in spec.needs() {
            match need {
                Needs::KvEventsSocket => {
                    let socket =
                        kv_events_socket(system_port.port()).map_err(anyhow::Error::msg)?;
                    resources.kv_events_endpoint = Some(format!("ipc://{}", socket.display()));
                    kv_events_socket_path = Some(SocketFile(socket));
                }
                Needs::KvEventsPort | Needs::KvTransferPort => {
                    let port = PortLease::allocate_in(PortRange::DEFAULT).map_err(no_port)?;
                    if need == Needs::KvEventsPort {
                        resources.kv_events_port = Some(port.port());
                    } else {
                        resources.kv_transfer_port = Some(port.port());
                    }
                    leased_ports.push(port);
                }
            }
        }
        let at = site.placement(name);
        let mut process_spec = ProcessSpec::new(name, &python, site.dir)
            .args(["-m", engine.module, engine.model_flag])
            .arg(&model.dir)
            .args([engine.name_flag, model_name])
            .args(["--discovery-backend", site.planes.discovery_backend()])
            .args(spec.engine_args(&resources))
            .stop_grace(engine.stop_grace)
            .env("DYN_SYSTEM_PORT", system_port.port().to_string())
            .env("DYN_SYSTEM_STARTING_HEALTH_STATUS", "ready")
            .envs(site.planes.env(site.dir, name, &at))
            .envs(spec.engine_env(
                &site.dir.join(format!("home-{name}")),
                &engine_cache,
                &resources,
            ))
            .placed(&at);
        if let Some(state) = site.shared_state {
            process_spec = process_spec.shared(state);
        }
        let process = ManagedProcess::spawn(process_spec)?;
        Ok(Worker {
            name: name.to_owned(),
            model_name: model_name.to_owned(),
            process,
            system_port,
            addr: at.addr,
            startup_timeout: engine.startup_timeout,
            kv_events_socket: kv_events_socket_path,
            _leased_ports: leased_ports,
        })
    }

    /// Waits for the worker's system server to answer `/health`.
    pub async fn wait_started(&mut self) -> anyhow::Result<()> {
        let probe = Probe::http_ok(format!("{}/health", self.system_url()));
        self.process
            .wait_ready(&probe, self.startup_timeout)
            .await?;
        Ok(())
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model it serves.
    pub fn model_name(&self) -> &str {
        &self.model_name
    }

    /// `http://ADDRESS:SYSTEM_PORT` (health, metrics).
    pub fn system_url(&self) -> String {
        format!("http://{}:{}", self.addr, self.system_port.port())
    }

    /// Its Prometheus endpoint.
    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.system_url())
    }

    /// How long it may take to come up.
    pub fn startup_timeout(&self) -> Duration {
        self.startup_timeout
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
        self.kv_events_socket.as_ref().map(|s| s.0.as_path())
    }

    /// Lets a shared stack's worker outlive this handle (see
    /// [`ManagedProcess::detach`]). Its ports are released here (a
    /// listening port is never leased again while it is bound: leases are
    /// confirmed by a bind) and its KV events socket stays.
    pub fn detach(&mut self) -> testbed_harness::ProcessGroup {
        std::mem::forget(self.kv_events_socket.take());
        self.process.detach()
    }
}

#[cfg(test)]
mod tests {
    use crate::engines::{mocker, sglang, trtllm, vllm};

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn engine_arguments_per_engine() {
        let cases: [(&str, Vec<String>, Vec<String>); 9] = [
            (
                "mocker defaults",
                mocker::MockerOptions::default().engine_args(),
                words("--speedup-ratio 100 --block-size 16"),
            ),
            (
                "mocker decode worker on its own endpoint, extra arguments last",
                mocker::MockerOptions {
                    disaggregation: crate::engine::Disaggregation::Decode,
                    endpoint: Some("dyn://ns.backend.generate".into()),
                    num_gpu_blocks: Some(64),
                    extra_args: words("--durable-kv-events"),
                    ..mocker::MockerOptions::default()
                }
                .engine_args(),
                words("--speedup-ratio 100 --block-size 16 --num-gpu-blocks-override 64 --disaggregation-mode decode --endpoint dyn://ns.backend.generate --durable-kv-events"),
            ),
            (
                "vllm on CPU, events on an ipc socket",
                vllm::VllmOptions::cpu().engine_args(Some("ipc:///s")),
                [
                    words("--dtype float32 --max-model-len 2048 --max-num-seqs 8 --enforce-eager --gpu-memory-utilization 0.1 --distributed-executor-backend uni"),
                    vec!["--kv-events-config".into(), r#"{"enable_kv_cache_events":true,"endpoint":"ipc:///s","publisher":"zmq"}"#.into()],
                ]
                .concat(),
            ),
            (
                "vllm on CPU with parsers, LoRA and structured outputs, in a namespace",
                vllm::VllmOptions {
                    kv_events: false,
                    tool_call_parser: Some("hermes".into()),
                    reasoning_parser: Some("deepseek_r1".into()),
                    lora: Some(vllm::LoraOptions { max_loras: 2, max_rank: 8 }),
                    structured_outputs: Some(serde_json::json!({"backend": "xgrammar"})),
                    namespace: Some("think".into()),
                    ..vllm::VllmOptions::cpu()
                }
                .engine_args(None),
                [
                    words("--namespace think --dtype float32 --max-model-len 2048 --max-num-seqs 8 --enforce-eager --gpu-memory-utilization 0.1 --distributed-executor-backend uni --dyn-tool-call-parser hermes --dyn-reasoning-parser deepseek_r1 --enable-lora --max-loras 2 --max-lora-rank 8"),
                    vec!["--structured-outputs-config".into(), r#"{"backend":"xgrammar"}"#.into()],
                ]
                .concat(),
            ),
            (
                "vllm embedding worker",
                vllm::VllmOptions { kv_events: false, single_process: false, embedding: true, ..vllm::VllmOptions::cpu() }.engine_args(None),
                words("--dtype float32 --max-model-len 2048 --max-num-seqs 8 --enforce-eager --gpu-memory-utilization 0.1 --embedding-worker --runner pooling --convert embed"),
            ),
            (
                "vllm on GPU without events",
                vllm::VllmOptions { kv_events: false, ..vllm::VllmOptions::gpu() }.engine_args(Some("ipc:///s")),
                words("--dtype float16 --max-model-len 512 --max-num-seqs 16 --enforce-eager --gpu-memory-utilization 0.15"),
            ),
            (
                "sglang with events on a leased port",
                sglang::SglangOptions::gpu().engine_args(Some(23456)),
                [
                    words("--dtype float16 --context-length 512 --page-size 16 --mem-fraction-static 0.15 --tp-size 1 --skip-tokenizer-init --enable-metrics --disable-cuda-graph --random-seed 0"),
                    vec!["--kv-events-config".into(), r#"{"endpoint":"tcp://*:23456","publisher":"zmq","topic":"kv-events"}"#.into()],
                ]
                .concat(),
            ),
            (
                "trtllm",
                trtllm::TrtllmOptions::gpu().engine_args(),
                words("--max-seq-len 512 --max-batch-size 16 --max-num-tokens 2048 --free-gpu-memory-fraction 0.15 --kv-block-size 32 --tensor-parallel-size 1 --publish-metrics --publish-kv-events"),
            ),
            (
                "trtllm extra arguments last",
                trtllm::TrtllmOptions { kv_events: false, extra_args: words("--trtllm.kv_cache_config.enable_block_reuse true"), ..trtllm::TrtllmOptions::gpu() }.engine_args(),
                words("--max-seq-len 512 --max-batch-size 16 --max-num-tokens 2048 --free-gpu-memory-fraction 0.15 --kv-block-size 32 --tensor-parallel-size 1 --publish-metrics --trtllm.kv_cache_config.enable_block_reuse true"),
            ),
        ];
        for (name, got, expected) in cases {
            assert_eq!(got, expected, "case {name}");
        }
    }
}
