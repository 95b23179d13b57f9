//! `cargo xtask setup`: provisions what the pins name on a machine without
//! Nix. Services come from Debian's packages; uv and the Python envs go into
//! the cache outside the source tree, keyed by their pins, so a second run
//! (and a second clone) finds them done.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use testbed_dynamo::pyenv::{EnvKind, PythonEnv, COMPLETE_MARKER};
use testbed_harness::pins::ServicePin;
use testbed_harness::{Layout, Pins, Tool};
use xshell::{cmd, Shell};

use crate::flags::{BackendArg, SetupFlags};

/// Provisions everything `flags` asks for.
pub fn run(sh: &Shell, flags: &SetupFlags) -> anyhow::Result<()> {
    let layout = Layout::from_env();
    let pins = Pins::from_repo()?;
    let mut apt_updated = false;
    for pin in [&pins.nats_server, &pins.etcd] {
        ensure_service(sh, pin, flags.strict, flags.dry_run, &mut apt_updated)?;
    }
    ensure_env(sh, &layout, &pins, EnvKind::Dynamo, flags.dry_run)?;
    for backend in &flags.backend {
        match backend {
            BackendArg::Vllm => ensure_env(sh, &layout, &pins, EnvKind::Vllm, flags.dry_run)?,
        }
    }
    println!("setup: done; `cargo xtask doctor` shows the result");
    Ok(())
}

/// Provisions only what `needs` lists (for `test`'s first-use setup).
pub fn ensure_for(sh: &Shell, needs: &[crate::capability::Need]) -> anyhow::Result<()> {
    use crate::capability::Need;
    let layout = Layout::from_env();
    let pins = Pins::from_repo()?;
    let mut apt_updated = false;
    for need in needs {
        match need {
            Need::NatsServer => {
                ensure_service(sh, &pins.nats_server, false, false, &mut apt_updated)?
            }
            Need::Etcd => ensure_service(sh, &pins.etcd, false, false, &mut apt_updated)?,
            Need::DynamoEnv => ensure_env(sh, &layout, &pins, EnvKind::Dynamo, false)?,
            Need::VllmEnv => ensure_env(sh, &layout, &pins, EnvKind::Vllm, false)?,
            // Not provisioned by the testbed: found or reported by doctor.
            Need::DynamoPlanner
            | Need::Gpu
            | Need::VllmGpuEnv
            | Need::SglangEnv
            | Need::TrtllmEnv => {}
        }
    }
    Ok(())
}

