//! How xtask calls cargo: with the provisioned protoc, the target folder
//! cargo itself reports, and nothing else that would change a build's
//! fingerprint between `cargo xtask` and a plain `cargo nextest run`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;
use testbed_harness::{tool, Layout, Pins};

/// What to do when `cargo nextest` cannot be run.
pub const NEXTEST_MISSING: &str =
    "cannot run cargo nextest: install it with `cargo install cargo-nextest --locked` or enter `nix develop`";

/// Cargo's target folder for this workspace, as `cargo metadata` reports
/// it (`CARGO_TARGET_DIR`, `build.target-dir` and the default alike).
pub fn target_dir(layout: &Layout) -> anyhow::Result<PathBuf> {
    let json: serde_json::Value = serde_json::from_slice(&metadata(layout)?)?;
    json["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("`cargo metadata` named no target_directory")
}

/// The workspace's test binaries, built once per `cargo xtask test` (or
/// extracted from an archive); every nextest call after it reuses them
/// (nextest's `--binaries-metadata` and `--cargo-metadata`), so no listing
/// or tier run builds again or waits on cargo's locks.
#[derive(Debug, Clone)]
pub struct BuiltTests {
    /// nextest's description of the built test binaries.
    binaries_metadata: PathBuf,
    /// `cargo metadata --no-deps` of the workspace.
    cargo_metadata: PathBuf,
    /// For binaries built elsewhere: the checkout they run against and
    /// where their target folder now is.
    remap: Option<Remap>,
}

/// Where binaries built in another checkout find theirs.
#[derive(Debug, Clone)]
struct Remap {
    /// This checkout (nextest's `--workspace-remap`).
    workspace: PathBuf,
    /// The extracted target folder (`--target-dir-remap`).
    target_dir: PathBuf,
}

impl BuiltTests {
    /// Builds every test binary of the workspace (cargo's progress on
    /// stderr) and records what nextest needs to reuse them.
    pub fn build(layout: &Layout) -> anyhow::Result<BuiltTests> {
        let metadata = metadata(layout)?;
        let json: serde_json::Value = serde_json::from_slice(&metadata)?;
        let target = json["target_directory"]
            .as_str()
            .map(PathBuf::from)
            .context("`cargo metadata` named no target_directory")?;
        let dir = target.join("testbed").join("reuse");
        Layout::ensure_dir(&dir)?;
        let cargo_metadata = dir.join("cargo-metadata.json");
        std::fs::write(&cargo_metadata, &metadata)?;
        let out = command(layout)?
            .args([
                "nextest",
                "list",
                "--workspace",
                "--list-type",
                "binaries-only",
            ])
            .args(["--message-format", "json"])
            .stderr(std::process::Stdio::inherit())
            .output()
            .context(NEXTEST_MISSING)?;
        anyhow::ensure!(out.status.success(), "building the tests failed");
        let binaries_metadata = dir.join("binaries-metadata.json");
        std::fs::write(&binaries_metadata, &out.stdout)?;
        Ok(BuiltTests {
            binaries_metadata,
            cargo_metadata,
            remap: None,
        })
    }

    /// Binaries built in another checkout, extracted to `target_dir`, run
    /// against `workspace`.
    pub fn extracted(
        binaries_metadata: PathBuf,
        cargo_metadata: PathBuf,
        workspace: PathBuf,
        target_dir: PathBuf,
    ) -> BuiltTests {
        BuiltTests {
            binaries_metadata,
            cargo_metadata,
            remap: Some(Remap {
                workspace,
                target_dir,
            }),
        }
    }

    /// The arguments that make `cargo nextest run|list` use these binaries.
    pub fn reuse_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--binaries-metadata".into(),
            self.binaries_metadata.clone().into(),
            "--cargo-metadata".into(),
            self.cargo_metadata.clone().into(),
        ];
        if let Some(remap) = &self.remap {
            args.extend([
                "--workspace-remap".into(),
                remap.workspace.clone().into(),
                "--target-dir-remap".into(),
                remap.target_dir.clone().into(),
            ]);
        }
        args
    }
}

/// Where nextest writes its JUnit files (`<store>/<profile>/junit.xml`):
/// its store, whose default is `target/nextest` under the workspace root —
/// not under the cargo target folder, which `CARGO_TARGET_DIR` may put
/// elsewhere.
pub fn nextest_store(layout: &Layout) -> PathBuf {
    layout.repo_root.join("target").join("nextest")
}

/// `cargo metadata --no-deps` of the workspace, as JSON bytes.
fn metadata(layout: &Layout) -> anyhow::Result<Vec<u8>> {
    let out = Command::new("cargo")
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(&layout.repo_root)
        .output()
        .context("cannot run `cargo metadata`")?;
    anyhow::ensure!(
        out.status.success(),
        "`cargo metadata` failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// A `cargo` command in the repository, with `PROTOC` set to the pinned
/// protoc (or the one `TESTBED_PROTOC` names) once `setup` has provisioned
/// it, and without the variables cargo sets for the programs it runs (see
/// [`clean_env`]).
pub fn command(layout: &Layout) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(&layout.repo_root);
    clean_env(&mut cmd);
    let pins = Pins::from_repo()?;
    if let Ok(protoc) = tool::locate_pinned("protoc", pins.tool("protoc")?, &layout.cache_dir) {
        cmd.env("PROTOC", protoc.path);
    }
    Ok(cmd)
}

/// Removes from `cmd`'s environment what cargo sets for a program it runs
/// (`cargo run`, and nextest for a test): `CARGO_PKG_*`, `CARGO_MANIFEST_*`
/// and the like. A nested cargo would pass them on to build scripts, and
/// some (ring's reads `CARGO_PKG_VERSION_MAJOR`) rebuild when they change,
/// so every `cargo xtask` and every plain `cargo build` after it would
/// rebuild each other's TLS stack.
pub fn clean_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || SET_FOR_PROGRAMS.contains(&name.as_ref())
        {
            cmd.env_remove(name.as_ref());
        }
    }
}

/// The other variables cargo sets for a program it runs.
const SET_FOR_PROGRAMS: [&str; 5] = [
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO_TARGET_TMPDIR",
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `cargo xtask test --tier unit` twice on an unchanged tree: the
    /// second compiles nothing (the builds of xtask, of testbed-runner and
    /// of nextest's tests share every artifact).
    #[test]
    fn slow_a_second_unit_run_compiles_nothing() {
        let layout = Layout::from_env();
        let run = || {
            let mut cmd = Command::new("cargo");
            cmd.current_dir(&layout.repo_root).args([
                "xtask",
                "test",
                "--tier",
                "unit",
                "--",
                "-E",
                "test(=tidy::top_level_is_as_designed)",
            ]);
            clean_env(&mut cmd);
            let out = cmd.output().expect("run cargo xtask");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "cargo xtask test failed:\n{text}");
            text
        };
        run();
        let second = run();
        let compiled: Vec<&str> = second
            .lines()
            .filter(|l| l.trim_start().starts_with("Compiling "))
            .collect();
        assert!(compiled.is_empty(), "the second run compiled {compiled:#?}");
        assert!(second.contains("unit"), "{second}");
    }
}
