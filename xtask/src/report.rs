//! One report per `cargo xtask test` run: `target/testbed/<run>/report.html`
//! (self-contained: inline style, no script, no network) and `report.md`
//! (for CI step summaries). Per tier: passed / failed / flaky / skipped and
//! wall time; per test: its duration, and for a failure the last lines of
//! its output and its log folder; skips with their reasons; coverage when
//! measured; pins, git revision and host.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::coverage::{self, Component};
use crate::summary::TierResult;
use crate::tier::Tier;

/// How many output lines a failed test shows.
const EXCERPT_LINES: usize = 20;

/// One test case as the report shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// `binary test::path`.
    pub name: String,
    /// Seconds.
    pub seconds: f64,
    /// What happened.
    pub outcome: Outcome,
}

/// A test's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Passed on the first try.
    Passed,
    /// Passed on a retry.
    Flaky,
    /// Failed; the last lines of its output.
    Failed(String),
}

/// Everything a report shows.
#[derive(Debug)]
pub struct RunReport<'a> {
    /// The run id.
    pub run_id: &'a str,
    /// Tiers in the order they ran.
    pub tiers: &'a [(Tier, TierResult)],
    /// Each tier's test cases (from its JUnit report).
    pub cases: Vec<(Tier, Vec<Case>)>,
    /// Each tier's coverage, when measured.
    pub coverage: &'a [(Tier, Vec<Component>)],
    /// Pins, git revision, host: (what, value).
    pub provenance: Vec<(String, String)>,
    /// The run's log folder.
    pub logs: &'a Path,
}

