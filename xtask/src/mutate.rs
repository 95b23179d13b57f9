//! `cargo xtask mutate`: what the tiers would miss. Each mutant of the
//! catalogue (`tests/mutants.toml`: a file of Dynamo's Python layer, an
//! exact old text, its replacement, the bug it models, the tier that should
//! catch it) is applied, one at a time, to a **copy** of the pinned Dynamo
//! env; the tier runs against the copy (`TESTBED_DYNAMO_ENV`); the file is
//! restored. A mutant is killed when the tier fails, and survives when it
//! passes: a survivor is a missing test. The cached env is never written,
//! and is checked byte for byte (SHA-256 of every file) before and after.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use testbed_harness::pyenv::PythonEnv;
use testbed_harness::{Layout, Pins, RunId};

use crate::exit::Exit;
use crate::flags::MutateFlags;
use crate::report;

/// `tests/mutants.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// The mutants, in the order they run.
    #[serde(rename = "mutant")]
    pub mutants: Vec<Mutant>,
}

/// One planted regression.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Mutant {
    /// Unique, kebab-case.
    pub name: String,
    /// The file, relative to the env's `site-packages` (`dynamo/...`).
    pub file: String,
    /// Text that occurs exactly once in the file.
    pub old: String,
    /// What replaces it.
    pub new: String,
    /// The bug it models, in a sentence.
    pub models: String,
    /// The tier that should catch it.
    pub tier: String,
}

impl Catalogue {
    /// Reads `path`.
    pub fn read(path: &Path) -> anyhow::Result<Catalogue> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the mutant catalogue {}", path.display()))?;
        let catalogue: Catalogue = toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a mutant catalogue; each entry is\n  [[mutant]]\n  name = \"…\"\n  file = \"dynamo/frontend/main.py\"\n  old = '''…'''\n  new = '''…'''\n  models = \"the bug\"\n  tier = \"e2e\"",
                path.display()
            )
        })?;
        let mut names = std::collections::BTreeSet::new();
        for m in &catalogue.mutants {
            anyhow::ensure!(names.insert(&m.name), "mutant {:?} is listed twice", m.name);
            anyhow::ensure!(m.old != m.new, "mutant {:?} changes nothing", m.name);
        }
        Ok(catalogue)
    }
}

/// Why a mutant cannot be applied to `source` (its file's text), or the
/// mutated text.
pub fn apply(mutant: &Mutant, source: &str) -> Result<String, String> {
    match source.matches(&mutant.old).count() {
        1 => Ok(source.replacen(&mutant.old, &mutant.new, 1)),
        0 => Err(format!(
            "mutant {:?}: its old text is not in {} (was the env upgraded?)",
            mutant.name, mutant.file
        )),
        n => Err(format!(
            "mutant {:?}: its old text occurs {n} times in {}; it must occur exactly once",
            mutant.name, mutant.file
        )),
    }
}

/// SHA-256 over every file under `dir` (paths and contents, in sorted
/// order; symlinks by their target).
pub fn tree_digest(dir: &Path) -> anyhow::Result<String> {
    fn walk(dir: &Path, base: &Path, hasher: &mut Sha256) -> anyhow::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("read {}", dir.display()))?
            .collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let kind = e.file_type()?;
            hasher.update(path.strip_prefix(base)?.to_string_lossy().as_bytes());
            if kind.is_symlink() {
                hasher.update(std::fs::read_link(&path)?.to_string_lossy().as_bytes());
            } else if kind.is_dir() {
                walk(&path, base, hasher)?;
            } else {
                hasher.update(std::fs::read(&path)?);
            }
        }
        Ok(())
    }
    let mut hasher = Sha256::new();
    walk(dir, dir, &mut hasher)?;
    Ok(testbed_harness::hash::hex(&hasher.finalize()))
}

/// One mutant's result.
#[derive(Debug, Serialize)]
struct Outcome {
    name: String,
    tier: String,
    models: String,
    /// `killed`, `survived`, or `error: …`.
    result: String,
    /// The tests that failed with the mutant.
    caught_by: Vec<String>,
    seconds: f64,
}

