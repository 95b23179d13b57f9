//! `cargo xtask test --coverage`: which of Dynamo's Python layer a tier
//! reaches. Every Python process the tier starts (frontends, workers, the
//! engines' own subprocesses) runs under coverage.py: a `sitecustomize.py`
//! on `PYTHONPATH` calls `coverage.process_startup()`, which measures when
//! `COVERAGE_PROCESS_START` names our configuration, each process writing
//! its own data file in the run folder. Afterwards the files are combined
//! (both envs' copies of Dynamo mapped onto one), reported as coverage.py's
//! JSON and HTML, and summed per Dynamo component (`dynamo/<component>/`).
//! A baseline per tier (`tests/coverage-baseline.toml`) makes it a gate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The variables that put a process under coverage; the Dynamo drivers
/// also read `TESTBED_COVERAGE` (a stack under coverage stops gracefully,
/// so that each process writes its data).
pub const ENV_VARS: [&str; 3] = ["TESTBED_COVERAGE", "COVERAGE_PROCESS_START", "PYTHONPATH"];

/// What `--coverage` needs for the whole run.
#[derive(Debug)]
pub struct CoverageSetup {
    /// An interpreter with coverage.py (the pinned Dynamo env's).
    pub python: PathBuf,
    /// That env's `site-packages/dynamo`.
    pub dynamo: PathBuf,
    /// The baselines, with `--coverage-gate`.
    pub baseline: Option<Baseline>,
}

impl CoverageSetup {
    /// The pinned Dynamo env's interpreter and package; the baseline at
    /// `baseline` when `gate`.
    pub fn new(
        layout: &testbed_harness::Layout,
        pins: &testbed_harness::Pins,
        baseline: Option<&Path>,
    ) -> anyhow::Result<CoverageSetup> {
        let env = testbed_harness::pyenv::PythonEnv::of(layout, pins, "dynamo")?;
        let python = env.require()?;
        let dynamo = env
            .dir
            .join("lib")
            .join(format!("python{}", pins.python.version))
            .join("site-packages")
            .join("dynamo");
        anyhow::ensure!(
            dynamo.is_dir(),
            "--coverage: the Dynamo env has no {}",
            dynamo.display()
        );
        let baseline = baseline
            .map(|p| Baseline::read(&layout.repo_root.join(p)))
            .transpose()?;
        Ok(CoverageSetup {
            python,
            dynamo,
            baseline,
        })
    }
}

/// One tier's coverage folder: configuration, hook, data, reports.
#[derive(Debug, Clone)]
pub struct CoverageRun {
    /// `target/testbed/<run>/coverage/<tier>`.
    pub dir: PathBuf,
    /// coverage.py's configuration.
    pub rcfile: PathBuf,
    /// The folder holding `sitecustomize.py`.
    pub hook: PathBuf,
}

impl CoverageRun {
    /// Writes the configuration and the hook into `dir`. `dynamo` is the
    /// pinned env's `site-packages/dynamo`, onto which every env's copy of
    /// Dynamo is mapped when the data are combined.
    pub fn prepare(dir: &Path, dynamo: &Path) -> anyhow::Result<CoverageRun> {
        let dir = dir.to_owned();
        let hook = dir.join("hook");
        std::fs::create_dir_all(&hook)
            .with_context(|| format!("cannot create {}", hook.display()))?;
        let rcfile = dir.join("coveragerc");
        std::fs::write(&rcfile, rcfile_text(&dir.join("data"), dynamo))?;
        std::fs::write(
            hook.join("sitecustomize.py"),
            "# Written by `cargo xtask test --coverage`: measures this process when\n\
             # COVERAGE_PROCESS_START names a configuration (and does nothing otherwise).\n\
             try:\n    import coverage\nexcept ImportError:\n    pass\nelse:\n    coverage.process_startup()\n",
        )?;
        Ok(CoverageRun { dir, rcfile, hook })
    }

    /// The variables for the tier's processes.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let path = match std::env::var("PYTHONPATH") {
            Ok(p) if !p.is_empty() => format!("{}:{p}", self.hook.display()),
            _ => self.hook.display().to_string(),
        };
        vec![
            (ENV_VARS[0], self.dir.display().to_string()),
            (ENV_VARS[1], self.rcfile.display().to_string()),
            (ENV_VARS[2], path),
        ]
    }

    /// Combines the processes' data with `python` (an env with coverage.py)
    /// and writes `coverage.json` and `html/`; returns the components.
    pub fn report(&self, python: &Path) -> anyhow::Result<Vec<Component>> {
        let data = self.dir.join("data");
        let parts = std::fs::read_dir(&data)
            .map(|d| d.filter_map(Result::ok).count())
            .unwrap_or(0);
        anyhow::ensure!(
            parts > 0,
            "no Python process of the tier wrote coverage data to {} (did the tier start any Dynamo process?)",
            data.display()
        );
        let coverage = |args: &[&str]| -> anyhow::Result<()> {
            let out = std::process::Command::new(python)
                .args(["-m", "coverage"])
                .args(args)
                .arg(format!("--rcfile={}", self.rcfile.display()))
                .current_dir(&self.dir)
                .output()
                .with_context(|| format!("cannot run {} -m coverage", python.display()))?;
            anyhow::ensure!(
                out.status.success(),
                "`coverage {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(())
        };
        coverage(&["combine", "--quiet"])?;
        let json = self.dir.join("coverage.json");
        coverage(&["json", "--quiet", "-o", &json.display().to_string()])?;
        coverage(&[
            "html",
            "--quiet",
            "-d",
            &self.dir.join("html").display().to_string(),
        ])?;
        let report: CoverageJson = serde_json::from_slice(&std::fs::read(&json)?)
            .with_context(|| format!("{} is not coverage.py's JSON", json.display()))?;
        let components = components(&report);
        std::fs::write(
            self.dir.join("components.json"),
            serde_json::to_vec_pretty(&components)?,
        )?;
        Ok(components)
    }
}

