//! What this machine has: each thing a test may need, found (with its
//! version and where it came from) or missing (with the reason and the
//! command that fixes it). `doctor` prints this; `test` turns the missing
//! ones into counted skips.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use testbed_harness::pyenv::PythonEnv;
use testbed_harness::{tool, Layout, Pins};

/// One thing a tier or a test may need. Env needs are named by the pins'
/// envs (`dynamo-env`, `vllm-env`, …), so a new env is a new need.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Need {
    /// nats-server, pinned or overridden.
    NatsServer,
    /// etcd, pinned or overridden.
    Etcd,
    /// A Python env of the pins, usable.
    Env(String),
    /// `dynamo.planner` importable in the Dynamo env.
    DynamoPlanner,
    /// At least one NVIDIA GPU.
    Gpu,
    /// A headless Chromium (renders the run report in a test).
    Chromium,
    /// `CAP_NET_ADMIN` and iproute2: test hosts as network namespaces.
    NetAdmin,
}

impl Need {
    /// Every need the pins make, in table order.
    pub fn all(pins: &Pins) -> Vec<Need> {
        let mut all = vec![Need::NatsServer, Need::Etcd];
        all.extend(pins.envs.keys().map(|e| Need::Env(e.clone())));
        all.extend([
            Need::DynamoPlanner,
            Need::Gpu,
            Need::Chromium,
            Need::NetAdmin,
        ]);
        all
    }

    /// The name used in `tests/needs.toml` and in tables.
    pub fn name(&self) -> String {
        match self {
            Need::NatsServer => "nats-server".into(),
            Need::Etcd => "etcd".into(),
            Need::Env(env) => format!("{env}-env"),
            Need::DynamoPlanner => "dynamo-planner".into(),
            Need::Gpu => "gpu".into(),
            Need::Chromium => "chromium".into(),
            Need::NetAdmin => "net-admin".into(),
        }
    }

