//! Test-level prerequisites, declared in `tests/needs.toml`: which tests
//! need what beyond their tier. Tests whose needs are unmet are excluded
//! from the nextest run and reported as skipped, with the reason.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use testbed_harness::Pins;

use crate::capability::{Capabilities, Need};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NeedsFile {
    /// The rules.
    #[serde(default)]
    rule: Vec<RawRule>,
}

/// One rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    /// A nextest filterset selecting the tests.
    tests: String,
    /// What they need.
    needs: Vec<String>,
    /// Why, when the need alone does not say it (put before the reason).
    #[serde(default)]
    why: Option<String>,
}

/// One rule: these tests need those things.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// A nextest filterset selecting the tests.
    pub tests: String,
    /// What they need.
    pub needs: Vec<Need>,
    /// Why they need it, when the need alone does not say.
    pub why: Option<String>,
}

/// Reads `tests/needs.toml`.
pub fn load(path: &Path, pins: &Pins) -> anyhow::Result<Vec<Rule>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    parse(&text, pins).with_context(|| format!("malformed {}", path.display()))
}

/// Parses rule text; need names come from `pins`.
pub fn parse(text: &str, pins: &Pins) -> anyhow::Result<Vec<Rule>> {
    let file: NeedsFile = toml::from_str(text)?;
    file.rule
        .into_iter()
        .map(|r| {
            let needs = r
                .needs
                .iter()
                .map(|n| Need::parse(n, pins))
                .collect::<Result<Vec<_>, _>>()
                .map_err(anyhow::Error::msg)?;
            Ok(Rule {
                tests: r.tests,
                needs,
                why: r.why,
            })
        })
        .collect()
}

/// A rule whose needs this machine does not meet, with the reason.
#[derive(Debug, Clone)]
pub struct Unmet {
    /// The filterset of the excluded tests.
    pub tests: String,
    /// Why they are excluded.
    pub reason: String,
}

/// The rules this machine does not meet.
pub fn unmet(rules: &[Rule], caps: &Capabilities) -> Vec<Unmet> {
    rules
        .iter()
        .filter_map(|rule| {
            let missing: Vec<String> = rule
                .needs
                .iter()
                .filter(|n| !caps.has(n))
                .map(|n| format!("needs {n}: {}", caps.reason(n)))
                .collect();
            (!missing.is_empty()).then(|| Unmet {
                tests: rule.tests.clone(),
                reason: match &rule.why {
                    Some(why) => format!("{why}; {}", missing.join("; ")),
                    None => missing.join("; "),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The repository's pins and `tests/needs.toml`.
    fn repo_rules() -> (Pins, Vec<Rule>) {
        let pins = Pins::from_repo().unwrap();
        let path = testbed_harness::Layout::from_env()
            .repo_root
            .join("tests/needs.toml");
        let rules = load(&path, &pins).unwrap();
        (pins, rules)
    }

    #[test]
    fn repo_rules_parse() {
        let (_, rules) = repo_rules();
        assert!(
            rules.iter().any(|r| r.needs.contains(&Need::Gpu)),
            "GPU tests declare their need"
        );
    }

    /// Adding an engine's env to the pins without a rule would run its tests
    /// on machines that lack it, as failures instead of skips.
    #[test]
    fn every_env_of_the_pins_is_needed_by_a_rule() {
        let (pins, rules) = repo_rules();
        for env in pins.envs.keys() {
            let need = Need::Env(env.clone());
            assert!(
                rules.iter().any(|r| r.needs.contains(&need)),
                "nix/pins.toml has env {env:?} but no rule in tests/needs.toml needs {:?}",
                need.name()
            );
        }
    }

    #[test]
    fn parse_cases() {
        let pins = Pins::from_repo().unwrap();
        let cases: &[(&str, &str, Result<usize, &str>)] = &[
            ("empty", "", Ok(0)),
            (
                "one rule",
                "[[rule]]\ntests = \"binary(gpu)\"\nneeds = [\"gpu\"]\n",
                Ok(1),
            ),
            (
                "unknown need",
                "[[rule]]\ntests = \"binary(gpu)\"\nneeds = [\"cuda\"]\n",
                Err("unknown need \"cuda\""),
            ),
            (
                "a rule that says why",
                "[[rule]]\ntests = \"x\"\nneeds = [\"gpu\"]\nwhy = \"it calls CUDA\"\n",
                Ok(1),
            ),
            (
                "unknown key",
                "[[rule]]\ntests = \"x\"\nneeds = []\nbecause = 1\n",
                Err("unknown field `because`"),
            ),
        ];
        for (name, text, expected) in cases {
            match (parse(text, &pins), expected) {
                (Ok(rules), Ok(n)) => assert_eq!(rules.len(), *n, "case {name}"),
                (Err(e), Err(fragment)) => {
                    assert!(format!("{e:#}").contains(fragment), "case {name}: {e:#}")
                }
                (got, _) => panic!("case {name}: got {got:?}"),
            }
        }
    }
}