fn rcfile_text(data: &Path, dynamo: &Path) -> String {
    format!(
        "# Written by `cargo xtask test --coverage`.\n\
         [run]\n\
         branch = true\n\
         parallel = true\n\
         source_pkgs = dynamo\n\
         data_file = {data}/.coverage\n\
         sigterm = true\n\
         \n\
         [paths]\n\
         dynamo =\n    {dynamo}\n    */site-packages/dynamo\n",
        data = data.display(),
        dynamo = dynamo.display()
    )
}

/// The part of coverage.py's JSON report read here.
#[derive(Debug, Deserialize)]
pub struct CoverageJson {
    /// Per measured file.
    pub files: BTreeMap<String, FileJson>,
}

/// One file of the JSON report.
#[derive(Debug, Deserialize)]
pub struct FileJson {
    /// Its totals.
    pub summary: FileSummary,
}

/// A file's totals.
#[derive(Debug, Deserialize)]
pub struct FileSummary {
    /// Statements run.
    pub covered_lines: u64,
    /// Statements.
    pub num_statements: u64,
    /// Branches taken (absent without branch measurement).
    #[serde(default)]
    pub covered_branches: u64,
    /// Branches.
    #[serde(default)]
    pub num_branches: u64,
}

/// One Dynamo component's coverage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// `frontend`, `mocker`, `vllm`, …; `(top)` for the package's own files.
    pub name: String,
    /// Files measured.
    pub files: usize,
    /// Statements run.
    pub covered_lines: u64,
    /// Statements.
    pub statements: u64,
    /// Branches taken.
    pub covered_branches: u64,
    /// Branches.
    pub branches: u64,
}

impl Component {
    /// Line coverage in percent (100 for a component without statements).
    pub fn line_pct(&self) -> f64 {
        pct(self.covered_lines, self.statements)
    }

    /// Branch coverage in percent.
    pub fn branch_pct(&self) -> f64 {
        pct(self.covered_branches, self.branches)
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The component of a measured file: the folder under `dynamo/`.
pub fn component_of(path: &str) -> Option<String> {
    let rest = path.rsplit_once("dynamo/").map(|(_, r)| r)?;
    Some(match rest.split_once('/') {
        Some((dir, _)) => dir.to_owned(),
        None => "(top)".to_owned(),
    })
}

/// Sums the report's files per component, by name.
pub fn components(report: &CoverageJson) -> Vec<Component> {
    let mut by_name: BTreeMap<String, Component> = BTreeMap::new();
    for (path, file) in &report.files {
        let Some(name) = component_of(path) else {
            continue;
        };
        let c = by_name.entry(name.clone()).or_insert(Component {
            name,
            files: 0,
            covered_lines: 0,
            statements: 0,
            covered_branches: 0,
            branches: 0,
        });
        c.files += 1;
        c.covered_lines += file.summary.covered_lines;
        c.statements += file.summary.num_statements;
        c.covered_branches += file.summary.covered_branches;
        c.branches += file.summary.num_branches;
    }
    by_name.into_values().collect()
}

/// The components as a table.
pub fn table(components: &[Component]) -> String {
    let mut out = format!(
        "{:<22} {:>6} {:>14} {:>8} {:>14} {:>8}\n",
        "component", "files", "lines", "line %", "branches", "branch %"
    );
    for c in components {
        out += &format!(
            "{:<22} {:>6} {:>14} {:>7.1}% {:>14} {:>7.1}%\n",
            c.name,
            c.files,
            format!("{}/{}", c.covered_lines, c.statements),
            c.line_pct(),
            format!("{}/{}", c.covered_branches, c.branches),
            c.branch_pct()
        );
    }
    out
}

/// `tests/coverage-baseline.toml`: per tier, per component, the line
/// coverage (percent) a run must reach.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Tier name → component → minimum line %.
    #[serde(default)]
    pub tiers: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Baseline {
    /// Reads `path`.
    pub fn read(path: &Path) -> anyhow::Result<Baseline> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the coverage baseline {}", path.display()))?;
        toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a coverage baseline; the accepted form is\n  [tiers.e2e]\n  frontend = 40.0   # minimum line coverage in percent",
                path.display()
            )
        })
    }
}

