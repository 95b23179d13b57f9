//! SGLang (`python -m dynamo.sglang`) on one GPU.

use testbed_dynamo::{SglangOptions, WorkerSpec};

use super::families;

fn engine() -> WorkerSpec {
    WorkerSpec::Sglang(SglangOptions::gpu())
}

#[test]
fn serves_repeats_and_cancels() {
    families::one_worker(engine());
}

#[test]
fn kv_routing_keeps_a_shared_prefix_on_one_worker() {
    families::two_workers(engine());
}