/// The test cases of a nextest JUnit report.
pub fn cases_from_junit(text: &str) -> anyhow::Result<Vec<Case>> {
    let doc = roxmltree::Document::parse(text)?;
    let mut cases = Vec::new();
    for case in doc.descendants().filter(|n| n.has_tag_name("testcase")) {
        let child = |tag: &str| case.children().find(|c| c.has_tag_name(tag));
        if child("skipped").is_some() {
            continue;
        }
        let name = format!(
            "{} {}",
            case.attribute("classname").unwrap_or(""),
            case.attribute("name").unwrap_or("?")
        );
        let seconds = case
            .attribute("time")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0.0);
        let outcome = if let Some(failure) = child("failure").or_else(|| child("error")) {
            let output: String = ["system-out", "system-err"]
                .iter()
                .filter_map(|t| child(t).and_then(|n| n.text()))
                .collect::<Vec<_>>()
                .join("\n");
            let text = if output.trim().is_empty() {
                failure
                    .text()
                    .or(failure.attribute("message"))
                    .unwrap_or("")
                    .to_owned()
            } else {
                output
            };
            Outcome::Failed(last_lines(&text, EXCERPT_LINES))
        } else if child("flakyFailure").is_some() || child("flakyError").is_some() {
            Outcome::Flaky
        } else {
            Outcome::Passed
        };
        cases.push(Case {
            name,
            seconds,
            outcome,
        });
    }
    Ok(cases)
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The folder a test's logs are kept in (`binary test::path` →
/// `<logs>/test..path`).
pub fn log_folder(logs: &Path, case_name: &str) -> PathBuf {
    let test = case_name.rsplit(' ').next().unwrap_or(case_name);
    logs.join(test.replace("::", ".."))
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
th{background:#f3f3f3}td.n{text-align:right}.ok{color:#176c2d;font-weight:600}.bad{color:#b00020;font-weight:600}\
.skip{color:#8a6d00}pre{background:#fafafa;border:1px solid #ddd;padding:.6em;overflow-x:auto;font-size:90%}\
details{margin:.5em 0}summary{cursor:pointer}";

/// The tier table's columns, in both renderings.
const TIER_COLUMNS: [&str; 7] = [
    "tier", "passed", "failed", "flaky", "skipped", "wall", "status",
];

/// One tier's row of the tier table, as text, in [`TIER_COLUMNS`]' order.
fn tier_row(tier: &Tier, t: &TierResult) -> [String; 7] {
    [
        tier.to_string(),
        t.passed.to_string(),
        t.failed.to_string(),
        t.flaky.to_string(),
        t.skipped.len().to_string(),
        format!("{:.1} s", t.wall.as_secs_f64()),
        if t.ok() { "ok" } else { "FAILED" }.to_owned(),
    ]
}

/// The report as a self-contained HTML page.
pub fn html(r: &RunReport<'_>) -> String {
    let mut h = String::new();
    let ok = r.tiers.iter().all(|(_, t)| t.ok());
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Dynamo Testbed run {id}</title>\
         <style>{STYLE}</style></head><body><h1>Dynamo Testbed run {id}</h1><p class=\"{cls}\">{verdict}</p>",
        id = escape(r.run_id),
        cls = if ok { "ok" } else { "bad" },
        verdict = if ok { "every tier passed" } else { "FAILED" },
    );
    h += "<h2>Tiers</h2><table id=\"tiers\"><tr>";
    for column in TIER_COLUMNS {
        let _ = write!(h, "<th>{column}</th>");
    }
    h += "</tr>";
    for (tier, t) in r.tiers {
        let [name, counts @ .., status] = tier_row(tier, t);
        let _ = write!(h, "<tr><td>{name}</td>");
        for n in counts {
            let _ = write!(h, "<td class=\"n\">{n}</td>");
        }
        let class = if t.ok() { "ok" } else { "bad" };
        let _ = write!(h, "<td class=\"{class}\">{status}</td></tr>");
    }
    h += "</table>";

    for (tier, cases) in &r.cases {
        let failed: Vec<&Case> = cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
            .collect();
        if !failed.is_empty() {
            let _ = write!(h, "<h2>Failed in {tier}</h2>");
            for c in failed {
                if let Outcome::Failed(excerpt) = &c.outcome {
                    let _ = write!(
                        h,
                        "<h3 class=\"bad\">{}</h3><p>logs: <code>{}</code></p><pre>{}</pre>",
                        escape(&c.name),
                        escape(&log_folder(r.logs, &c.name).display().to_string()),
                        escape(excerpt)
                    );
                }
            }
        }
    }

    let skipped: Vec<(Tier, &crate::summary::Skipped)> = r
        .tiers
        .iter()
        .flat_map(|(tier, t)| t.skipped.iter().map(move |s| (*tier, s)))
        .collect();
    if !skipped.is_empty() {
        h += "<h2>Skipped</h2><table id=\"skipped\"><tr><th>tier</th><th>test</th><th>reason</th></tr>";
        for (tier, s) in skipped {
            let _ = write!(
                h,
                "<tr><td>{tier}</td><td>{}</td><td class=\"skip\">{}</td></tr>",
                escape(&s.name),
                escape(&s.reason)
            );
        }
        h += "</table>";
    }

    for (tier, components) in r.coverage {
        let _ = write!(
            h,
            "<h2>Coverage of Dynamo's Python layer ({tier})</h2><table><tr><th>component</th><th>files</th><th>lines</th><th>line %</th><th>branches</th><th>branch %</th></tr>"
        );
        for c in components {
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}/{}</td><td class=\"n\">{:.1}%</td><td class=\"n\">{}/{}</td><td class=\"n\">{:.1}%</td></tr>",
                escape(&c.name),
                c.files,
                c.covered_lines,
                c.statements,
                c.line_pct(),
                c.covered_branches,
                c.branches,
                c.branch_pct()
            );
        }
        h += "</table>";
    }

    for (tier, cases) in &r.cases {
        let _ = write!(
            h,
            "<details><summary>All {} tests of {tier}, slowest first</summary><table><tr><th>test</th><th>seconds</th><th>outcome</th></tr>",
            cases.len()
        );
        let mut sorted: Vec<&Case> = cases.iter().collect();
        sorted.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        for c in sorted {
            let (cls, word) = match c.outcome {
                Outcome::Passed => ("ok", "passed"),
                Outcome::Flaky => ("skip", "flaky"),
                Outcome::Failed(_) => ("bad", "failed"),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"n\">{:.3}</td><td class=\"{cls}\">{word}</td></tr>",
                escape(&c.name),
                c.seconds
            );
        }
        h += "</table></details>";
    }

    h += "<h2>Provenance</h2><table id=\"provenance\">";
    for (what, value) in &r.provenance {
        let _ = write!(
            h,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(what),
            escape(value)
        );
    }
    h += "</table></body></html>\n";
    h
}

