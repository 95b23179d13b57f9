//! SGLang (`python -m dynamo.sglang`), GPU only: every flag but Dynamo's
//! own goes to SGLang's parser, which rejects unknown ones.

use std::time::Duration;

use super::{optional, pairs, switch};
use crate::engine::Engine;

/// SGLang compiles kernels on first use: Dynamo's own tests allow 300 s.
pub const ENGINE: Engine = Engine {
    name: "sglang",
    module: "dynamo.sglang",
    env: "sglang",
    model_flag: "--model-path",
    name_flag: "--served-model-name",
    startup_timeout: Duration::from_secs(300),
    stop_grace: Duration::from_secs(20),
};

/// The SGLang engine's settings.
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

    /// The engine's arguments; `kv_events_port` is the worker's leased port
    /// when events are on.
    pub fn engine_args(&self, kv_events_port: Option<u16>) -> Vec<String> {
        let kv_events = kv_events_port.filter(|_| self.kv_events).map(|port| {
            serde_json::json!({
                "publisher": "zmq",
                "topic": "kv-events",
                "endpoint": format!("tcp://*:{port}"),
            })
            .to_string()
        });
        [
            pairs(&[
                ("--dtype", self.dtype.clone()),
                ("--context-length", self.context_length.to_string()),
                ("--page-size", self.page_size.to_string()),
                (
                    "--mem-fraction-static",
                    self.mem_fraction_static.to_string(),
                ),
                ("--tp-size", "1".into()),
            ]),
            switch("--skip-tokenizer-init", true),
            switch("--enable-metrics", true),
            switch("--disable-cuda-graph", self.disable_cuda_graph),
            optional("--random-seed", self.random_seed),
            optional("--kv-events-config", kv_events),
            self.extra_args.clone(),
        ]
        .concat()
    }
}
