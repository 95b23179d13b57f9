//! `cargo xtask doctor`: one table of every external thing the tiers need.

use testbed_harness::{Pins, Tool};

use crate::capability::{Capabilities, Need};
use crate::flags::DoctorFlags;
use crate::tier::Tier;

/// Prints the table; returns the exit code (1 if a requested tier lacks
/// something).
pub fn run(flags: &DoctorFlags) -> anyhow::Result<i32> {
    let pins = Pins::from_repo()?;
    let caps = Capabilities::detect(&pins);
    let tiers = match flags.tier {
        Some(t) => Tier::expand(t),
        None => Tier::ALL_CPU.to_vec(),
    };
    let required: Vec<Need> = tiers
        .iter()
        .flat_map(|t| t.needs().iter().copied())
        .collect();

    let mut rows: Vec<[String; 5]> = Vec::new();
    for (tool, args, required_version, fix) in [
        (
            "cargo-nextest",
            vec!["nextest", "--version"],
            "any",
            "cargo install cargo-nextest --locked",
        ),
        (
            "protoc",
            vec!["--version"],
            "any (build-time, etcd-client)",
            "apt-get install -y protobuf-compiler",
        ),
    ] {
        let program = if tool == "cargo-nextest" {
            "cargo"
        } else {
            tool
        };
        let found = std::process::Command::new(program)
            .args(&args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                testbed_harness::tool::parse_version(&String::from_utf8_lossy(&o.stdout))
            });
        rows.push([
            tool.into(),
            found.clone().unwrap_or_else(|| "missing".into()),
            required_version.into(),
            if found.is_some() {
                "ok".into()
            } else {
                "MISSING".into()
            },
            if found.is_some() {
                String::new()
            } else {
                fix.into()
            },
        ]);
    }
    let python = Tool {
        binary: format!("python{}", pins.python.version),
        env: "TESTBED_PYTHON".into(),
        version_args: vec!["--version".into()],
        install_hint: format!(
            "apt-get install -y python{}-venv` (or pyenv, or `nix develop`",
            pins.python.version
        ),
    };
    let py = python.locate();
    rows.push([
        format!("python{}", pins.python.version),
        py.as_ref()
            .map(|f| f.version.clone())
            .unwrap_or_else(|_| "not on PATH".into()),
        pins.python.version.clone(),
        if py.is_ok() {
            "ok".into()
        } else {
            "note".into()
        },
        py.err()
            .map(|e| format!("{e:#}; uv also finds pyenv interpreters"))
            .unwrap_or_default(),
    ]);
    let mut missing_required = Vec::new();
    for (need, finding) in &caps.findings {
        let status = if !finding.ok {
            if required.contains(need) {
                missing_required.push(*need);
                "MISSING"
            } else {
                "absent"
            }
        } else if finding.version_mismatch {
            "ok (differs from pin)"
        } else {
            "ok"
        };
        rows.push([
            need.name().into(),
            finding.found.clone(),
            finding.required.clone(),
            status.into(),
            finding.fix.clone(),
        ]);
    }

    let widths: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(8)
        })
        .collect();
    println!(
        "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  fix",
        "what",
        "found",
        "pinned",
        "status",
        w0 = widths[0],
        w1 = widths[1],
        w2 = widths[2],
        w3 = widths[3]
    );
    for r in &rows {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        );
    }
    let tier_names: Vec<&str> = tiers.iter().map(|t| t.profile()).collect();
    if missing_required.is_empty() {
        println!(
            "\ndoctor: everything the {} tier(s) need is here",
            tier_names.join(", ")
        );
        Ok(0)
    } else {
        let names: Vec<&str> = missing_required.iter().map(|n| n.name()).collect();
        println!(
            "\ndoctor: the {} tier(s) need {} — `cargo xtask setup` provisions them",
            tier_names.join(", "),
            names.join(", ")
        );
        Ok(1)
    }
}
