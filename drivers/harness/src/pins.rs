//! The pins manifest, `nix/pins.toml`: the versions the testbed is tested
//! against, read by xtask, the drivers and the flake alike.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

/// Every pinned thing.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Pins {
    /// The NATS server.
    pub nats_server: ServicePin,
    /// etcd.
    pub etcd: ServicePin,
    /// The Python that runs Dynamo.
    pub python: PythonPin,
    /// The uv release that installs the Python envs.
    pub uv: ToolPin,
    /// The Dynamo env (mocker tiers).
    pub dynamo: PythonEnvPin,
    /// The vLLM env (backend tier).
    pub vllm: PythonEnvPin,
}

/// A server binary from the system's packages.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServicePin {
    /// The version the testbed is tested against.
    pub version: String,
    /// The binary's name on PATH.
    pub binary: String,
    /// The environment variable that may point at another binary.
    pub env: String,
    /// Debian packages that provide it.
    pub debian_packages: Vec<String>,
}

/// The Python interpreter.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PythonPin {
    /// `MAJOR.MINOR`.
    pub version: String,
}

/// A tool installed from PyPI.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ToolPin {
    /// Exact version.
    pub version: String,
}

/// A Python env installed from a hash-locked requirements file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PythonEnvPin {
    /// The main package's version (for reports).
    pub version: String,
    /// The lock file, relative to the repository root.
    pub lock: String,
    /// A rough download size, said before provisioning.
    pub approx_size: String,
}

impl Pins {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Pins> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the pins manifest {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("malformed pins manifest {}", path.display()))
    }

    /// Parses manifest text.
    pub fn parse(text: &str) -> anyhow::Result<Pins> {
        Ok(toml::from_str(text)?)
    }

    /// The repository's own manifest.
    pub fn from_repo() -> anyhow::Result<Pins> {
        Self::load(&crate::Layout::from_env().pins_file())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_manifest_parses() {
        let pins = Pins::from_repo().unwrap();
        assert_eq!(pins.dynamo.version, "1.6.1");
        assert!(
            crate::Layout::from_env()
                .repo_root
                .join(&pins.dynamo.lock)
                .is_file(),
            "the Dynamo lock file exists"
        );
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = std::fs::read_to_string(crate::Layout::from_env().pins_file()).unwrap()
            + "\n[nats]\nversion = \"1\"\n";
        let err = Pins::parse(&text).unwrap_err();
        assert!(err.to_string().contains("unknown field `nats`"), "{err}");
    }
}
