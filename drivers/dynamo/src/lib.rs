//! The real Dynamo, driven from Rust: the pinned Python env, the tiny model
//! the testbed generates, typed launchers for the frontend and workers,
//! topologies, and the clients that verify behaviour (OpenAI HTTP,
//! Prometheus metrics).

pub mod client;
pub mod frontend;
pub mod load;
pub mod metrics;
pub mod model;
pub mod planes;
pub mod pyenv;
pub mod topology;
pub mod worker;

pub use client::OpenAiClient;
pub use frontend::{Frontend, FrontendOptions, RouterMode};
pub use metrics::Metrics;
pub use model::TinyModel;
pub use topology::{DiscoveryKind, EventPlaneKind, RequestPlaneKind, Topology, TopologyBuilder};
pub use worker::{MockerOptions, SglangOptions, TrtllmOptions, VllmOptions, Worker, WorkerSpec};
