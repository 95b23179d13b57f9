//! The Python envs of the pins: where one lives (the override variable's
//! folder, or the cache folder keyed by its lock file's content), whether it
//! is complete, and the command that provisions it. `cargo xtask setup`
//! builds the locked ones; drivers only locate them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::pins::EnvPin;
use crate::{Layout, Pins};

/// The file written last into a provisioned env: one without it is partial.
pub const COMPLETE_MARKER: &str = ".testbed-complete";

/// A Python env of the pins.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    /// The env's name in the pins.
    pub name: String,
    /// The pin.
    pub pin: EnvPin,
    /// The env's folder (a venv).
    pub dir: PathBuf,
    /// Its lock file, for envs the testbed builds.
    pub lock: Option<PathBuf>,
    /// True when the folder came from the override variable.
    pub overridden: bool,
}

impl PythonEnv {
    /// The env `name` of the repository's pins.
    pub fn named(name: &str) -> anyhow::Result<PythonEnv> {
        Self::of(&Layout::from_env(), &Pins::from_repo()?, name)
    }

    /// The env `name` as `pins` and the environment describe it.
    pub fn of(layout: &Layout, pins: &Pins, name: &str) -> anyhow::Result<PythonEnv> {
        let pin = pins.env(name)?.clone();
        let overridden = std::env::var_os(&pin.env).filter(|v| !v.is_empty());
        let lock = pin.lock.as_ref().map(|l| layout.repo_root.join(l));
        let dir = match (&overridden, &lock) {
            (Some(dir), _) => PathBuf::from(dir),
            (None, Some(lock)) => Self::locked_dir(
                layout,
                name,
                pin.version.as_deref().unwrap_or("unversioned"),
                &pins.python.version,
                lock,
            )?,
            (None, None) => bail!(
                "{} is not set: the {name} env is not provisioned by the testbed; point {} at {}",
                pin.env,
                pin.env,
                pin.hint.as_deref().unwrap_or("a ready env")
            ),
        };
        Ok(PythonEnv {
            name: name.to_owned(),
            overridden: overridden.is_some(),
            pin,
            dir,
            lock,
        })
    }

    /// An env called `name` at `version` built from `lock` (not
    /// necessarily the pinned one: `bisect --dynamo` makes one per
    /// release), in the cache beside the pinned ones, keyed the same way.
    pub fn for_lock(
        layout: &Layout,
        pins: &Pins,
        name: &str,
        version: &str,
        lock: &Path,
    ) -> anyhow::Result<PythonEnv> {
        let mut pin = pins.env(name)?.clone();
        pin.version = Some(version.to_owned());
        Ok(PythonEnv {
            name: name.to_owned(),
            dir: Self::locked_dir(layout, name, version, &pins.python.version, lock)?,
            pin,
            lock: Some(lock.to_owned()),
            overridden: false,
        })
    }

    /// `<cache>/python/<name>-<version>-py<python>-<lock hash>`: a new lock
    /// is a new folder, so envs of two pins live side by side.
    fn locked_dir(
        layout: &Layout,
        name: &str,
        version: &str,
        python: &str,
        lock: &Path,
    ) -> anyhow::Result<PathBuf> {
        let key = if lock.is_file() {
            let bytes = std::fs::read(lock).with_context(|| format!("read {}", lock.display()))?;
            crate::hash::short_hex(&bytes, 6)
        } else {
            "nolock".to_owned()
        };
        Ok(layout
            .cache_dir
            .join("python")
            .join(format!("{name}-{version}-py{python}-{key}")))
    }

    /// The env's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// Whether the env is complete (an override only needs its interpreter).
    pub fn is_ready(&self) -> bool {
        self.python().is_file() && (self.overridden || self.dir.join(COMPLETE_MARKER).is_file())
    }

    /// The command that provisions it.
    pub fn setup_command(&self) -> String {
        if self.pin.lock.is_none() {
            format!(
                "export {}=<{}>",
                self.pin.env,
                self.pin.hint.as_deref().unwrap_or("a ready env")
            )
        } else if self.pin.optional {
            format!("cargo xtask setup --backend {}", self.name)
        } else {
            "cargo xtask setup".to_owned()
        }
    }

    /// The interpreter, or an error that says how to provision the env.
    pub fn require(&self) -> anyhow::Result<PathBuf> {
        if self.is_ready() {
            return Ok(self.python());
        }
        bail!(
            "the {} env ({} {}) is not provisioned at {}: run `{}`",
            self.name,
            self.pin.package,
            self.pin.version.as_deref().unwrap_or(""),
            self.dir.display(),
            self.setup_command()
        )
    }
}