/// The report as Markdown (tier table, failures, skips).
pub fn markdown(r: &RunReport<'_>) -> String {
    let mut m = format!("## Dynamo Testbed run `{}`\n\n", r.run_id);
    m += &format!(
        "| {} |\n| :-- | --: | --: | --: | --: | --: | :-- |\n",
        TIER_COLUMNS.join(" | ")
    );
    for (tier, t) in r.tiers {
        let mut row = tier_row(tier, t);
        if !t.ok() {
            row[6] = format!("**{}**", row[6]);
        }
        let _ = writeln!(m, "| {} |", row.join(" | "));
    }
    for (tier, cases) in &r.cases {
        for c in cases {
            if let Outcome::Failed(excerpt) = &c.outcome {
                let _ = write!(
                    m,
                    "\n### Failed in {tier}: `{}`\n\nlogs: `{}`\n\n```\n{excerpt}\n```\n",
                    c.name,
                    log_folder(r.logs, &c.name).display()
                );
            }
        }
    }
    let skips: Vec<String> = r
        .tiers
        .iter()
        .flat_map(|(tier, t)| {
            t.skipped
                .iter()
                .map(move |s| format!("- {tier}: `{}` — {}", s.name, s.reason))
        })
        .collect();
    if !skips.is_empty() {
        m += "\n### Skipped\n\n";
        m += &skips.join("\n");
        m += "\n";
    }
    for (tier, components) in r.coverage {
        let _ = write!(
            m,
            "\n### Coverage ({tier})\n\n```\n{}```\n",
            coverage::table(components)
        );
    }
    m
}

/// Writes `report.html` and `report.md` into `dir`; returns the HTML's path.
pub fn write(r: &RunReport<'_>, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let html_path = dir.join("report.html");
    std::fs::write(&html_path, html(r))?;
    std::fs::write(dir.join("report.md"), markdown(r))?;
    Ok(html_path)
}

