//! Repository tidiness, as tests (the unit tier runs them): the layout the
//! design promises, the tier list's copies agree with [`Tier`], every crate
//! documents itself and uses what it declares, and each mechanism the
//! design names once is written once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::ValueEnum;

use crate::tier::Tier;

fn repo() -> PathBuf {
    testbed_harness::Layout::from_env().repo_root
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `.rs` file under `dir` (relative to the repository).
fn rust_files(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() && p.file_name() != Some("target".as_ref()) {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo().join(dir), &mut out);
    out.sort();
    out
}

/// The workspace's member folders, from the root manifest.
fn members() -> Vec<String> {
    let manifest: toml::Table = toml::from_str(&read("Cargo.toml")).unwrap();
    manifest["workspace"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

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
        "rust-toolchain.toml",
    ] {
        assert!(
            repo().join(entry).exists(),
            "{entry} is missing at the top level"
        );
    }
}

#[test]
fn every_tier_has_a_profile_with_junit_a_timeout_and_its_binary() {
    let config: toml::Table = toml::from_str(&read(".config/nextest.toml")).unwrap();
    let profiles = config["profile"].as_table().unwrap();
    for tier in Tier::all() {
        let name = tier.name();
        let profile = profiles
            .get(name)
            .unwrap_or_else(|| panic!("no nextest profile `{name}` in .config/nextest.toml"))
            .as_table()
            .unwrap();
        let filter = profile
            .get("default-filter")
            .and_then(|f| f.as_str())
            .unwrap_or_else(|| panic!("profile {name} selects its tests by default-filter"));
        assert!(
            filter.contains(&format!("binary({name})")),
            "profile {name}'s default-filter selects binary({name}): {filter}"
        );
        assert_eq!(
            profile.get("fail-fast").and_then(|f| f.as_bool()),
            Some(false),
            "profile {name} runs every test"
        );
        let slow = profile
            .get("slow-timeout")
            .and_then(|s| s.as_table())
            .unwrap_or_else(|| panic!("profile {name} has no slow-timeout table"));
        assert!(
            slow.contains_key("terminate-after"),
            "profile {name} kills hung tests"
        );
        assert!(
            profile.get("junit").and_then(|j| j.get("path")).is_some(),
            "profile {name} writes JUnit"
        );
    }
    let tiers: BTreeSet<&str> = Tier::all().iter().map(|t| t.name()).collect();
    let extra: Vec<&String> = profiles
        .keys()
        .filter(|p| *p != "default" && !tiers.contains(p.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "nextest profiles that are not tiers (add them to xtask's Tier): {extra:?}"
    );
    assert!(
        config.get("store").is_none(),
        "no [store] dir: nextest's default (<target>/nextest) is where xtask reads JUnit"
    );
}

#[test]
fn every_tier_has_its_test_binary_and_folder() {
    let manifest: toml::Table = toml::from_str(&read("tests/Cargo.toml")).unwrap();
    let binaries: BTreeSet<(String, String)> = manifest["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = Tier::all()
        .iter()
        .map(|t| (t.name().to_owned(), format!("{}/main.rs", t.name())))
        .collect();
    assert_eq!(
        binaries, expected,
        "tests/Cargo.toml has one [[test]] per tier, named as the tier, at <tier>/main.rs"
    );
}

#[test]
fn readme_tier_table_lists_every_tier() {
    let readme = read("README.md");
    for tier in Tier::all() {
        assert!(
            readme.contains(&format!("\n| `{}` |", tier.name())),
            "README.md's tier table has a row for `{}`",
            tier.name()
        );
    }
    let help = <crate::tier::TierArg as ValueEnum>::value_variants().len();
    assert_eq!(
        help,
        Tier::all().len() + 1,
        "--tier takes each tier and all"
    );
}

#[test]
fn every_crate_has_a_crate_doc() {
    for member in members() {
        let dir = repo().join(&member).join("src");
        let root = ["lib.rs", "main.rs"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("{member} has no src/lib.rs or src/main.rs"));
        let text = std::fs::read_to_string(&root).unwrap();
        assert!(
            text.starts_with("//!"),
            "{} starts without a crate doc comment",
            root.display()
        );
    }
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let readme = read("README.md");
    let ci = read(".ci/run");
    for command in [
        "cargo xtask setup --backend vllm",
        "cargo xtask test --tier all",
    ] {
        assert!(
            readme.contains(command),
            "README.md gives the command `{command}`"
        );
        assert!(
            ci.contains(command),
            ".ci/run calls the README's `{command}`"
        );
    }
}

/// The names of a member's `[dependencies]`.
fn dependencies(member: &str) -> BTreeSet<String> {
    let manifest: toml::Table = toml::from_str(&read(&format!("{member}/Cargo.toml"))).unwrap();
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn crates_depend_downward_only() {
    let rules: [(&str, &[&str]); 4] = [
        (
            "drivers/harness",
            &[
                "testbed-nats",
                "testbed-etcd",
                "testbed-dynamo",
                "testbed-load",
            ],
        ),
        (
            "drivers/load",
            &["testbed-nats", "testbed-etcd", "testbed-dynamo"],
        ),
        (
            "drivers/nats",
            &["testbed-etcd", "testbed-dynamo", "testbed-load"],
        ),
        (
            "drivers/etcd",
            &["testbed-nats", "testbed-dynamo", "testbed-load"],
        ),
    ];
    for (member, forbidden) in rules {
        let deps = dependencies(member);
        for f in forbidden {
            assert!(!deps.contains(*f), "{member} depends on {f}");
        }
    }
    for member in members().iter().filter(|m| m.starts_with("drivers/")) {
        let deps = dependencies(member);
        assert!(
            !deps.contains("xtask") && !deps.contains("testbed-runner"),
            "{member} depends on the command line"
        );
    }
    let xtask = dependencies("xtask");
    for heavy in [
        "testbed-nats",
        "testbed-etcd",
        "testbed-dynamo",
        "testbed-load",
        "tokio",
        "reqwest",
    ] {
        assert!(
            !xtask.contains(heavy),
            "xtask stays thin, but links {heavy}"
        );
    }
    let manifest: toml::Table = toml::from_str(&read("xtask/Cargo.toml")).unwrap();
    assert!(
        manifest["dependencies"]["testbed-harness"]
            .get("features")
            .is_none(),
        "xtask links the harness without its runtime (the workspace's default)"
    );
}

/// Every dependency a crate declares is used by its code, and its version
/// comes from `[workspace.dependencies]`.
#[test]
fn dependencies_are_used_and_shared() {
    let mut wrong = Vec::new();
    for member in members() {
        let manifest: toml::Table = toml::from_str(&read(&format!("{member}/Cargo.toml"))).unwrap();
        let mut sources = String::new();
        for dir in [
            "src",
            "unit",
            "integration",
            "e2e",
            "fault",
            "backend",
            "gpu",
            "bench",
            "examples",
        ] {
            for f in rust_files(&format!("{member}/{dir}")) {
                sources.push_str(&std::fs::read_to_string(f).unwrap());
            }
        }
        for section in ["dependencies", "dev-dependencies"] {
            let Some(deps) = manifest.get(section).and_then(|d| d.as_table()) else {
                continue;
            };
            for (name, spec) in deps {
                let ident = name.replace('-', "_");
                let used = [
                    format!("{ident}::"),
                    format!("use {ident}"),
                    format!("{ident}!"),
                ]
                .iter()
                .any(|p| sources.contains(p.as_str()));
                if !used {
                    wrong.push(format!(
                        "{member} declares {name} in [{section}] but its code never uses it"
                    ));
                }
                let from_workspace = spec.get("workspace").and_then(|w| w.as_bool()) == Some(true);
                if !from_workspace {
                    wrong.push(format!("{member}'s {name} does not take its version from [workspace.dependencies] (`workspace = true`)"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Lines of the workspace's Rust code (tidy's own file aside) that contain
/// `needle`, as `path:line`.
fn occurrences(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["xtask", "drivers", "tests"] {
        for f in rust_files(dir) {
            if f.ends_with("xtask/src/tidy.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                if line.contains(needle) {
                    let rel = f.strip_prefix(repo()).unwrap_or(&f).display().to_string();
                    found.push(format!("{rel}:{}", i + 1));
                }
            }
        }
    }
    found
}

/// The mechanisms the design names once, each in its one file.
#[test]
fn one_way_to_do_each_thing() {
    let cases: [(&str, &str, &str); 4] = [
        (
            "signalling a process group",
            "libc::killpg(",
            "drivers/harness/src/group.rs",
        ),
        (
            "scanning a group's members",
            "procinfo::group_members(",
            "drivers/harness/src/group.rs",
        ),
        (
            "parsing server-sent events",
            "b\"data:\"",
            "drivers/load/src/sse.rs",
        ),
        (
            "generating prompt words",
            "SYLLABLES",
            "drivers/load/src/prompts.rs",
        ),
    ];
    for (what, needle, home) in cases {
        let stray: Vec<String> = occurrences(needle)
            .into_iter()
            .filter(|at| !at.starts_with(&format!("{home}:")))
            .collect();
        assert!(
            stray.is_empty(),
            "{what} lives in {home} alone, but `{needle}` also appears at {stray:?}"
        );
    }
}

/// Waiting is done by `testbed_harness::poll` (or a driver's watch while a
/// process starts): no hand-written retry loop with a sleep elsewhere.
#[test]
fn one_way_to_wait() {
    // Loops that watch a starting process while they wait, and the load
    // generator's own pacing.
    let allowed = [
        "drivers/harness/src/poll.rs",
        "drivers/harness/src/process/managed.rs",
        "drivers/dynamo/src/topology.rs",
        "drivers/load/src/engine.rs",
        "drivers/load/src/loopback.rs",
    ];
    let mut stray = Vec::new();
    for dir in ["drivers", "tests", "xtask"] {
        for f in rust_files(dir) {
            let rel = f.strip_prefix(repo()).unwrap().display().to_string();
            if allowed.contains(&rel.as_str()) || rel.ends_with("tidy.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let loops = text.contains("loop {") || text.contains("for _ in 0..");
            if loops && text.contains("time::sleep(") {
                stray.push(rel);
            }
        }
    }
    assert!(
        stray.is_empty(),
        "hand-written wait loops (use testbed_harness::poll::Poll): {stray:?}"
    );
}
