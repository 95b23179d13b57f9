//! Tests that start one vLLM worker (two of them run at once).

mod cancellation;
mod serving;
