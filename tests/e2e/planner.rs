//! The planner. `dynamo.planner` imports `aisimulate_core`, which only PyPI's
//! placeholder package `aisimulate` would download from a host these
//! machines cannot reach: `tests/needs.toml` makes this a counted skip there
//! (need `dynamo-planner`); where it imports, this runs.

use testbed_harness::pyenv::PythonEnv;
use testbed_harness::run_test;

#[test]
fn planner_starts_and_explains_itself() {
    run_test(|_ctx| async move {
        let python = PythonEnv::named("dynamo")?.require()?;
        let out = std::process::Command::new(python)
            .args(["-m", "dynamo.planner", "--help"])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "dynamo.planner --help failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("usage"), "{text}");
        Ok(())
    });
}
