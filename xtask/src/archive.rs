//! `cargo xtask archive`, and `cargo xtask test --archive FILE`: build the
//! tests on one machine, run them on others (or from another checkout of
//! the same tree) without building again.
//!
//! The archive is nextest's own (`cargo nextest archive`): the test
//! binaries and the fixture child, plus what `.config/nextest.toml`'s
//! `archive.include` adds — `testbed-runner` (which holds a tier's shared
//! services) and a [`Manifest`] of the tree the binaries were built from.
//! A run from an archive extracts it once under the target folder, checks
//! the checkout against the manifest, and points every nextest call at the
//! extracted binaries with the checkout as the workspace (nextest's
//! `--workspace-remap` and `--target-dir-remap`): the tests then read the
//! checkout's files, and the fixture child is the archive's copy
//! (`NEXTEST_BIN_EXE_*`). The pins are part of the tree, so the other
//! machine provisions the same services and envs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use testbed_harness::hash::hex;
use testbed_harness::Layout;

use crate::cargo;
use crate::flags::ArchiveFlags;

/// Where the manifest is written before archiving, relative to cargo's
/// target folder; `.config/nextest.toml`'s `archive.include` names the
/// same path.
const MANIFEST: &str = "testbed/archive-manifest.json";

/// `testbed-runner` relative to cargo's target folder, as archived.
const RUNNER: &str = "debug/testbed-runner";

/// The manifest's format; a run refuses an archive of another.
const FORMAT: u32 = 1;

/// What an archive was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest's format ([`FORMAT`]).
    pub format: u32,
    /// The git revision checked out when the archive was built; `None` for
    /// a tree that is not a git checkout (one unpacked from `git archive`).
    pub revision: Option<String>,
    /// Whether tracked files differed from that revision (the archive is
    /// then of the working tree, which [`Manifest::files`] describes).
    pub dirty: bool,
    /// Every file of the tree (a git checkout's tracked files), by path,
    /// with the SHA-256 of its contents as built.
    pub files: BTreeMap<String, String>,
    /// `cargo nextest --version`'s first line on the building machine.
    pub nextest: String,
}

impl Manifest {
    /// The manifest of the tree at `repo`: a git checkout's tracked files as
    /// they are in the working tree, or every file of a tree that is not
    /// one (see [`untracked_tree`]).
    pub fn of_checkout(repo: &Path) -> anyhow::Result<Manifest> {
        if !repo.join(".git").exists() {
            let mut files = BTreeMap::new();
            for path in untracked_tree(repo)? {
                if let Some(hash) = file_sha256(&repo.join(&path))? {
                    files.insert(path, hash);
                }
            }
            return Ok(Manifest {
                format: FORMAT,
                revision: None,
                dirty: false,
                files,
                nextest: nextest_version()?,
            });
        }
        let git = |args: &[&str]| -> anyhow::Result<Vec<u8>> {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(repo)
                .output()
                .context("cannot run git: `cargo xtask archive` records the tracked files of a git checkout")?;
            anyhow::ensure!(
                out.status.success(),
                "`git {}` failed in {}: an archive is built from a git checkout ({})",
                args.join(" "),
                repo.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(out.stdout)
        };
        let revision = Some(
            String::from_utf8_lossy(&git(&["rev-parse", "HEAD"])?)
                .trim()
                .to_owned(),
        );
        let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
        let mut files = BTreeMap::new();
        for path in git(&["ls-files", "-z"])?.split(|b| *b == 0) {
            if path.is_empty() {
                continue;
            }
            let path = String::from_utf8_lossy(path).into_owned();
            // A tracked file deleted in the working tree is not part of it.
            if let Some(hash) = file_sha256(&repo.join(&path))? {
                files.insert(path, hash);
            }
        }
        Ok(Manifest {
            format: FORMAT,
            revision,
            dirty,
            files,
            nextest: nextest_version()?,
        })
    }

    /// The files of the checkout at `repo` that are missing or differ from
    /// the tree this archive was built from, each with what is wrong.
    pub fn differences(&self, repo: &Path) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        for (path, hash) in &self.files {
            match file_sha256(&repo.join(path))? {
                None => out.push(format!("{path} is missing")),
                Some(h) if &h != hash => out.push(format!("{path} differs")),
                Some(_) => {}
            }
        }
        Ok(out)
    }

