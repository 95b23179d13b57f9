//! What this machine has: each thing a test may need, found (with its
//! version) or missing (with the reason and the command that fixes it).
//! `doctor` prints this; `test` turns the missing ones into counted skips.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use testbed_dynamo::pyenv::{EnvKind, PythonEnv};
use testbed_harness::{Pins, Tool};

/// One thing a tier or a test may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// nats-server at the pinned version.
    NatsServer,
    /// etcd at the pinned version.
    Etcd,
    /// The Dynamo Python env.
    DynamoEnv,
    /// `dynamo.planner` importable in the Dynamo env.
    DynamoPlanner,
    /// The vLLM (CPU) Python env.
    VllmEnv,
    /// At least one NVIDIA GPU.
    Gpu,
    /// A Python env with Dynamo and CUDA vLLM (`TESTBED_VLLM_GPU_ENV`).
    VllmGpuEnv,
    /// A Python env with Dynamo and SGLang (`TESTBED_SGLANG_ENV`).
    SglangEnv,
    /// A Python env with Dynamo and TensorRT-LLM (`TESTBED_TRTLLM_ENV`).
    TrtllmEnv,
}

impl Need {
    /// Every need, in table order.
    pub const ALL: [Need; 9] = [
        Need::NatsServer,
        Need::Etcd,
        Need::DynamoEnv,
        Need::DynamoPlanner,
        Need::VllmEnv,
        Need::Gpu,
        Need::VllmGpuEnv,
        Need::SglangEnv,
        Need::TrtllmEnv,
    ];

    /// The name used in `tests/needs.toml` and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Need::NatsServer => "nats-server",
            Need::Etcd => "etcd",
            Need::DynamoEnv => "dynamo-env",
            Need::DynamoPlanner => "dynamo-planner",
            Need::VllmEnv => "vllm-env",
            Need::Gpu => "gpu",
            Need::VllmGpuEnv => "vllm-gpu-env",
            Need::SglangEnv => "sglang-env",
            Need::TrtllmEnv => "trtllm-env",
        }
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Need {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Need::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Need::ALL.iter().map(|n| n.name()).collect();
                format!("unknown need {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// What was found for one need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What was found (a version, a path), or "missing".
    pub found: String,
    /// What the pins require.
    pub required: String,
    /// Whether the need is met.
    pub ok: bool,
    /// A version that differs from the pin (met, but a warning).
    pub version_mismatch: bool,
    /// Why not, and the command that fixes it (when not met).
    pub fix: String,
}

/// Every need, checked.
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// Findings by need.
    pub findings: BTreeMap<Need, Finding>,
}

impl Capabilities {
    /// Checks every need on this machine.
    pub fn detect(pins: &Pins) -> Capabilities {
        let mut findings = BTreeMap::new();
        for need in Need::ALL {
            findings.insert(need, check(need, pins));
        }
        Capabilities { findings }
    }

    /// Whether `need` is met.
    pub fn has(&self, need: Need) -> bool {
        self.findings.get(&need).is_some_and(|f| f.ok)
    }

    /// The reason `need` is not met (with its fix).
    pub fn reason(&self, need: Need) -> String {
        self.findings
            .get(&need)
            .map(|f| f.fix.clone())
            .unwrap_or_default()
    }
}

fn check(need: Need, pins: &Pins) -> Finding {
    match need {
        Need::NatsServer => service(&pins.nats_server),
        Need::Etcd => service(&pins.etcd),
        Need::DynamoEnv => python_env(EnvKind::Dynamo),
        Need::VllmEnv => python_env(EnvKind::Vllm),
        Need::DynamoPlanner => planner(),
        Need::Gpu => gpu(),
        Need::VllmGpuEnv => external_env(EnvKind::VllmGpu),
        Need::SglangEnv => external_env(EnvKind::Sglang),
        Need::TrtllmEnv => external_env(EnvKind::Trtllm),
    }
}

