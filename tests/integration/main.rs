//! The integration tier: real processes, real NATS and etcd, no Dynamo.
//! One module per family.

mod etcd;
mod harness_artifacts;
mod harness_ports;
mod harness_process;
mod hosts;
mod isolated;
mod nats;
mod shared;

/// The fixture child binary built with this package.
fn fixture_child() -> std::path::PathBuf {
    testbed_tests::fixture_child!()
}
