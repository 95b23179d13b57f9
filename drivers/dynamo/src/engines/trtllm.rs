//! TensorRT-LLM (`python -m dynamo.trtllm`, PyTorch backend), GPU only.

use std::time::Duration;

use super::{pairs, switch};
use crate::engine::Engine;

/// TensorRT-LLM compiles kernels on first use: Dynamo's own tests allow
/// 300 s.
pub const ENGINE: Engine = Engine {
    name: "trtllm",
    module: "dynamo.trtllm",
    env: "trtllm",
    model_flag: "--model",
    name_flag: "--served-model-name",
    startup_timeout: Duration::from_secs(300),
    stop_grace: Duration::from_secs(20),
};

/// The TensorRT-LLM engine's settings.
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

    /// The engine's arguments.
    pub fn engine_args(&self) -> Vec<String> {
        [
            pairs(&[
                ("--max-seq-len", self.max_seq_len.to_string()),
                ("--max-batch-size", self.max_batch_size.to_string()),
                ("--max-num-tokens", self.max_num_tokens.to_string()),
                (
                    "--free-gpu-memory-fraction",
                    self.free_gpu_memory_fraction.to_string(),
                ),
                ("--kv-block-size", self.kv_block_size.to_string()),
                ("--tensor-parallel-size", "1".into()),
            ]),
            switch("--publish-metrics", true),
            switch("--publish-kv-events", self.kv_events),
            self.extra_args.clone(),
        ]
        .concat()
    }
}
