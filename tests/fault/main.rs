//! The fault tier: kills, stalls, restarts and cancellations under load,
//! everything real. Every test that runs load prints its sent / completed /
//! failed / lost counts; lost must always be 0.

mod cancellation;
mod harness;
mod services;
mod workers;

use testbed_load::LoadReport;

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
