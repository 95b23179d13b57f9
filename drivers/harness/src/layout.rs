//! Where the testbed keeps things: the source tree, the build's artifact
//! folder, the pin-keyed cache shared by every clone, and the machine-wide
//! state that concurrent runs coordinate through.

use std::path::{Path, PathBuf};

/// The folders the testbed reads and writes, resolved once from the
/// environment.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The repository root (holds `Cargo.toml`, `nix/pins.toml`).
    pub repo_root: PathBuf,
    /// Cargo's target folder; per-test artifacts go under `testbed/` in it.
    pub target_dir: PathBuf,
    /// Provisioned things keyed by their pins (Python envs, tools, models):
    /// outside the source tree so that a second clone reuses them.
    pub cache_dir: PathBuf,
    /// Machine-wide coordination (port leases, process registry, shared
    /// services): one per user, whatever the clone.
    pub state_dir: PathBuf,
}

impl Layout {
    /// Resolves the layout: `TESTBED_REPO_ROOT`, `CARGO_TARGET_DIR`,
    /// `TESTBED_CACHE_DIR` and `TESTBED_STATE_DIR` override the defaults.
    /// The repository is otherwise the nearest folder, from the current one
    /// up, that holds `nix/pins.toml` and `Cargo.toml` (a binary built
    /// elsewhere, such as Nix's, finds the checkout it is run in).
    pub fn from_env() -> Layout {
        let repo_root = std::env::var_os("TESTBED_REPO_ROOT")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::current_dir()
                    .ok()
                    .and_then(|d| find_repo_root(&d))
            })
            .unwrap_or_else(compiled_repo_root);
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|p| {
                if p.is_absolute() {
                    p
                } else {
                    repo_root.join(p)
                }
            })
            .unwrap_or_else(|| repo_root.join("target"));
        let cache_dir = std::env::var_os("TESTBED_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(default_cache_dir);
        let state_dir = std::env::var_os("TESTBED_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(default_state_dir);
        Layout {
            repo_root,
            target_dir,
            cache_dir,
            state_dir,
        }
    }

    /// Whether the repository is a git checkout (a tree unpacked from an
    /// archive is not, and has no revision to record).
    pub fn is_git_checkout(&self) -> bool {
        self.repo_root.join(".git").exists()
    }

    /// `target/testbed/<run-id>/`: every per-test artifact folder of one run.
    pub fn run_artifacts(&self, run_id: &crate::RunId) -> PathBuf {
        self.target_dir.join("testbed").join(run_id.as_str())
    }

    /// The pins manifest, `nix/pins.toml`.
    pub fn pins_file(&self) -> PathBuf {
        self.repo_root.join("nix").join("pins.toml")
    }

    /// Creates `dir` (and parents), saying which folder failed.
    pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create folder {}: {e}", dir.display()))
    }
}

/// The nearest folder from `start` up that holds `nix/pins.toml` and
/// `Cargo.toml`.
pub fn find_repo_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("nix/pins.toml").is_file() && d.join("Cargo.toml").is_file())
        .map(Path::to_path_buf)
}

fn compiled_repo_root() -> PathBuf {
    // drivers/harness -> repo root, as built: the last resort of a binary
    // run outside any checkout.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
}

fn default_cache_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("dynamo-testbed");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("dynamo-testbed"),
        None => std::env::temp_dir().join("dynamo-testbed-cache"),
    }
}

fn default_state_dir() -> PathBuf {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    std::env::temp_dir().join(format!("dynamo-testbed-{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_root_is_found_from_any_folder_inside_it() {
        let root = Layout::from_env().repo_root;
        for inside in ["", "drivers/harness/src", "nix/python"] {
            assert_eq!(
                find_repo_root(&root.join(inside)).as_deref(),
                Some(root.as_path()),
                "from {inside:?}"
            );
        }
        assert_eq!(find_repo_root(Path::new("/")), None);
    }
}
