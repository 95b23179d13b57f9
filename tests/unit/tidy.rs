//! Repository tidiness, as tests: the layout the design promises, one
//! nextest profile per tier, and docs on every crate.

use std::path::PathBuf;

fn repo() -> PathBuf {
    testbed_harness::Layout::from_env().repo_root
}

const TIERS: [&str; 7] = [
    "unit",
    "integration",
    "e2e",
    "fault",
    "backend",
    "gpu",
    "bench",
];

#[test]
fn top_level_is_as_designed() {
    for entry in [
        "flake.nix",
        "flake.lock",
        "Cargo.toml",
        "xtask",
        "drivers",
        "nix",
        "tests",
        "README.md",
        ".ci/run",
        ".config/nextest.toml",
    ] {
        assert!(
            repo().join(entry).exists(),
            "{entry} is missing at the top level"
        );
    }
}

#[test]
fn every_tier_has_a_profile_with_junit_and_a_timeout() {
    let text = std::fs::read_to_string(repo().join(".config/nextest.toml")).unwrap();
    let config: toml::Table = toml::from_str(&text).unwrap();
    let profiles = config["profile"].as_table().unwrap();
    for tier in TIERS {
        let profile = profiles
            .get(tier)
            .unwrap_or_else(|| panic!("no nextest profile `{tier}`"))
            .as_table()
            .unwrap();
        assert!(
            profile.contains_key("default-filter"),
            "profile {tier} selects its tests by default-filter"
        );
        assert_eq!(
            profile["fail-fast"].as_bool(),
            Some(false),
            "profile {tier} runs every test"
        );
        let slow = profile["slow-timeout"]
            .as_table()
            .unwrap_or_else(|| panic!("profile {tier} has no slow-timeout table"));
        assert!(
            slow.contains_key("terminate-after"),
            "profile {tier} kills hung tests"
        );
        assert!(
            profile.get("junit").and_then(|j| j.get("path")).is_some(),
            "profile {tier} writes JUnit"
        );
    }
    assert_eq!(
        config["test-groups"]["gpu"]["max-threads"].as_integer(),
        Some(1)
    );
}

#[test]
fn every_crate_has_a_crate_doc() {
    let mut roots = vec![
        repo().join("xtask/src/main.rs"),
        repo().join("tests/src/lib.rs"),
    ];
    for entry in std::fs::read_dir(repo().join("drivers")).unwrap() {
        roots.push(entry.unwrap().path().join("src/lib.rs"));
    }
    for root in roots {
        let text =
            std::fs::read_to_string(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
        assert!(
            text.starts_with("//!"),
            "{} starts without a crate doc comment",
            root.display()
        );
    }
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let command = "cargo xtask test --tier all";
    assert!(
        readme.contains(command),
        "README.md gives the test command `{command}`"
    );
    assert!(
        ci.contains(command),
        ".ci/run calls the README's test command"
    );
}

#[test]
fn no_driver_depends_on_xtask_and_harness_knows_no_service() {
    for entry in std::fs::read_dir(repo().join("drivers")).unwrap() {
        let manifest = entry.unwrap().path().join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(
            !text.contains("xtask"),
            "{} depends on xtask",
            manifest.display()
        );
    }
    let harness = std::fs::read_to_string(repo().join("drivers/harness/Cargo.toml")).unwrap();
    for service in ["testbed-nats", "testbed-etcd", "testbed-dynamo"] {
        assert!(
            !harness.contains(service),
            "the harness depends on {service}"
        );
    }
}
