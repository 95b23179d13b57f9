//! The real Dynamo, driven from Rust: the tiny model the testbed generates,
//! the engines as data, typed launchers for the frontend and workers,
//! topologies (a test's own, or shared by a run's tests), and Prometheus
//! metrics. Clients come from `testbed-load`.

pub mod deployment;
pub mod engine;
pub mod engines;
pub mod frontend;
pub mod metrics;
pub mod model;
pub mod planes;
pub mod router;
pub mod shared;
pub mod stacks;
pub mod startup;
pub mod topology;
pub mod worker;

pub use deployment::Deployment;
pub use engine::{Disaggregation, Engine, WorkerSpec};
pub use engines::mocker::MockerOptions;
pub use engines::sglang::SglangOptions;
pub use engines::trtllm::TrtllmOptions;
pub use engines::vllm::VllmOptions;
pub use frontend::{BusyThreshold, Frontend, FrontendOptions, RouterMode};
pub use metrics::Metrics;
pub use model::TinyModel;
pub use router::StandaloneRouter;
pub use shared::SharedStack;
pub use testbed_load::OpenAiClient;
pub use topology::{DiscoveryKind, EventPlaneKind, RequestPlaneKind, Topology, TopologyBuilder};
pub use worker::Worker;