    /// The revision, with `+changes` when the tree differed from it.
    pub fn describe(&self) -> String {
        let Some(revision) = &self.revision else {
            return "unversioned".to_owned();
        };
        let short = &revision[..revision.len().min(12)];
        if self.dirty {
            format!("{short}+changes")
        } else {
            short.to_owned()
        }
    }
}

/// The files of a tree that is not a git checkout, relative to `repo`:
/// everything but build output and provisioned links (`target/`, `.git/`,
/// `.testbed/`, Nix's `result*` links), symbolic links, and archives
/// themselves (`*.tar.zst`: the one being run may lie in the tree).
fn untracked_tree(repo: &Path) -> anyhow::Result<Vec<String>> {
    fn walk(dir: &Path, repo: &Path, out: &mut Vec<String>) -> anyhow::Result<()> {
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?
        {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type()?;
            if kind.is_symlink() || name.ends_with(".tar.zst") {
                continue;
            }
            if kind.is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | ".testbed") {
                    walk(&entry.path(), repo, out)?;
                }
            } else if kind.is_file() {
                out.push(
                    entry
                        .path()
                        .strip_prefix(repo)?
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(repo, repo, &mut out)?;
    out.sort();
    Ok(out)
}

/// The SHA-256 of a file's contents in hex; `None` when it does not exist.
fn file_sha256(path: &Path) -> anyhow::Result<Option<String>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut hasher = sha2::Sha256::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Some(hex(&hasher.finalize())))
}

/// The first line of `cargo nextest --version`.
fn nextest_version() -> anyhow::Result<String> {
    let out = std::process::Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .context(cargo::NEXTEST_MISSING)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

/// `cargo xtask archive`: builds the tests and `testbed-runner`, records the
/// tree, and writes the archive; prints how to run from it.
pub fn run(flags: &ArchiveFlags) -> anyhow::Result<i32> {
    let layout = Layout::from_env();
    let manifest = Manifest::of_checkout(&layout.repo_root)?;
    let target = cargo::target_dir(&layout)?;
    let out = match &flags.out {
        Some(p) => std::path::absolute(p)?,
        None => target.join("testbed").join("archives").join(format!(
            "dynamo-testbed-{}.tar.zst",
            manifest.describe().replace('+', "-")
        )),
    };
    anyhow::ensure!(
        out.to_string_lossy().ends_with(".tar.zst"),
        "{}: the archive is a zstd-compressed tarball; name it FILE.tar.zst",
        out.display()
    );
    if let Some(parent) = out.parent() {
        Layout::ensure_dir(parent)?;
    }
    println!("xtask: building testbed-runner and the test binaries …");
    crate::runner::build(&layout)?;
    let manifest_path = target.join(MANIFEST);
    Layout::ensure_dir(manifest_path.parent().context("no parent")?)?;
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest)?)?;
    let status = cargo::command(&layout)?
        .args(["nextest", "archive", "--workspace", "--archive-file"])
        .arg(&out)
        .status()
        .context(cargo::NEXTEST_MISSING)?;
    anyhow::ensure!(status.success(), "`cargo nextest archive` failed");
    let size = std::fs::metadata(&out)?.len();
    println!(
        "archive: {} ({:.0} MiB), built from revision {} ({} files recorded)",
        out.display(),
        size as f64 / (1024.0 * 1024.0),
        manifest.describe(),
        manifest.files.len()
    );
    println!(
        "run it on a checkout of that tree with the same pins (nextest and a Rust toolchain for xtask; nothing else is built):\n  cargo xtask test --tier <TIER> --archive {} [--partition hash:K/N]",
        out.display()
    );
    Ok(0)
}