    /// The need called `name`, or an error listing the valid names.
    pub fn parse(name: &str, pins: &Pins) -> Result<Need, String> {
        let all = Need::all(pins);
        all.iter()
            .find(|n| n.name() == name)
            .cloned()
            .ok_or_else(|| {
                let names: Vec<String> = all.iter().map(Need::name).collect();
                format!(
                    "unknown need {name:?}: expected one of {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Whether a need is met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "kebab-case")]
pub enum Status {
    /// Met, as pinned.
    Ok,
    /// Met, but not as pinned (why).
    Differs(String),
    /// Not met (why, and the command that fixes it).
    Missing(String),
}

/// What was found for one need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was found (a version, a path), or "missing".
    pub found: String,
    /// Where it came from (an override variable, the cache, …).
    pub source: String,
    /// What the pins require.
    pub required: String,
    /// Met or not.
    #[serde(flatten)]
    pub status: Status,
}

impl Finding {
    fn new(
        found: impl Into<String>,
        source: impl Into<String>,
        required: impl Into<String>,
        status: Status,
    ) -> Finding {
        Finding {
            found: found.into(),
            source: source.into(),
            required: required.into(),
            status,
        }
    }

    /// Whether the need is met.
    pub fn ok(&self) -> bool {
        !matches!(self.status, Status::Missing(_))
    }
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
        let layout = Layout::from_env();
        // Each check may start a process (a `--version`, a Python import of
        // ~0.5 s): all at once.
        let findings = std::thread::scope(|scope| {
            let checks: Vec<_> = Need::all(pins)
                .into_iter()
                .map(|need| {
                    let layout = &layout;
                    scope.spawn(move || {
                        let finding = check(&need, pins, layout);
                        (need, finding)
                    })
                })
                .collect();
            checks
                .into_iter()
                .map(|c| c.join().expect("a capability check panicked"))
                .collect()
        });
        Capabilities { findings }
    }

    /// Whether `need` is met.
    pub fn has(&self, need: &Need) -> bool {
        self.findings.get(need).is_some_and(Finding::ok)
    }

    /// Why `need` is not met (with its fix).
    pub fn reason(&self, need: &Need) -> String {
        match self.findings.get(need).map(|f| &f.status) {
            Some(Status::Missing(why)) => why.clone(),
            Some(_) => String::new(),
            None => format!("{need} is not a need of these pins"),
        }
    }
}

fn check(need: &Need, pins: &Pins, layout: &Layout) -> Finding {
    match need {
        Need::NatsServer => service("nats-server", pins, layout),
        Need::Etcd => service("etcd", pins, layout),
        Need::Env(name) => python_env(name, pins, layout),
        Need::DynamoPlanner => planner(pins, layout),
        Need::Gpu => gpu(),
        Need::Chromium => chromium(),
        Need::NetAdmin => net_admin(),
    }
}

fn service(name: &str, pins: &Pins, layout: &Layout) -> Finding {
    let Ok(pin) = pins.tool(name) else {
        return Finding::new(
            "—",
            "—",
            "—",
            Status::Missing(format!("nix/pins.toml has no [tools.{name}]")),
        );
    };
    match tool::locate_pinned(name, pin, &layout.cache_dir) {
        Ok(found) => {
            let status = if found.version == pin.version {
                Status::Ok
            } else {
                Status::Differs(format!(
                    "{} is {}, the pin is {}",
                    found.path.display(),
                    found.version,
                    pin.version
                ))
            };
            Finding::new(
                format!("{} ({})", found.version, found.path.display()),
                found.source_text(),
                &pin.version,
                status,
            )
        }
        Err(e) => Finding::new(
            "missing",
            "—",
            &pin.version,
            Status::Missing(format!("{e:#}")),
        ),
    }
}

fn python_env(name: &str, pins: &Pins, layout: &Layout) -> Finding {
    let env = match PythonEnv::of(layout, pins, name) {
        Ok(env) => env,
        Err(e) => {
            let required = pins
                .env(name)
                .map(|p| p.import_check.clone())
                .unwrap_or_default();
            return Finding::new("not set", "—", required, Status::Missing(format!("{e:#}")));
        }
    };
    let required = match &env.pin.version {
        Some(v) => format!("{} {v}", env.pin.package),
        None => env.pin.import_check.clone(),
    };
    let source = if env.overridden {
        format!("${}", env.pin.env)
    } else {
        "cache (hash-locked)".to_owned()
    };
    if !env.is_ready() {
        return Finding::new(
            "missing",
            source,
            required,
            Status::Missing(format!(
                "not provisioned at {}: run `{}`",
                env.dir.display(),
                env.setup_command()
            )),
        );
    }
    if env.pin.lock.is_some() {
        return Finding::new(
            format!("{} ({})", required, env.dir.display()),
            source,
            required.clone(),
            Status::Ok,
        );
    }
    // The user's env: usable when its import check passes.
    match imports(&env.python(), &env.pin.import_check) {
        Ok(()) => Finding::new(
            format!("importable ({})", env.dir.display()),
            source,
            required,
            Status::Ok,
        ),
        Err(last) => Finding::new(
            "not importable",
            source,
            required,
            Status::Missing(format!(
                "`{}` fails in {}: {last}",
                env.pin.import_check,
                env.dir.display()
            )),
        ),
    }
}

fn planner(pins: &Pins, layout: &Layout) -> Finding {
    let required = "import dynamo.planner";
    let env = match PythonEnv::of(layout, pins, "dynamo") {
        Ok(env) if env.is_ready() => env,
        _ => {
            return Finding::new(
                "no env",
                "—",
                required,
                Status::Missing("run `cargo xtask setup`".into()),
            )
        }
    };
    match imports(&env.python(), required) {
        Ok(()) => Finding::new("importable", "dynamo env", required, Status::Ok),
        Err(last) => Finding::new(
            "not importable",
            "dynamo env",
            required,
            Status::Missing(format!(
                "dynamo.planner does not import ({last}); it needs `aisimulate_core`, which only PyPI's placeholder package `aisimulate` would download from a host this machine cannot reach"
            )),
        ),
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

/// The browser the report test renders with: `TESTBED_CHROMIUM`, else
/// `chromium` or `chromium-browser` on `PATH`.
pub fn chromium_binary() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("TESTBED_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    ["chromium", "chromium-browser"]
        .into_iter()
        .find_map(testbed_harness::tool::which)
}

fn chromium() -> Finding {
    let required = "a headless Chromium";
    match chromium_binary() {
        Some(path) => Finding::new(path.display().to_string(), "PATH or TESTBED_CHROMIUM", required, Status::Ok),
        None => Finding::new(
            "missing",
            "PATH",
            required,
            Status::Missing(
                "no chromium on PATH: install it (`sudo apt-get install chromium`) or set TESTBED_CHROMIUM".into(),
            ),
        ),
    }
}

fn net_admin() -> Finding {
    let required = "CAP_NET_ADMIN and iproute2 (test hosts)";
    match testbed_harness::hosts::can_create() {
        Ok(()) => Finding::new("yes", "/proc/self/status", required, Status::Ok),
        Err(why) => Finding::new("no", "/proc/self/status", required, Status::Missing(why)),
    }
}

fn gpu() -> Finding {
    let report = testbed_gpu::GpuReport::detect();
    let required = "≥ 1 NVIDIA GPU";
    if report.count() > 0 {
        return Finding::new(report.summary(), "NVML", required, Status::Ok);
    }
    Finding::new(
        "0 GPUs",
        "NVML",
        required,
        Status::Missing(format!(
            "{}; run the gpu tier on a GPU host, inside `nix develop .#cuda`",
            report.absent_reason.as_deref().unwrap_or("no GPU")
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_names_round_trip_and_unknown_lists_valid() {
        let pins = Pins::from_repo().unwrap();
        for need in Need::all(&pins) {
            assert_eq!(Need::parse(&need.name(), &pins), Ok(need));
        }
        assert_eq!(
            Need::parse("cuda", &pins),
            Err("unknown need \"cuda\": expected one of nats-server, etcd, dynamo-env, sglang-env, trtllm-env, vllm-env, vllm-gpu-env, dynamo-planner, gpu, chromium, net-admin".to_owned())
        );
    }
}
