//! `cargo xtask bisect --dynamo A..B --tier T [-- nextest args]`: finds the
//! first Dynamo release (nightlies included) between A and B where a tier's
//! tests fail, with this checkout's tests unchanged. Each probed release
//! gets its own hash-locked env in the cache, beside the pinned one
//! (`python/dynamo-<version>-py<python>-<lock hash>`), so a second bisect
//! over the same range installs nothing. A release that cannot be locked,
//! installed or imported is skipped, not blamed.

use std::collections::BTreeSet;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::str::FromStr;

use anyhow::Context;
use pep440_rs::Version;
use testbed_harness::pyenv::PythonEnv;
use testbed_harness::{Layout, Pins};
use xshell::{cmd, Shell};

/// `A..B`: a release where the tests pass, and a later one where they fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRange {
    /// The good release.
    pub good: Version,
    /// The bad release.
    pub bad: Version,
}

impl FromStr for ReleaseRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let form = "expected GOOD..BAD with two ai-dynamo versions, e.g. 1.6.0.dev20261001..1.6.1";
        let (good, bad) = s
            .split_once("..")
            .ok_or_else(|| format!("{form}; got {s:?}"))?;
        let parse = |v: &str| {
            Version::from_str(v.trim()).map_err(|e| format!("{form}; {v:?} is not a version: {e}"))
        };
        let (good, bad) = (parse(good)?, parse(bad)?);
        if good >= bad {
            return Err(format!(
                "{form}; the good release must be older than the bad one, got {good}..{bad}"
            ));
        }
        Ok(ReleaseRange { good, bad })
    }
}

impl fmt::Display for ReleaseRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.good, self.bad)
    }
}

/// What one probe of a release said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The tests passed.
    Good,
    /// The tests failed.
    Bad,
    /// The release could not be tested (why).
    Skip(String),
}

/// Where the search ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchOutcome {
    /// `first_bad` fails and the release before it, `last_good`, passes.
    Found {
        /// Index of the last good release.
        last_good: usize,
        /// Index of the first bad release.
        first_bad: usize,
    },
    /// The change lies among skipped releases between `last_good` and
    /// `first_bad`.
    Ambiguous {
        /// Index of the last release seen passing.
        last_good: usize,
        /// Index of the first release seen failing.
        first_bad: usize,
        /// The untestable releases between them.
        skipped: Vec<usize>,
    },
}

/// Binary search over releases `0..n` (oldest first), release 0 known good
/// and `n - 1` known bad: probes the untested release nearest the middle of
/// the open interval until no untested one is left.
pub fn search(n: usize, mut probe: impl FnMut(usize) -> Verdict) -> SearchOutcome {
    assert!(n >= 2, "a search needs a good and a bad release");
    let (mut good, mut bad) = (0, n - 1);
    let mut skipped = BTreeSet::new();
    loop {
        let middle = (good + bad) / 2;
        let next = (good + 1..bad)
            .filter(|i| !skipped.contains(i))
            .min_by_key(|i| i.abs_diff(middle));
        let Some(i) = next else {
            let between: Vec<usize> = skipped.range(good + 1..bad).copied().collect();
            return if between.is_empty() {
                SearchOutcome::Found {
                    last_good: good,
                    first_bad: bad,
                }
            } else {
                SearchOutcome::Ambiguous {
                    last_good: good,
                    first_bad: bad,
                    skipped: between,
                }
            };
        };
        match probe(i) {
            Verdict::Good => good = i,
            Verdict::Bad => bad = i,
            Verdict::Skip(_) => {
                skipped.insert(i);
            }
        }
    }
}

/// The releases of ai-dynamo in `range`, oldest first, from PyPI's JSON
/// (`releases`: version → files): those with a wheel that is not yanked.
pub fn releases_in(pypi_json: &serde_json::Value, range: &ReleaseRange) -> Vec<Version> {
    let mut versions: Vec<Version> = pypi_json["releases"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, files)| {
            files.as_array().is_some_and(|files| {
                files.iter().any(|f| {
                    f["packagetype"] == "bdist_wheel" && f["yanked"].as_bool() != Some(true)
                })
            })
        })
        .filter_map(|(v, _)| Version::from_str(v).ok())
        .filter(|v| *v >= range.good && *v <= range.bad)
        .collect();
    versions.sort();
    versions
}

