//! The real Dynamo, driven from Rust: the pinned Python env, the tiny model
//! the testbed generates, typed launchers for the frontend and workers,
//! topologies, and the clients that verify behaviour (OpenAI HTTP,
//! Prometheus metrics).

pub mod pyenv;