/// An archive extracted for a run: its binaries, its manifest, and the
/// checkout they run against.
#[derive(Debug)]
pub struct Extracted {
    /// The archive's `target/` folder, extracted.
    target: PathBuf,
    /// The checkout the tests run in (`--workspace-remap`).
    workspace: PathBuf,
    /// What the archive was built from.
    pub manifest: Manifest,
}

impl Extracted {
    /// Extracts `file` under the target folder (once: a second run of the
    /// same file reuses the extraction) and checks that the checkout is the
    /// tree it was built from.
    pub fn open(layout: &Layout, file: &Path) -> anyhow::Result<Extracted> {
        let file = file.canonicalize().with_context(|| {
            format!(
                "cannot read the archive {}: build one with `cargo xtask archive`",
                file.display()
            )
        })?;
        let meta = std::fs::metadata(&file)?;
        let key = {
            let mut h = sha2::Sha256::new();
            h.update(file.as_os_str().as_encoded_bytes());
            h.update(meta.len().to_le_bytes());
            if let Ok(modified) = meta.modified() {
                h.update(format!("{modified:?}").as_bytes());
            }
            hex(&h.finalize()[..8])
        };
        let root = layout.target_dir.join("testbed").join("extracted");
        let dir = root.join(&key);
        let done = dir.join(".extracted");
        if !done.is_file() {
            // One extraction is kept: an archive is ~1 GB unpacked.
            if root.is_dir() {
                for old in std::fs::read_dir(&root)?.flatten() {
                    let _ = std::fs::remove_dir_all(old.path());
                }
            }
            Layout::ensure_dir(&dir)?;
            // Progress on stderr: with --json, stdout is the summary's.
            eprintln!(
                "xtask: extracting {} into {} …",
                file.display(),
                dir.display()
            );
            let out = cargo::command(layout)?
                .args(["nextest", "list", "--archive-file"])
                .arg(&file)
                .arg("--workspace-remap")
                .arg(&layout.repo_root)
                .arg("--extract-to")
                .arg(&dir)
                .args(["--extract-overwrite", "--list-type", "binaries-only"])
                .stdout(std::process::Stdio::null())
                .output()
                .context(cargo::NEXTEST_MISSING)?;
            anyhow::ensure!(
                out.status.success(),
                "cannot extract {}: {}",
                file.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            std::fs::write(&done, file.as_os_str().as_encoded_bytes())?;
        }
        let target = dir.join("target");
        let manifest_path = target.join(MANIFEST);
        let manifest: Manifest = serde_json::from_slice(
            &std::fs::read(&manifest_path).with_context(|| {
                format!(
                    "{} has no testbed manifest ({MANIFEST}): it was not made by `cargo xtask archive`",
                    file.display()
                )
            })?,
        )
        .with_context(|| format!("reading {}", manifest_path.display()))?;
        anyhow::ensure!(
            manifest.format == FORMAT,
            "{} is an archive of format {} and this xtask reads format {FORMAT}: build it again with this checkout's `cargo xtask archive`",
            file.display(),
            manifest.format
        );
        let differences = manifest.differences(&layout.repo_root)?;
        if !differences.is_empty() {
            let shown: Vec<&str> = differences.iter().take(8).map(String::as_str).collect();
            let remedy = match &manifest.revision {
                Some(rev) => format!("check out that revision (`git checkout {rev}`)"),
                None => "run it in a copy of the tree it was built from".to_owned(),
            };
            anyhow::bail!(
                "the checkout at {} is not the tree {} was built from (revision {}): {}{} — {remedy}, or build an archive of this tree with `cargo xtask archive`",
                layout.repo_root.display(),
                file.display(),
                manifest.describe(),
                shown.join(", "),
                if differences.len() > shown.len() {
                    format!(" and {} more", differences.len() - shown.len())
                } else {
                    String::new()
                }
            );
        }
        let here = nextest_version()?;
        if here != manifest.nextest {
            eprintln!(
                "xtask: the archive was made by {} and runs with {here}: nextest advises the same version on both machines",
                manifest.nextest
            );
        }
        Ok(Extracted {
            target,
            workspace: layout.repo_root.clone(),
            manifest,
        })
    }

    /// The archive's test binaries, as every nextest call of the run uses
    /// them.
    pub fn tests(&self) -> cargo::BuiltTests {
        cargo::BuiltTests::extracted(
            self.target.join("nextest").join("binaries-metadata.json"),
            self.target.join("nextest").join("cargo-metadata.json"),
            self.workspace.clone(),
            self.target.clone(),
        )
    }

    /// The archive's `testbed-runner`.
    pub fn runner(&self) -> anyhow::Result<PathBuf> {
        let exe = self.target.join(RUNNER);
        anyhow::ensure!(
            exe.is_file(),
            "the archive has no testbed-runner ({RUNNER}): build it with `cargo xtask archive`, not `cargo nextest archive`"
        );
        Ok(exe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(files: &[(&str, &str)]) -> Manifest {
        Manifest {
            format: FORMAT,
            revision: Some("0123456789abcdef0123".into()),
            dirty: false,
            files: files
                .iter()
                .map(|(p, c)| (p.to_string(), hex(&sha2::Sha256::digest(c.as_bytes()))))
                .collect(),
            nextest: "cargo-nextest 0.9.143".into(),
        }
    }

    /// A checkout is compared file by file with the tree the archive was
    /// built from; each difference is named.
    #[test]
    fn a_checkout_is_compared_with_the_archived_tree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("nix")).unwrap();
        std::fs::write(dir.path().join("nix/pins.toml"), "a").unwrap();
        std::fs::write(dir.path().join("README.md"), "changed").unwrap();
        std::fs::write(dir.path().join("untracked.txt"), "x").unwrap();
        let cases: [(&str, Manifest, Vec<&str>); 3] = [
            ("same tree", manifest(&[("nix/pins.toml", "a")]), vec![]),
            (
                "a file differs",
                manifest(&[("nix/pins.toml", "a"), ("README.md", "original")]),
                vec!["README.md differs"],
            ),
            (
                "a file is missing",
                manifest(&[("nix/pins.toml", "a"), ("tests/needs.toml", "n")]),
                vec!["tests/needs.toml is missing"],
            ),
        ];
        for (name, m, expected) in cases {
            assert_eq!(m.differences(dir.path()).unwrap(), expected, "case {name}");
        }
    }

    /// A tree that is not a git checkout is every file but build output,
    /// provisioned links and archives.
    #[test]
    fn an_unversioned_tree_is_its_files_without_build_output() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for file in [
            "Cargo.toml",
            "nix/pins.toml",
            "target/debug/xtask",
            "xtask/target/x",
            ".testbed/bin/README",
            "tests.tar.zst",
        ] {
            std::fs::create_dir_all(root.join(file).parent().unwrap()).unwrap();
            std::fs::write(root.join(file), file).unwrap();
        }
        std::os::unix::fs::symlink(root.join("Cargo.toml"), root.join("result")).unwrap();
        assert_eq!(
            untracked_tree(root).unwrap(),
            ["Cargo.toml", "nix/pins.toml"]
        );
        let m = Manifest::of_checkout(root).unwrap();
        assert_eq!(m.revision, None);
        assert_eq!(m.files.len(), 2);
    }

    #[test]
    fn a_revision_is_described_short_and_marked_when_the_tree_had_changes() {
        let mut m = manifest(&[]);
        assert_eq!(m.describe(), "0123456789ab");
        m.dirty = true;
        assert_eq!(m.describe(), "0123456789ab+changes");
        m.revision = None;
        assert_eq!(m.describe(), "unversioned");
    }
}