fn ensure_service(
    sh: &Shell,
    pin: &ServicePin,
    strict: bool,
    dry_run: bool,
    apt_updated: &mut bool,
) -> anyhow::Result<()> {
    let tool = Tool::for_service(pin);
    if let Ok(found) = tool.locate() {
        return check_version(pin, &found.version, &found.path, strict);
    }
    let packages = pin.debian_packages.join(" ");
    let install = format!("apt-get install -y {packages}");
    if dry_run {
        println!("setup: would run `{install}` for {}", pin.binary);
        return Ok(());
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    if unsafe { libc::getuid() } != 0 || testbed_harness::tool::which("apt-get").is_none() {
        bail!(
            "{} is missing and this is not a root shell with apt-get: run `sudo apt-get update && sudo {install}`, or enter `nix develop`, or set {} to the binary",
            pin.binary,
            pin.env
        );
    }
    let started = Instant::now();
    if !*apt_updated {
        println!("setup: apt-get update …");
        cmd!(sh, "apt-get update -qq")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .run()
            .context("apt-get update failed")?;
        *apt_updated = true;
    }
    println!(
        "setup: installing {packages} for {} (pinned {}) …",
        pin.binary, pin.version
    );
    let pkgs = &pin.debian_packages;
    cmd!(sh, "apt-get install -y -qq {pkgs...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
        .with_context(|| format!("`{install}` failed"))?;
    let found = tool.locate()?;
    println!(
        "setup: {} {} installed in {:.1}s",
        pin.binary,
        found.version,
        started.elapsed().as_secs_f64()
    );
    check_version(pin, &found.version, &found.path, strict)
}

fn check_version(pin: &ServicePin, found: &str, path: &Path, strict: bool) -> anyhow::Result<()> {
    if found == pin.version {
        println!(
            "setup: {} {} ({}) matches the pin",
            pin.binary,
            found,
            path.display()
        );
        return Ok(());
    }
    let message = format!(
        "{} at {} is version {found}, the pin is {}",
        pin.binary,
        path.display(),
        pin.version
    );
    if strict {
        bail!(
            "{message} (--strict): install the pinned version or set {} to a binary of it",
            pin.env
        );
    }
    println!(
        "setup: warning: {message}; tests run against it anyway (`--strict` makes this an error)"
    );
    Ok(())
}

/// uv, installed from PyPI into the cache at the pinned version.
pub fn ensure_uv(sh: &Shell, layout: &Layout, pins: &Pins) -> anyhow::Result<PathBuf> {
    let dir = layout
        .cache_dir
        .join("tools")
        .join(format!("uv-{}", pins.uv.version));
    let uv = dir.join("bin").join("uv");
    if uv.is_file() {
        return Ok(uv);
    }
    let version = &pins.uv.version;
    let python = testbed_harness::tool::which("python3").context("python3 is not on PATH: install Python 3 (`apt-get install -y python3 python3-pip`) or enter `nix develop`")?;
    println!(
        "setup: installing uv {version} from PyPI into {} …",
        dir.display()
    );
    let started = Instant::now();
    let spec = format!("uv=={version}");
    cmd!(
        sh,
        "{python} -m pip install --quiet --disable-pip-version-check --target {dir} {spec}"
    )
    .run()
    .with_context(|| format!("installing uv {version} with pip failed"))?;
    anyhow::ensure!(
        uv.is_file(),
        "pip installed uv but {} is not there",
        uv.display()
    );
    println!(
        "setup: uv {version} ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(uv)
}

fn ensure_env(
    sh: &Shell,
    layout: &Layout,
    pins: &Pins,
    kind: EnvKind,
    dry_run: bool,
) -> anyhow::Result<()> {
    provision(sh, layout, pins, &PythonEnv::pinned(kind)?, dry_run)
}

/// Creates `env` from its lock file unless it is ready: a venv of the
/// pinned Python, `uv pip install --require-hashes --no-deps`, an import
/// check, then the completion marker. Two runs at once: one builds, the
/// other waits and reuses.
pub fn provision(
    sh: &Shell,
    layout: &Layout,
    pins: &Pins,
    env: &PythonEnv,
    dry_run: bool,
) -> anyhow::Result<()> {
    let kind = env.kind;
    if env.is_ready() {
        println!("setup: {} env ready at {}", kind.name(), env.dir.display());
        return Ok(());
    }
    if env.overridden {
        bail!(
            "{} names {}, which is not a usable env (no bin/python)",
            kind.override_var(),
            env.dir.display()
        );
    }
    if !env.lock_file.is_file() {
        bail!(
            "the lock file {} for the {} env is not in this checkout",
            env.lock_file.display(),
            kind.name()
        );
    }
    let size = match kind {
        EnvKind::Dynamo => &pins.dynamo.approx_size,
        _ => &pins.vllm.approx_size,
    };
    if dry_run {
        println!(
            "setup: would create the {} env at {} ({size})",
            kind.name(),
            env.dir.display()
        );
        return Ok(());
    }
    let parent = env.dir.parent().expect("env dir has a parent");
    Layout::ensure_dir(parent)?;
    // Two runs provisioning at once (two clones): one builds, the other waits.
    let lock_path = parent.join(format!("{}.lock", kind.name()));
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    let mut lock = fd_lock::RwLock::new(lock_file);
    let _guard = lock
        .write()
        .with_context(|| format!("lock {}", lock_path.display()))?;
    if env.is_ready() {
        println!(
            "setup: {} env ready at {} (made by a concurrent run)",
            kind.name(),
            env.dir.display()
        );
        return Ok(());
    }
    let uv = ensure_uv(sh, layout, pins)?;
    println!(
        "setup: creating the {} env ({} {}, {size}) at {} …",
        kind.name(),
        kind.package(),
        env.version,
        env.dir.display()
    );
    let started = Instant::now();
    if env.dir.exists() {
        std::fs::remove_dir_all(&env.dir)
            .with_context(|| format!("remove the partial env {}", env.dir.display()))?;
    }
    let python_version = &pins.python.version;
    let dir = &env.dir;
    cmd!(sh, "{uv} venv --quiet --python {python_version} {dir}")
        .env("UV_PYTHON_DOWNLOADS", "never")
        .run()
        .with_context(|| format!("`uv venv --python {python_version}` failed: install Python {python_version} (Debian: `apt-get install -y python{python_version}-venv`; pyenv works too)"))?;
    let python = env.python();
    let lock = &env.lock_file;
    cmd!(sh, "{uv} pip install --python {python} --require-hashes --no-deps -r {lock}")
        .env("UV_PYTHON_DOWNLOADS", "never")
        .run()
        .with_context(|| format!("installing {} failed; the env at {} is left incomplete and is rebuilt on the next setup", lock.display(), dir.display()))?;
    let check = kind.import_check();
    cmd!(sh, "{python} -c {check}")
        .run()
        .with_context(|| format!("the new env fails `{check}`"))?;
    std::fs::write(
        env.dir.join(COMPLETE_MARKER),
        format!("lock {}\n", lock.display()),
    )?;
    println!(
        "setup: {} env ready in {:.0}s",
        kind.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
