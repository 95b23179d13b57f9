//! Dynamo's simulated engine (`python -m dynamo.mocker`): CPU only, random
//! token ids in [1000, 2000), a simulated KV cache and timing.

use std::time::Duration;

use super::{optional, pairs};
use crate::engine::{Disaggregation, Engine};

/// The mocker's description.
pub const ENGINE: Engine = Engine {
    name: "mocker",
    module: "dynamo.mocker",
    env: "dynamo",
    model_flag: "--model-path",
    name_flag: "--model-name",
    startup_timeout: Duration::from_secs(60),
    stop_grace: Duration::from_secs(10),
};

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

impl MockerOptions {
    /// The engine's arguments.
    pub fn engine_args(&self) -> Vec<String> {
        [
            pairs(&[
                ("--speedup-ratio", self.speedup_ratio.to_string()),
                ("--block-size", self.block_size.to_string()),
            ]),
            optional("--num-gpu-blocks-override", self.num_gpu_blocks),
            optional("--disaggregation-mode", self.disaggregation.as_arg()),
            optional("--endpoint", self.endpoint.as_deref()),
            self.extra_args.clone(),
        ]
        .concat()
    }
}
