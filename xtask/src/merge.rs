//! `cargo xtask report merge DIR…`: the run folders of a tier's shares
//! (`cargo xtask test --partition K/N`, on one machine or several) merged
//! into one run — one summary, one JUnit file per tier, one report — as if
//! one machine had run the whole tier.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use testbed_harness::{Layout, Pins, RunId};

use crate::exit::Exit;
use crate::flags::MergeFlags;
use crate::summary::{self, Skipped, TierResult};
use crate::tier::Tier;

/// Merges the shares `flags` names; returns the exit code (1 when a share
/// failed, as the whole run would have).
pub fn run(flags: &MergeFlags) -> anyhow::Result<i32> {
    let layout = Layout::from_env();
    let mut shares = Vec::new();
    for dir in &flags.dirs {
        let (results, partition) = summary::load(dir)?;
        let partition = partition.unwrap_or_else(|| "the whole tier".into());
        eprintln!("report merge: {} ({partition})", dir.display());
        shares.push((dir.clone(), results));
    }
    let out = match &flags.out {
        Some(dir) => dir.clone(),
        None => layout.run_artifacts(&RunId::fresh("merged")),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let merged = merge(&shares, &out)?;
    summary::print(&merged, &out, flags.json);
    summary::save(&merged, &out, None)?;
    let pins = Pins::from_repo()?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "merged".into());
    let report = crate::test::write_report(&layout, &pins, &name, &out, &merged, &[])?;
    eprintln!("report: {}", report.display());
    if flags.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary::json(&merged, &out))?
        );
    }
    Ok(if merged.iter().all(|(_, r)| r.ok()) {
        Exit::Success.code()
    } else {
        Exit::TestsFailed.code()
    })
}

/// The shares' results per tier, summed; the merged JUnit files are
/// written under `out/junit/<tier>/`. A test that ran in two shares is an
/// error (the shares overlap).
fn merge(
    shares: &[(PathBuf, Vec<(Tier, TierResult)>)],
    out: &Path,
) -> anyhow::Result<Vec<(Tier, TierResult)>> {
    let mut tiers: BTreeMap<Tier, TierResult> = BTreeMap::new();
    let mut suites: BTreeMap<Tier, Vec<String>> = BTreeMap::new();
    let mut ran_in: BTreeMap<(Tier, String), &Path> = BTreeMap::new();
    for (dir, results) in shares {
        for (tier, r) in results {
            let m = tiers.entry(*tier).or_default();
            m.passed += r.passed;
            m.failed += r.failed;
            m.flaky += r.flaky;
            // The shares ran side by side: the tier took the longest one.
            m.wall = m.wall.max(r.wall);
            if m.exit_code == 0 {
                m.exit_code = r.exit_code;
            }
            m.leaked.extend(r.leaked.iter().cloned());
            for s in &r.skipped {
                if !m.skipped.iter().any(|k: &Skipped| k.name == s.name) {
                    m.skipped.push(s.clone());
                }
            }
            for junit in r.junit.iter().filter(|p| p.ends_with("junit.xml")) {
                let text = std::fs::read_to_string(junit)
                    .with_context(|| format!("read {}", junit.display()))?;
                let doc = roxmltree::Document::parse(&text)
                    .with_context(|| format!("parse {}", junit.display()))?;
                for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
                    let name = format!(
                        "{} {}",
                        case.attribute("classname").unwrap_or_default(),
                        case.attribute("name").unwrap_or_default()
                    );
                    if let Some(first) = ran_in.insert((*tier, name.clone()), dir) {
                        anyhow::bail!(
                            "{name} ran in two shares ({} and {}): the shares overlap; run each share once with the same N (`--partition hash:K/N`, K = 1..N)",
                            first.display(),
                            dir.display()
                        );
                    }
                }
                suites.entry(*tier).or_default().extend(
                    doc.root_element()
                        .children()
                        .filter(|n| n.has_tag_name("testsuite"))
                        .map(|s| text[s.range()].to_owned()),
                );
            }
        }
    }
    let mut merged = Vec::new();
    for (tier, mut r) in tiers {
        let dir = out.join("junit").join(tier.name());
        std::fs::create_dir_all(&dir)?;
        let junit = dir.join("junit.xml");
        let (tests, failures) = (r.passed + r.failed, r.failed);
        let body = suites.remove(&tier).unwrap_or_default().join("\n");
        std::fs::write(
            &junit,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{tier} (merged)\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">\n{body}\n</testsuites>\n"
            ),
        )?;
        let skipped = dir.join("skipped.xml");
        summary::write_skipped_junit(&skipped, tier, &r.skipped)?;
        r.junit = vec![junit, skipped];
        merged.push((tier, r));
    }
    Ok(merged)
}