/// An env the user provides (GPU engines): named by its variable, usable
/// when its import check passes.
fn external_env(kind: EnvKind) -> Finding {
    let required = kind.import_check().to_owned();
    let missing = |found: &str, fix: String| Finding {
        found: found.into(),
        required: required.clone(),
        ok: false,
        version_mismatch: false,
        fix,
    };
    let env = match PythonEnv::pinned(kind) {
        Ok(env) => env,
        Err(e) => return missing("not set", format!("{e:#}")),
    };
    if !env.python().is_file() {
        return missing(
            "missing",
            format!(
                "{} names {}, which has no bin/python",
                kind.override_var(),
                env.dir.display()
            ),
        );
    }
    match imports(&env.python(), kind.import_check()) {
        Ok(()) => Finding {
            found: format!("importable ({})", env.dir.display()),
            required,
            ok: true,
            version_mismatch: false,
            fix: String::new(),
        },
        Err(last) => missing(
            "not importable",
            format!(
                "`{}` fails in {}: {last}",
                kind.import_check(),
                env.dir.display()
            ),
        ),
    }
}

fn service(pin: &testbed_harness::pins::ServicePin) -> Finding {
    let required = pin.version.clone();
    match Tool::for_service(pin).locate() {
        Ok(found) => Finding {
            version_mismatch: found.version != pin.version,
            found: format!("{} ({})", found.version, found.path.display()),
            required,
            ok: true,
            fix: if found.version != pin.version {
                "version differs from the pin; `cargo xtask setup --strict` rejects it".to_owned()
            } else {
                String::new()
            },
        },
        Err(e) => Finding {
            found: "missing".into(),
            required,
            ok: false,
            version_mismatch: false,
            fix: format!("{e:#}"),
        },
    }
}

fn python_env(kind: EnvKind) -> Finding {
    match PythonEnv::pinned(kind) {
        Ok(env) if env.is_ready() => Finding {
            found: format!("{} {} ({})", kind.package(), env.version, env.dir.display()),
            required: format!("{} {}", kind.package(), env.version),
            ok: true,
            version_mismatch: false,
            fix: String::new(),
        },
        Ok(env) => Finding {
            found: "missing".into(),
            required: format!("{} {}", kind.name(), env.version),
            ok: false,
            version_mismatch: false,
            fix: format!("not provisioned: run `{}`", kind.setup_command()),
        },
        Err(e) => Finding {
            found: "error".into(),
            required: kind.name().into(),
            ok: false,
            version_mismatch: false,
            fix: format!("{e:#}"),
        },
    }
}

fn planner() -> Finding {
    let required = "import dynamo.planner".to_owned();
    let env = match PythonEnv::pinned(EnvKind::Dynamo) {
        Ok(env) if env.is_ready() => env,
        _ => {
            return Finding {
                found: "no env".into(),
                required,
                ok: false,
                version_mismatch: false,
                fix: "run `cargo xtask setup`".into(),
            }
        }
    };
    match imports(&env.python(), "import dynamo.planner") {
        Ok(()) => Finding {
            found: "importable".into(),
            required,
            ok: true,
            version_mismatch: false,
            fix: String::new(),
        },
        Err(last) => Finding {
            found: "not importable".into(),
            required,
            ok: false,
            version_mismatch: false,
            fix: format!(
                "dynamo.planner does not import ({last}); it needs `aisimulate_core`, which only PyPI's placeholder package `aisimulate` would download from a host this machine cannot reach"
            ),
        },
    }
}

/// Runs `statement` with `python`; the last line of its error otherwise.
fn imports(python: &std::path::Path, statement: &str) -> Result<(), String> {
    match std::process::Command::new(python)
        .args(["-c", statement])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr)
            .lines()
            .last()
            .unwrap_or("")
            .to_owned()),
        Err(e) => Err(format!("{}: {e}", python.display())),
    }
}

fn gpu() -> Finding {
    let report = testbed_gpu::GpuReport::detect();
    if report.count() > 0 {
        return Finding {
            found: report.summary(),
            required: "≥ 1 NVIDIA GPU".into(),
            ok: true,
            version_mismatch: false,
            fix: String::new(),
        };
    }
    Finding {
        found: "0 GPUs".into(),
        required: "≥ 1 NVIDIA GPU".into(),
        ok: false,
        version_mismatch: false,
        fix: format!(
            "{}; run the gpu tier on a GPU host, inside `nix develop .#cuda`",
            report.absent_reason.as_deref().unwrap_or("no GPU")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_names_round_trip_and_unknown_lists_valid() {
        for need in Need::ALL {
            assert_eq!(need.name().parse::<Need>(), Ok(need));
        }
        assert_eq!(
            "cuda".parse::<Need>(),
            Err("unknown need \"cuda\": expected one of nats-server, etcd, dynamo-env, dynamo-planner, vllm-env, gpu, vllm-gpu-env, sglang-env, trtllm-env".to_owned())
        );
    }
}
