//! External programs the testbed runs (nats-server, etcd, python): found on
//! PATH or through an override variable, with their version read from the
//! program itself.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A program to locate.
#[derive(Debug, Clone)]
pub struct Tool {
    /// Its name on PATH.
    pub binary: String,
    /// A variable that, when set, names the program's path instead.
    pub env: String,
    /// The arguments that make it print its version.
    pub version_args: Vec<String>,
    /// The command that installs it, for errors.
    pub install_hint: String,
}

/// A located program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTool {
    /// Where it is.
    pub path: PathBuf,
    /// The first `X.Y.Z` its version output contains.
    pub version: String,
}

impl Tool {
    /// Finds the program and reads its version.
    pub fn locate(&self) -> anyhow::Result<FoundTool> {
        let path = match std::env::var_os(&self.env) {
            Some(p) => {
                let p = PathBuf::from(p);
                if !p.is_file() {
                    anyhow::bail!(
                        "{}={} does not name a file; unset it or point it at the {} binary",
                        self.env,
                        p.display(),
                        self.binary
                    );
                }
                p
            }
            None => which(&self.binary).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} not found on PATH (or in ${}); install it with `{}`",
                    self.binary,
                    self.env,
                    self.install_hint
                )
            })?,
        };
        let out = Command::new(&path)
            .args(&self.version_args)
            .output()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot run {} {}: {e}",
                    path.display(),
                    self.version_args.join(" ")
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
                self.version_args.join(" ")
            )
        })?;
        Ok(FoundTool { path, version })
    }
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

/// The first `X.Y.Z` (digits) in `text`, a leading `v` dropped.
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
            if parts.len() >= 3 && parts.iter().all(|p| !p.is_empty()) {
                return Some(parts[..3].join("."));
            }
            i += candidate.len().max(1);
        } else {
            i += 1;
        }
    }
    None
}

impl Tool {
    /// The tool for a pinned service binary (nats-server, etcd).
    pub fn for_service(pin: &crate::pins::ServicePin) -> Tool {
        Tool {
            binary: pin.binary.clone(),
            env: pin.env.clone(),
            version_args: vec!["--version".into()],
            install_hint: format!(
                "cargo xtask setup` (or `apt-get install -y {}`, or `nix develop`",
                pin.debian_packages.join(" ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_cases() {
        let cases = [
            ("nats", "nats-server: v2.9.10\n", Some("2.9.10")),
            (
                "etcd",
                "etcd Version: 3.4.23\nGit SHA: Not provided\nGo Version: go1.19.8\n",
                Some("3.4.23"),
            ),
            ("python", "Python 3.11.7", Some("3.11.7")),
            ("four parts", "tool 1.2.3.4", Some("1.2.3")),
            ("two parts only", "go1.19 and 2.3", None),
            ("nothing", "no version here", None),
        ];
        for (name, text, expected) in cases {
            assert_eq!(parse_version(text).as_deref(), expected, "case {name}");
        }
    }

    #[test]
    fn missing_binary_names_the_install_command() {
        let tool = Tool {
            binary: "testbed-no-such-binary".into(),
            env: "TESTBED_NO_SUCH_BINARY".into(),
            version_args: vec!["--version".into()],
            install_hint: "apt-get install -y no-such-package".into(),
        };
        let err = tool.locate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "testbed-no-such-binary not found on PATH (or in $TESTBED_NO_SUCH_BINARY); install it with `apt-get install -y no-such-package`"
        );
    }
}