/// Runs the bisect: lists the releases, checks both ends, searches.
pub fn run(
    sh: &Shell,
    range: &ReleaseRange,
    tier: crate::tier::Tier,
    nextest_args: &[String],
) -> anyhow::Result<i32> {
    let url = "https://pypi.org/pypi/ai-dynamo/json";
    println!("bisect: listing ai-dynamo releases from {url} …");
    let json = crate::provision::get_json(url)
        .with_context(|| format!("could not list the releases at {url}; --dynamo needs PyPI"))?;
    let releases = releases_in(&json, range);
    anyhow::ensure!(
        releases.first() == Some(&range.good) && releases.last() == Some(&range.bad),
        "{} and {} must both be ai-dynamo releases with wheels on PyPI; in that range PyPI has: {}",
        range.good,
        range.bad,
        releases
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let steps = (releases.len() as f64).log2().ceil() as usize;
    println!(
        "bisect: {} releases from {} to {}; about {steps} steps after checking both ends",
        releases.len(),
        range.good,
        range.bad
    );
    let mut prober = Prober {
        sh,
        tier,
        nextest_args,
        last_logs: None,
    };
    match prober.probe(&releases[0]) {
        Verdict::Good => {}
        Verdict::Bad => anyhow::bail!(
            "the tests already fail with the good release {}: pick an older one",
            range.good
        ),
        Verdict::Skip(why) => anyhow::bail!("the good release {} is untestable: {why}", range.good),
    }
    let bad_logs = match prober.probe(&releases[releases.len() - 1]) {
        Verdict::Bad => prober.last_logs.clone(),
        Verdict::Good => anyhow::bail!(
            "the tests pass with the bad release {}: nothing to bisect",
            range.bad
        ),
        Verdict::Skip(why) => anyhow::bail!("the bad release {} is untestable: {why}", range.bad),
    };
    let mut logs_of_bad = vec![(releases.len() - 1, bad_logs)];
    let outcome = search(releases.len(), |i| {
        let verdict = prober.probe(&releases[i]);
        if verdict == Verdict::Bad {
            logs_of_bad.push((i, prober.last_logs.clone()));
        }
        verdict
    });
    match outcome {
        SearchOutcome::Found {
            last_good,
            first_bad,
        } => {
            println!(
                "\nbisect: first bad release ai-dynamo {} (last good: {})",
                releases[first_bad], releases[last_good]
            );
            if let Some((_, Some(logs))) = logs_of_bad.iter().find(|(i, _)| *i == first_bad) {
                println!("bisect: logs of its failing run: {}", logs.display());
            }
            Ok(0)
        }
        SearchOutcome::Ambiguous {
            last_good,
            first_bad,
            skipped,
        } => {
            let names: Vec<String> = skipped.iter().map(|&i| releases[i].to_string()).collect();
            println!(
                "\nbisect: the change is after {} and at or before {}; untestable in between: {}",
                releases[last_good],
                releases[first_bad],
                names.join(", ")
            );
            Ok(1)
        }
    }
}

/// Provisions a release's env and runs the tier's tests with it.
struct Prober<'a> {
    sh: &'a Shell,
    tier: crate::tier::Tier,
    nextest_args: &'a [String],
    /// The logs folder the last run printed, if it failed.
    last_logs: Option<PathBuf>,
}

