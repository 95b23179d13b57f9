//! The fault tier: kills, stalls, restarts and cancellations under load,
//! everything real. Every test that runs load prints its sent / completed /
//! failed / lost counts; lost must always be 0.

mod cancellation;
mod harness;
mod hosts;
mod services;
mod workers;

use std::time::Duration;

use testbed_dynamo::Topology;
use testbed_load::{Load, LoadReport, LoadSpec};

/// Starts `clients` concurrent chat loops on the topology's `tiny` model for
/// `secs` seconds.
pub fn load_on(t: &Topology, clients: usize, secs: u64) -> Load {
    Load::start(LoadSpec::new(
        t.frontend.url(),
        "tiny",
        clients,
        Duration::from_secs(secs),
    ))
}

/// [`check_nothing_lost`], and no request failed either.
pub fn check_none_failed(what: &str, report: &LoadReport) {
    check_nothing_lost(what, report);
    assert_eq!(report.failed_total(), 0, "{what}: {}", report.summary());
}

/// Prints the load's counts (nextest shows them) and asserts nothing was
/// lost.
pub fn check_nothing_lost(what: &str, report: &LoadReport) {
    println!("{what}: {}", report.summary());
    assert!(report.sent > 0, "{what}: the load sent nothing");
    assert_eq!(
        report.lost,
        0,
        "{what}: requests lost: {}",
        report.summary()
    );
}