/// Runs the catalogue; the process exit code.
pub fn run(flags: &MutateFlags) -> anyhow::Result<i32> {
    let layout = Layout::from_env();
    let pins = Pins::from_repo()?;
    let catalogue = Catalogue::read(&layout.repo_root.join(&flags.catalogue))?;
    let chosen: Vec<&Mutant> = catalogue
        .mutants
        .iter()
        .filter(|m| flags.tier.as_deref().is_none_or(|t| m.tier == t))
        .filter(|m| flags.only.is_empty() || flags.only.contains(&m.name))
        .collect();
    anyhow::ensure!(
        !chosen.is_empty(),
        "no mutant of {} matches (--tier {:?}, --only {:?})",
        flags.catalogue.display(),
        flags.tier,
        flags.only
    );
    let env = PythonEnv::of(&layout, &pins, "dynamo")?;
    env.require()?;
    anyhow::ensure!(
        !env.overridden,
        "mutate copies the pinned Dynamo env; unset TESTBED_DYNAMO_ENV"
    );
    let site = env
        .dir
        .join("lib")
        .join(format!("python{}", pins.python.version))
        .join("site-packages");
    // Every mutant must apply before anything runs.
    for m in &chosen {
        let source = std::fs::read_to_string(site.join(&m.file))
            .with_context(|| format!("mutant {:?}: cannot read {}", m.name, m.file))?;
        apply(m, &source).map_err(|e| anyhow::anyhow!(e))?;
    }

    let run_id = RunId::fresh("mutate");
    let dir = layout.run_artifacts(&run_id).join("mutate");
    std::fs::create_dir_all(&dir)?;
    println!("mutate: hashing the cached env {} …", env.dir.display());
    let before = tree_digest(&env.dir)?;
    let copy = dir.join("env");
    println!("mutate: copying it to {} …", copy.display());
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&env.dir)
        .arg(&copy)
        .status()
        .context("cannot run cp")?;
    anyhow::ensure!(status.success(), "copying the env failed ({status})");
    let copy_site = copy.join(site.strip_prefix(&env.dir)?);
    let xtask = std::env::current_exe()?;

    let mut outcomes = Vec::new();
    for (i, m) in chosen.iter().enumerate() {
        let started = Instant::now();
        let file = copy_site.join(&m.file);
        let original = std::fs::read(&file)?;
        let mutated =
            apply(m, &String::from_utf8(original.clone())?).map_err(|e| anyhow::anyhow!(e))?;
        std::fs::write(&file, mutated)?;
        println!(
            "\nmutate: [{}/{}] {} ({}) — {}",
            i + 1,
            chosen.len(),
            m.name,
            m.file,
            m.models
        );
        let result = run_tier(&xtask, &layout, &m.tier, &copy, &dir.join(&m.name));
        restore(&file, &original)?;
        let (result, caught_by) = match result {
            Ok((0, _)) => ("survived".to_owned(), Vec::new()),
            Ok((1, failed)) if !failed.is_empty() => ("killed".to_owned(), failed),
            Ok((code, _)) => (
                format!("error: the tier exited {code} without failing tests"),
                Vec::new(),
            ),
            Err(e) => (format!("error: {e:#}"), Vec::new()),
        };
        println!(
            "mutate: {} {result}{} in {:.0} s",
            m.name,
            if caught_by.is_empty() {
                String::new()
            } else {
                format!(" by {}", caught_by.join(", "))
            },
            started.elapsed().as_secs_f64()
        );
        outcomes.push(Outcome {
            name: m.name.clone(),
            tier: m.tier.clone(),
            models: m.models.clone(),
            result,
            caught_by,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    std::fs::remove_dir_all(&copy).with_context(|| format!("remove {}", copy.display()))?;
    let after = tree_digest(&env.dir)?;
    anyhow::ensure!(
        before == after,
        "the cached env {} changed during the run (sha256 {before} → {after})",
        env.dir.display()
    );

    let killed = outcomes.iter().filter(|o| o.result == "killed").count();
    let survived: Vec<&Outcome> = outcomes.iter().filter(|o| o.result == "survived").collect();
    let errors = outcomes.len() - killed - survived.len();
    println!(
        "\n{:<38} {:<6} {:<10} caught by",
        "mutant", "tier", "result"
    );
    for o in &outcomes {
        println!(
            "{:<38} {:<6} {:<10} {}",
            o.name,
            o.tier,
            o.result.split(':').next().unwrap_or(""),
            o.caught_by.join(", ")
        );
    }
    println!(
        "\nmutate: kill rate {killed}/{} ({:.0}%); {} survived, {errors} could not be judged; the cached env is byte-identical (sha256 {})",
        outcomes.len(),
        killed as f64 * 100.0 / outcomes.len() as f64,
        survived.len(),
        &before[..16]
    );
    std::fs::write(
        dir.join("mutate.json"),
        serde_json::to_vec_pretty(&outcomes)?,
    )?;
    println!("mutate: results in {}", dir.join("mutate.json").display());
    Ok(if survived.is_empty() && errors == 0 {
        Exit::Success.code()
    } else {
        Exit::TestsFailed.code()
    })
}

/// Runs `tier` against the env at `env`; (exit code, failed tests).
fn run_tier(
    xtask: &Path,
    layout: &Layout,
    tier: &str,
    env: &Path,
    logs: &Path,
) -> anyhow::Result<(i32, Vec<String>)> {
    std::fs::create_dir_all(logs)?;
    let log = std::fs::File::create(logs.join("tier.log"))?;
    let status = std::process::Command::new(xtask)
        // The first failures decide: a mutant that breaks start-up would
        // otherwise make every test wait out its timeout.
        .args([
            "test",
            "--tier",
            tier,
            "--no-setup",
            "--",
            "--max-fail",
            "2",
        ])
        .env("TESTBED_DYNAMO_ENV", env)
        .current_dir(&layout.repo_root)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("cannot run xtask test")?;
    let junit = crate::cargo::nextest_store(layout)
        .join(tier)
        .join("junit.xml");
    let failed = match std::fs::read_to_string(&junit) {
        Ok(text) => report::cases_from_junit(&text)?
            .into_iter()
            .filter(|c| matches!(c.outcome, report::Outcome::Failed(_)))
            .map(|c| c.name.rsplit(' ').next().unwrap_or(&c.name).to_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    Ok((status.code().unwrap_or(-1), failed))
}

/// Puts `original` back into `file` and drops its compiled copies, so that
/// the next run imports the original.
fn restore(file: &Path, original: &[u8]) -> anyhow::Result<()> {
    std::fs::write(file, original)?;
    anyhow::ensure!(
        std::fs::read(file)? == original,
        "{} could not be restored",
        file.display()
    );
    if let (Some(dir), Some(stem)) = (file.parent(), file.file_stem()) {
        let cache: PathBuf = dir.join("__pycache__");
        if let Ok(entries) = std::fs::read_dir(&cache) {
            let prefix = format!("{}.", stem.to_string_lossy());
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mutant(old: &str, new: &str) -> Mutant {
        Mutant {
            name: "m".into(),
            file: "dynamo/x.py".into(),
            old: old.into(),
            new: new.into(),
            models: "a bug".into(),
            tier: "e2e".into(),
        }
    }

    #[test]
    fn apply_cases() {
        let cases = [
            ("found once", "a = 1\nb = 2\n", "b = 2", Ok("a = 1\nb = 3\n".to_owned())),
            (
                "not found",
                "a = 1\n",
                "b = 2",
                Err("mutant \"m\": its old text is not in dynamo/x.py (was the env upgraded?)".to_owned()),
            ),
            (
                "found twice",
                "b = 2\nb = 2\n",
                "b = 2",
                Err("mutant \"m\": its old text occurs 2 times in dynamo/x.py; it must occur exactly once".to_owned()),
            ),
        ];
        for (case, source, old, want) in cases {
            assert_eq!(apply(&mutant(old, "b = 3"), source), want, "{case}");
        }
    }

    #[test]
    fn the_committed_catalogue_reads() {
        let layout = Layout::from_env();
        let catalogue = Catalogue::read(&layout.repo_root.join("tests/mutants.toml")).unwrap();
        assert!(catalogue.mutants.len() >= 15, "at least 15 mutants");
        for m in &catalogue.mutants {
            assert!(
                ["e2e", "fault"].contains(&m.tier.as_str()),
                "{}: tier {}",
                m.name,
                m.tier
            );
            assert!(
                m.file.starts_with("dynamo/") && m.file.ends_with(".py"),
                "{}",
                m.file
            );
        }
    }

    /// Every mutant's old text is in the pinned env exactly once.
    #[test]
    fn slow_catalogue_applies_to_the_pinned_env() {
        let layout = Layout::from_env();
        let catalogue = Catalogue::read(&layout.repo_root.join("tests/mutants.toml")).unwrap();
        let pins = Pins::from_repo().unwrap();
        let env = PythonEnv::of(&layout, &pins, "dynamo").unwrap();
        let site = env
            .dir
            .join("lib")
            .join(format!("python{}", pins.python.version))
            .join("site-packages");
        for m in &catalogue.mutants {
            let source = std::fs::read_to_string(site.join(&m.file)).unwrap();
            apply(m, &source).unwrap();
        }
    }

    #[test]
    fn a_tree_digest_sees_a_changed_byte() {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/a.py"), "x = 1\n").unwrap();
        let before = tree_digest(dir).unwrap();
        std::fs::write(dir.join("sub/a.py"), "x = 2\n").unwrap();
        assert_ne!(tree_digest(dir).unwrap(), before);
        std::fs::write(dir.join("sub/a.py"), "x = 1\n").unwrap();
        assert_eq!(tree_digest(dir).unwrap(), before);
    }
}
