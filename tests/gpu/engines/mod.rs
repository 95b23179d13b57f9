//! The backend families on real GPU engines: vLLM (CUDA build), SGLang and
//! TensorRT-LLM, each behind the real frontend with the tiny model, judged
//! through what every engine shares (the OpenAI API and Dynamo's own
//! metrics), so one family serves all three:
//!
//! - serving: models list, chat and completions, unary and streaming, exact
//!   output lengths and usage;
//! - determinism: greedy decoding repeats, and so does sampling with a
//!   fixed seed;
//! - cancellation: a client that goes away mid-stream cancels the request
//!   on the worker, and nothing stays in flight;
//! - KV routing: two workers on one GPU, requests sharing a prefix stay on
//!   one worker and hit its cache.
//!
//! Each engine's tests need its env (`TESTBED_VLLM_GPU_ENV`,
//! `TESTBED_SGLANG_ENV`, `TESTBED_TRTLLM_ENV`, see `tests/needs.toml`); the
//! frontend comes from the pinned Dynamo env.

mod families;
mod kvbm;

/// One module per engine, named as `tests/needs.toml` matches it, with the
/// same two tests.
macro_rules! engine {
    ($name:ident, $doc:literal, $spec:expr) => {
        #[doc = $doc]
        mod $name {
            use testbed_dynamo::*;

            #[test]
            fn serves_repeats_and_cancels() {
                super::families::one_worker($spec);
            }

            #[test]
            fn kv_routing_keeps_a_shared_prefix_on_one_worker() {
                super::families::two_workers($spec);
            }
        }
    };
}

engine!(
    vllm,
    "vLLM, CUDA build (`python -m dynamo.vllm`).",
    WorkerSpec::Vllm(VllmOptions::gpu())
);
engine!(
    sglang,
    "SGLang (`python -m dynamo.sglang`).",
    WorkerSpec::Sglang(SglangOptions::gpu())
);
engine!(
    trtllm,
    "TensorRT-LLM, PyTorch backend (`python -m dynamo.trtllm`).",
    WorkerSpec::Trtllm(TrtllmOptions::gpu())
);
