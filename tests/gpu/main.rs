//! The gpu tier: what needs a real NVIDIA GPU. Every test here declares
//! the need in `tests/needs.toml` (`binary(gpu)` needs `gpu`; each engine's
//! tests also need its env), so on a CPU machine `cargo xtask test --tier
//! gpu` reports each as skipped, with the reason, and exits 0. Tests run one
//! at a time (the `gpu` test group).

mod engines;
mod nvml;