/// Pins, git revision and host, for the report.
pub fn provenance(pins: &testbed_harness::Pins, repo: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let git = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    out.push((
        "git revision".to_owned(),
        git.unwrap_or_else(|| "unknown".into()),
    ));
    for (name, tool) in &pins.tools {
        out.push((name.clone(), tool.version.clone()));
    }
    out.push(("python".to_owned(), pins.python.version.clone()));
    for (name, env) in &pins.envs {
        let version = match &env.version {
            Some(v) => format!("{}=={v}", env.package),
            None => format!("{} (from {})", env.package, env.env),
        };
        out.push((format!("env {name}"), version));
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    out.push(("host".to_owned(), format!("{host}, {cores} cores")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="3" failures="1" errors="0">
  <testsuite name="testbed-tests::e2e" tests="3" disabled="0" errors="0" failures="1">
    <testcase name="router::round_robin_alternates" classname="testbed-tests::e2e" timestamp="2026-11-30T10:00:00Z" time="2.5"/>
    <testcase name="router::kv_routing_keeps_a_prefix" classname="testbed-tests::e2e" timestamp="2026-11-30T10:00:00Z" time="3.25">
      <failure type="test failure">thread panicked</failure>
      <system-out>running 1 test</system-out>
      <system-err>line 1
assertion `left == right` failed: group 0: requests sharing a prefix went to {1, 2}</system-err>
    </testcase>
    <testcase name="frontend::health" classname="testbed-tests::e2e" timestamp="2026-11-30T10:00:00Z" time="1.0">
      <flakyFailure type="test failure">once</flakyFailure>
    </testcase>
  </testsuite>
</testsuites>"#;

    #[test]
    fn junit_cases_keep_durations_outcomes_and_the_failures_last_lines() {
        let cases = cases_from_junit(JUNIT).unwrap();
        assert_eq!(cases.len(), 3);
        assert_eq!(
            (cases[0].name.as_str(), cases[0].seconds, &cases[0].outcome),
            (
                "testbed-tests::e2e router::round_robin_alternates",
                2.5,
                &Outcome::Passed
            )
        );
        let Outcome::Failed(excerpt) = &cases[1].outcome else {
            panic!("{:?}", cases[1]);
        };
        assert!(
            excerpt.starts_with("running 1 test\n") && excerpt.ends_with("went to {1, 2}"),
            "{excerpt}"
        );
        assert_eq!(cases[2].outcome, Outcome::Flaky);
    }

    #[test]
    fn excerpts_keep_the_last_lines() {
        let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
        let excerpt = last_lines(&text, 20);
        assert!(
            excerpt.starts_with("line 11\n") && excerpt.ends_with("line 30"),
            "{excerpt}"
        );
    }

    #[test]
    fn html_escapes_what_tests_print() {
        assert_eq!(
            escape("<b>&\"x\"</b>"),
            "&lt;b&gt;&amp;&quot;x&quot;&lt;/b&gt;"
        );
    }

    #[test]
    fn log_folders_follow_the_artifact_naming() {
        assert_eq!(
            log_folder(
                Path::new("/t/run"),
                "testbed-tests::e2e router::round_robin"
            ),
            Path::new("/t/run/router..round_robin")
        );
    }

    /// A report with a failed test, a skip and a flaky test, rendered by
    /// headless Chromium: the DOM it built shows the tier table, the
    /// failure's excerpt and folder, and the skip's reason. A screenshot is
    /// kept at `target/testbed/report-example/report.png`.
    #[test]
    fn slow_report_renders_in_chromium() {
        use std::time::Duration;

        use crate::summary::Skipped;

        let layout = testbed_harness::Layout::from_env();
        let dir = layout.target_dir.join("testbed").join("report-example");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let junit = dir.join("junit.xml");
        std::fs::write(&junit, JUNIT).unwrap();
        let e2e = TierResult {
            passed: 2,
            failed: 1,
            flaky: 1,
            skipped: vec![Skipped {
                name: "testbed-tests::e2e planner::scales_up".into(),
                reason: "dynamo-planner: the planner needs aisimulate, left out of the lock".into(),
            }],
            wall: Duration::from_millis(25_400),
            exit_code: 100,
            junit: vec![junit.clone()],
            leaked: Vec::new(),
        };
        let tiers = [(Tier::E2e, e2e)];
        let pins = testbed_harness::Pins::from_repo().unwrap();
        let report = RunReport {
            run_id: "xtask-example",
            tiers: &tiers,
            cases: vec![(Tier::E2e, cases_from_junit(JUNIT).unwrap())],
            coverage: &[],
            provenance: provenance(&pins, &layout.repo_root),
            logs: &dir,
        };
        let html_path = write(&report, &dir).unwrap();
        let chromium = crate::capability::chromium_binary()
            .expect("chromium (the needs rule skips this test without it)");
        let browse = |extra: &[&str]| {
            let out = std::process::Command::new(&chromium)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                ])
                .arg(format!("--user-data-dir={}", dir.join("profile").display()))
                .args(extra)
                .arg(format!("file://{}", html_path.display()))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let dom = browse(&["--dump-dom"]);
        let row = "<tr><td>e2e</td><td class=\"n\">2</td><td class=\"n\">1</td><td class=\"n\">1</td><td class=\"n\">1</td><td class=\"n\">25.4 s</td><td class=\"bad\">FAILED</td></tr>";
        assert!(dom.contains(row), "the tier table: {dom}");
        assert!(
            dom.contains("testbed-tests::e2e router::kv_routing_keeps_a_prefix"),
            "{dom}"
        );
        assert!(
            dom.contains("group 0: requests sharing a prefix went to {1, 2}</pre>"),
            "the failure's excerpt: {dom}"
        );
        assert!(
            dom.contains(&format!(
                "{}</code>",
                dir.join("router..kv_routing_keeps_a_prefix").display()
            )),
            "{dom}"
        );
        assert!(
            dom.contains("dynamo-planner: the planner needs aisimulate, left out of the lock"),
            "the skip's reason: {dom}"
        );
        let png = dir.join("report.png");
        browse(&[
            &format!("--screenshot={}", png.display()),
            "--window-size=1200,1400",
        ]);
        assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
    }
}
