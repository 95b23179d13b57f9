//! Tests that start two vLLM workers (each runs alone: the profile gives
//! them both test threads).

mod migration;
mod routing;
