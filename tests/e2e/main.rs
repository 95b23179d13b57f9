//! The e2e tier: the real Dynamo (frontend, KV router, mocker workers) on
//! CPU, driven through the drivers and verified over HTTP, NATS and etcd.
//! One module per family of the seed.

mod anthropic;
mod disagg;
mod discovery;
mod frontend;
mod hermetic;
mod hosts;
mod metrics;
mod planner;
mod remote;
mod router;
mod router_modes;
mod standalone_router;

pub use testbed_tests::{prompt, token_count};
