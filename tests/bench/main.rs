//! The bench tier. One module per family of the seed: the whole benchmark
//! path against a real topology, the generator measured against a loopback
//! server of known delays, and the comparison of runs.

mod compare;
mod generator;
mod routers;
mod smoke;