/// A component below its baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Shortfall {
    /// The component.
    pub component: String,
    /// Its baseline (line %).
    pub baseline: f64,
    /// What the run measured (line %); `None` when it was not measured.
    pub measured: Option<f64>,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.measured {
            Some(m) => write!(
                f,
                "{}: {m:.1}% of lines, below its baseline of {:.1}%",
                self.component, self.baseline
            ),
            None => write!(
                f,
                "{}: not measured at all (baseline {:.1}%)",
                self.component, self.baseline
            ),
        }
    }
}

/// The components of `measured` below the tier's baseline.
pub fn gate(baseline: &Baseline, tier: &str, measured: &[Component]) -> Vec<Shortfall> {
    let Some(minimums) = baseline.tiers.get(tier) else {
        return Vec::new();
    };
    minimums
        .iter()
        .filter_map(|(name, &min)| {
            let got = measured
                .iter()
                .find(|c| &c.name == name)
                .map(Component::line_pct);
            match got {
                Some(m) if m + 1e-9 >= min => None,
                _ => Some(Shortfall {
                    component: name.clone(),
                    baseline: min,
                    measured: got,
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(name: &str, covered: u64, statements: u64) -> Component {
        Component {
            name: name.into(),
            files: 1,
            covered_lines: covered,
            statements,
            covered_branches: 0,
            branches: 0,
        }
    }

    #[test]
    fn component_of_cases() {
        let cases = [
            (
                "a file in a component",
                "/c/python/env/lib/python3.11/site-packages/dynamo/frontend/main.py",
                Some("frontend"),
            ),
            (
                "a nested file",
                "/x/site-packages/dynamo/vllm/multimodal/utils.py",
                Some("vllm"),
            ),
            (
                "the package's own file",
                "/x/site-packages/dynamo/health_check.py",
                Some("(top)"),
            ),
            ("outside dynamo", "/x/site-packages/vllm/engine.py", None),
        ];
        for (case, path, want) in cases {
            assert_eq!(component_of(path).as_deref(), want, "{case}");
        }
    }

    #[test]
    fn files_are_summed_per_component() {
        let report: CoverageJson = serde_json::from_str(
            r#"{"files": {
                "/e/site-packages/dynamo/frontend/a.py": {"summary": {"covered_lines": 3, "num_statements": 4, "covered_branches": 1, "num_branches": 2}},
                "/e/site-packages/dynamo/frontend/b.py": {"summary": {"covered_lines": 1, "num_statements": 6, "covered_branches": 0, "num_branches": 2}},
                "/e/site-packages/dynamo/mocker/main.py": {"summary": {"covered_lines": 0, "num_statements": 5}}
            }}"#,
        )
        .unwrap();
        let got = components(&report);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (
                got[0].name.as_str(),
                got[0].files,
                got[0].covered_lines,
                got[0].statements
            ),
            ("frontend", 2, 4, 10)
        );
        assert_eq!((got[0].covered_branches, got[0].branches), (1, 4));
        assert_eq!(got[0].line_pct(), 40.0);
        assert_eq!(got[1].line_pct(), 0.0);
    }

    #[test]
    fn gate_cases() {
        let baseline: Baseline =
            toml::from_str("[tiers.e2e]\nfrontend = 40.0\nmocker = 10.0\n").unwrap();
        let cases: [(&str, &str, Vec<Component>, Vec<&str>); 5] = [
            (
                "at or above every baseline passes",
                "e2e",
                vec![component("frontend", 40, 100), component("mocker", 50, 100)],
                vec![],
            ),
            (
                "below a baseline fails, naming it",
                "e2e",
                vec![component("frontend", 39, 100), component("mocker", 50, 100)],
                vec!["frontend: 39.0% of lines, below its baseline of 40.0%"],
            ),
            (
                "a component not measured fails",
                "e2e",
                vec![component("frontend", 90, 100)],
                vec!["mocker: not measured at all (baseline 10.0%)"],
            ),
            (
                "components without a baseline are free",
                "e2e",
                vec![
                    component("frontend", 90, 100),
                    component("mocker", 90, 100),
                    component("router", 0, 100),
                ],
                vec![],
            ),
            ("a tier without a baseline passes", "fault", vec![], vec![]),
        ];
        for (case, tier, measured, want) in cases {
            let got: Vec<String> = gate(&baseline, tier, &measured)
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn a_malformed_baseline_shows_the_accepted_form() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("baseline.toml");
        std::fs::write(&path, "frontend = 40\n").unwrap();
        let err = format!("{:#}", Baseline::read(&path).unwrap_err());
        assert!(
            err.contains("is not a coverage baseline; the accepted form is\n  [tiers.e2e]\n  frontend = 40.0"),
            "{err}"
        );
    }

    #[test]
    fn the_committed_baseline_reads() {
        let path = testbed_harness::Layout::from_env()
            .repo_root
            .join("tests/coverage-baseline.toml");
        let baseline = Baseline::read(&path).unwrap();
        assert!(
            baseline.tiers.contains_key("e2e"),
            "the e2e tier has a baseline"
        );
    }
}
