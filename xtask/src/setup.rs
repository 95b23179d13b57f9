//! `cargo xtask setup`: provisions what the pins name, without root and
//! without a distribution's packages (see [`crate::provision`]). A second
//! run, and a second clone, find everything done.

use testbed_harness::pyenv::PythonEnv;
use testbed_harness::{Layout, Pins};
use xshell::Shell;

use crate::capability::Need;
use crate::exit;
use crate::flags::SetupFlags;
use crate::provision;

/// The tools every build or tier may use, provisioned by every setup.
const TOOLS: [&str; 5] = ["uv", "protoc", "nats-server", "etcd", "chart-font"];

/// Provisions everything `flags` asks for.
pub fn run(sh: &Shell, flags: &SetupFlags) -> anyhow::Result<i32> {
    let layout = Layout::from_env();
    let pins = Pins::from_repo()?;
    for name in &flags.backend {
        let env = pins.env(name).map_err(exit::missing)?;
        anyhow::ensure!(
            env.lock.is_some(),
            "--backend {name}: the {name} env is not provisioned by the testbed; point {} at {}",
            env.env,
            env.hint.as_deref().unwrap_or("a ready env")
        );
    }
    if flags.dry_run {
        for name in TOOLS {
            let pin = pins.tool(name)?;
            eprintln!(
                "setup: would provision {name} {} from {}",
                pin.version, pin.wheel.url
            );
        }
    } else {
        tools(&layout, &pins).map_err(exit::missing)?;
    }
    let envs = pins.envs.iter().filter(|(name, pin)| {
        pin.lock.is_some() && (!pin.optional || flags.backend.contains(name))
    });
    for (name, _) in envs {
        let env = PythonEnv::of(&layout, &pins, name)?;
        provision::ensure_env(sh, &layout, &pins, &env, flags.dry_run).map_err(exit::missing)?;
    }
    eprintln!("setup: done; `cargo xtask doctor` shows the result");
    Ok(exit::Exit::Success.code())
}

/// Every pinned tool, and the checkout's link to protoc.
pub fn tools(layout: &Layout, pins: &Pins) -> anyhow::Result<()> {
    for name in TOOLS {
        let found = provision::ensure_tool(layout, pins, name)?;
        if name == "protoc" {
            provision::link_protoc(layout, &found.path)?;
        }
    }
    Ok(())
}

/// Provisions what `needs` lists, and the tools (for `test`'s first use).
pub fn ensure_for(sh: &Shell, needs: &[Need]) -> anyhow::Result<()> {
    let layout = Layout::from_env();
    let pins = Pins::from_repo()?;
    tools(&layout, &pins)?;
    for need in needs {
        if let Need::Env(name) = need {
            let env = PythonEnv::of(&layout, &pins, name)?;
            if env.pin.lock.is_some() {
                provision::ensure_env(sh, &layout, &pins, &env, false)?;
            }
        }
    }
    Ok(())
}