impl Prober<'_> {
    fn probe(&mut self, version: &Version) -> Verdict {
        println!("\nbisect: ── ai-dynamo {version} ──");
        self.last_logs = None;
        let env = match self.env_of(version) {
            Ok(env) => env,
            Err(e) => {
                let why = format!("{e:#}");
                println!("bisect: ai-dynamo {version}: skipped, cannot provision: {why}");
                return Verdict::Skip(why);
            }
        };
        match self.run_tier(&env) {
            Ok(true) => {
                println!("bisect: ai-dynamo {version}: good");
                Verdict::Good
            }
            Ok(false) => {
                println!("bisect: ai-dynamo {version}: bad");
                Verdict::Bad
            }
            Err(e) => Verdict::Skip(format!("{e:#}")),
        }
    }

    /// The release's lock (made once with uv, kept in the cache) and env.
    fn env_of(&self, version: &Version) -> anyhow::Result<PythonEnv> {
        let layout = Layout::from_env();
        let pins = Pins::from_repo()?;
        if Some(version.to_string()) == pins.env("dynamo")?.version {
            // The pinned release: the committed lock and the env of every run.
            let env = PythonEnv::of(&layout, &pins, "dynamo")?;
            crate::provision::ensure_env(self.sh, &layout, &pins, &env, false)?;
            return Ok(env);
        }
        let locks = layout.cache_dir.join("python").join("locks");
        Layout::ensure_dir(&locks)?;
        let lock = locks.join(format!("dynamo-{version}.lock"));
        if !lock.is_file() {
            let uv = crate::provision::ensure_tool(&layout, &pins, "uv")?.path;
            let input = locks.join(format!("dynamo-{version}.in"));
            std::fs::write(&input, format!("ai-dynamo=={version}\n"))?;
            // `aisimulate` (only dynamo.planner imports it) is a placeholder
            // whose build downloads from a host outside PyPI: left out, as
            // in the pinned locks.
            let overrides = locks.join("overrides.txt");
            std::fs::write(&overrides, "aisimulate ; sys_platform == 'never'\n")?;
            let partial = locks.join(format!("dynamo-{version}.lock.partial"));
            let python = &pins.python.version;
            let out = cmd!(
                self.sh,
                "{uv} pip compile {input} --override {overrides} --python-version {python} --python-platform x86_64-manylinux_2_28 --generate-hashes -o {partial}"
            )
            .envs(crate::provision::uv_env(&layout))
            .quiet()
            .ignore_status()
            .output()?;
            anyhow::ensure!(
                out.status.success(),
                "uv could not lock ai-dynamo=={version}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            std::fs::rename(&partial, &lock)?;
        }
        let env = PythonEnv::for_lock(&layout, &pins, "dynamo", &version.to_string(), &lock)?;
        crate::provision::ensure_env(self.sh, &layout, &pins, &env, false)?;
        Ok(env)
    }

    /// `cargo xtask test --tier T --no-setup` with the release's env;
    /// whether it passed. Its output goes to the terminal as it comes.
    fn run_tier(&mut self, env: &PythonEnv) -> anyhow::Result<bool> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .args(["test", "--tier", self.tier.name(), "--no-setup", "--"])
            .args(self.nextest_args)
            .env(&env.pin.env, &env.dir)
            .current_dir(self.sh.current_dir())
            .stdout(Stdio::piped())
            .spawn()
            .context("start `xtask test`")?;
        let stdout = child.stdout.take().expect("piped");
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some((_, dir)) = line.split_once("logs of failed tests") {
                if let Some((_, path)) = dir.split_once(": ") {
                    self.last_logs = Some(PathBuf::from(path.trim()));
                }
            }
        }
        Ok(child.wait()?.success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_or_show_the_accepted_form() {
        let form = "expected GOOD..BAD with two ai-dynamo versions, e.g. 1.6.0.dev20261001..1.6.1";
        let cases: [(&str, &str, Result<&str, String>); 4] = [
            ("nightly to release", "1.6.0.dev20261001..1.6.1", Ok("1.6.0.dev20261001..1.6.1")),
            ("no dots", "1.6.0", Err(format!("{form}; got \"1.6.0\""))),
            (
                "reversed",
                "1.6.1..1.6.0",
                Err(format!("{form}; the good release must be older than the bad one, got 1.6.1..1.6.0")),
            ),
            (
                "dev before its release",
                "1.6.0..1.6.0.dev20261001",
                Err(format!("{form}; the good release must be older than the bad one, got 1.6.0..1.6.0.dev20261001")),
            ),
        ];
        for (name, input, expected) in cases {
            let got = input.parse::<ReleaseRange>().map(|r| r.to_string());
            assert_eq!(got, expected.map(str::to_owned), "case {name}");
        }
        assert!("x..1.6.1"
            .parse::<ReleaseRange>()
            .unwrap_err()
            .contains("\"x\" is not a version"));
    }

    #[test]
    fn releases_in_range_are_the_wheeled_unyanked_ones_in_version_order() {
        let wheel = serde_json::json!([{"packagetype": "bdist_wheel", "yanked": false}]);
        let json = serde_json::json!({"releases": {
            "1.6.1": wheel,
            "1.6.0.dev20261002": wheel,
            "1.6.0.dev20261001": wheel,
            "1.6.0.dev20261003": [{"packagetype": "bdist_wheel", "yanked": true}],
            "1.6.0.dev20261004": [{"packagetype": "sdist", "yanked": false}],
            "1.7.0.dev20261025": wheel,
            "1.5.0": wheel,
        }});
        let range: ReleaseRange = "1.6.0.dev20261001..1.6.1".parse().unwrap();
        let got: Vec<String> = releases_in(&json, &range)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, ["1.6.0.dev20261001", "1.6.0.dev20261002", "1.6.1"]);
    }

    /// Releases 0..n where `first_bad` and later fail and `skip` cannot be
    /// provisioned; the search's outcome and how many probes it took.
    fn bisect(n: usize, first_bad: usize, skip: &[usize]) -> (SearchOutcome, usize) {
        let mut probes = 0;
        let outcome = search(n, |i| {
            probes += 1;
            if skip.contains(&i) {
                Verdict::Skip("no wheel".into())
            } else if i >= first_bad {
                Verdict::Bad
            } else {
                Verdict::Good
            }
        });
        (outcome, probes)
    }

    #[test]
    fn search_finds_the_exact_release_or_names_the_skipped_ones() {
        let found = |g, b| SearchOutcome::Found {
            last_good: g,
            first_bad: b,
        };
        /// Name, releases, first bad, skipped, outcome, most probes.
        type Case<'a> = (&'a str, usize, usize, &'a [usize], SearchOutcome, usize);
        let cases: [Case; 6] = [
            ("adjacent ends", 2, 1, &[], found(0, 1), 0),
            (
                "twenty releases, change at 13",
                20,
                13,
                &[],
                found(12, 13),
                5,
            ),
            (
                "change right after the good end",
                20,
                1,
                &[],
                found(0, 1),
                5,
            ),
            ("change at the bad end", 20, 19, &[], found(18, 19), 5),
            (
                "skips around the middle",
                20,
                13,
                &[9, 10, 11],
                found(12, 13),
                8,
            ),
            (
                "the change among skipped releases",
                20,
                13,
                &[12, 13],
                SearchOutcome::Ambiguous {
                    last_good: 11,
                    first_bad: 14,
                    skipped: vec![12, 13],
                },
                6,
            ),
        ];
        for (name, n, first_bad, skip, expected, max_probes) in cases {
            let (outcome, probes) = bisect(n, first_bad, skip);
            assert_eq!(outcome, expected, "case {name}");
            assert!(probes <= max_probes, "case {name}: {probes} probes");
        }
    }
}
