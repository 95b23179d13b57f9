//! TensorRT-LLM (`python -m dynamo.trtllm`, PyTorch backend) on one GPU.

use testbed_dynamo::{TrtllmOptions, WorkerSpec};

use super::families;

fn engine() -> WorkerSpec {
    WorkerSpec::Trtllm(TrtllmOptions::gpu())
}

#[test]
fn serves_repeats_and_cancels() {
    families::one_worker(engine());
}

#[test]
fn kv_routing_keeps_a_shared_prefix_on_one_worker() {
    families::two_workers(engine());
}
