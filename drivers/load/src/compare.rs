//! Two runs side by side: per concurrency both runs have, the rates
//! (higher is better) and the TTFT, ITL and end-to-end percentiles (lower
//! is better), with the change in percent, and the metrics that got worse
//! by more than a threshold. New failures are always a regression.
//!
//! Noise: when both runs measured each point in several rounds, a metric
//! regresses only if, besides the threshold, every round of the new run is
//! worse than every round of the old one. A rerun on a busy machine moves
//! the pooled value by a few percent, now up, now down; the rounds of the
//! two runs then overlap. A real slowdown moves them all.

use std::fmt::Write as _;

use crate::results::BenchResults;
use crate::stats::PointResult;

/// One metric at one concurrency in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDelta {
    /// The point's load (`c=16`, `32 req/s`).
    pub load: String,
    /// The metric's name (`request_rate`, `ttft_p50_ms`, …).
    pub metric: &'static str,
    /// Its value in the old run.
    pub old: f64,
    /// Its value in the new run.
    pub new: f64,
    /// How much worse the new run is, in percent of the old value
    /// (negative: better); `None` when the old value is zero.
    pub worse_pct: Option<f64>,
    /// How far its rounds spread, in percent of their median: the larger
    /// of the two runs' spreads; `None` unless both runs have rounds.
    pub noise_pct: Option<f64>,
    /// Whether it got worse by more than the threshold (and the floor),
    /// with every new round worse than every old one.
    pub regressed: bool,
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// The threshold, in percent.
    pub threshold_pct: f64,
    /// Latency changes smaller than this many ms are never regressions
    /// (sub-millisecond percentiles swing by multiples between reruns).
    pub min_delta_ms: f64,
    /// Every metric of every shared concurrency.
    pub rows: Vec<MetricDelta>,
    /// Loads only one of the runs has.
    pub unmatched: Vec<String>,
}

/// A metric: its name, its value, and whether higher is better.
type Metric = (&'static str, fn(&PointResult) -> f64, bool);

const METRICS: [Metric; 9] = [
    ("request_rate", |p| p.request_rate, true),
    ("output_token_rate", |p| p.output_token_rate, true),
    ("ttft_p50_ms", |p| p.ttft_ms.p50, false),
    ("ttft_p99_ms", |p| p.ttft_ms.p99, false),
    ("itl_p50_ms", |p| p.itl_ms.p50, false),
    ("itl_p99_ms", |p| p.itl_ms.p99, false),
    ("e2e_p50_ms", |p| p.e2e_ms.p50, false),
    ("e2e_p99_ms", |p| p.e2e_ms.p99, false),
    ("failed", |p| p.failed as f64, false),
];

/// Compares `new` against `old` at `threshold_pct` percent, every change
/// counted however small.
pub fn compare(old: &BenchResults, new: &BenchResults, threshold_pct: f64) -> Comparison {
    compare_with_floor(old, new, threshold_pct, 0.0)
}

/// Compares `new` against `old` at `threshold_pct` percent; a latency
/// metric (`*_ms`) also has to be worse by more than `min_delta_ms`.
pub fn compare_with_floor(
    old: &BenchResults,
    new: &BenchResults,
    threshold_pct: f64,
    min_delta_ms: f64,
) -> Comparison {
    let mut rows = Vec::new();
    let mut unmatched = Vec::new();
    for o in &old.points {
        let Some(n) = new.points.iter().find(|n| n.same_load(o)) else {
            unmatched.push(o.load());
            continue;
        };
        for (metric, value, higher_better) in METRICS {
            let (ov, nv) = (value(o), value(n));
            let worse_pct = (ov != 0.0).then(|| {
                let change = (nv - ov) / ov * 100.0;
                if higher_better {
                    -change
                } else {
                    change
                }
            });
            let (old_rounds, new_rounds) = (round_values(o, value), round_values(n, value));
            let noise_pct = spread_pct(&old_rounds)
                .zip(spread_pct(&new_rounds))
                .map(|(a, b)| a.max(b));
            let regressed = if metric == "failed" {
                nv > ov
            } else {
                let big_enough = !metric.ends_with("_ms") || (nv - ov) > min_delta_ms;
                let beyond_noise = noise_pct.is_none()
                    || if higher_better {
                        max(&new_rounds) < min(&old_rounds)
                    } else {
                        min(&new_rounds) > max(&old_rounds)
                    };
                big_enough && beyond_noise && worse_pct.is_some_and(|w| w > threshold_pct)
            };
            rows.push(MetricDelta {
                load: o.load(),
                metric,
                old: ov,
                new: nv,
                worse_pct,
                noise_pct,
                regressed,
            });
        }
    }
    unmatched.extend(
        new.points
            .iter()
            .filter(|n| !old.points.iter().any(|o| o.same_load(n)))
            .map(PointResult::load),
    );
    Comparison {
        threshold_pct,
        min_delta_ms,
        rows,
        unmatched,
    }
}

/// A metric's value in each round of a point (empty without rounds).
fn round_values(point: &PointResult, value: fn(&PointResult) -> f64) -> Vec<f64> {
    point.rounds.iter().map(value).collect()
}

/// (max − min) / median of two or more values, in percent; `None` for
/// fewer values or a zero median.
fn spread_pct(values: &[f64]) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = crate::stats::percentile(&sorted, 50.0);
    (median != 0.0).then(|| (max(values) - min(values)) / median.abs() * 100.0)
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

impl Comparison {
    /// The metrics that regressed.
    pub fn regressions(&self) -> Vec<&MetricDelta> {
        self.rows.iter().filter(|r| r.regressed).collect()
    }

    /// A side-by-side table; regressions are marked `REGRESSED`.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:>12}  {:<18} {:>12} {:>12} {:>9} {:>8}\n",
            "load", "metric", "old", "new", "worse", "noise"
        );
        for r in &self.rows {
            let worse = r
                .worse_pct
                .map_or_else(|| "n/a".to_owned(), |w| format!("{w:+.1}%"));
            let noise = r
                .noise_pct
                .map_or_else(|| "-".to_owned(), |n| format!("{n:.1}%"));
            let _ = writeln!(
                out,
                "{:>12}  {:<18} {:>12.3} {:>12.3} {:>9} {:>8}{}",
                r.load,
                r.metric,
                r.old,
                r.new,
                worse,
                noise,
                if r.regressed { "  REGRESSED" } else { "" }
            );
        }
        if !self.unmatched.is_empty() {
            let _ = writeln!(
                out,
                "loads in only one run (not compared): {:?}",
                self.unmatched
            );
        }
        let n = self.regressions().len();
        let rule = if self.rows.iter().any(|r| r.noise_pct.is_some()) {
            " with every round of the new run worse than every round of the old"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{}",
            if n == 0 {
                format!("no metric worse by more than {}%{rule}", self.threshold_pct)
            } else {
                format!(
                    "{n} metric(s) worse by more than {}%{rule}",
                    self.threshold_pct
                )
            }
        );
        out
    }
}

/// Parses a threshold: `10%`, `10` or `2.5%` → percent.
pub fn parse_threshold(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "expected a percentage such as 10% or 2.5, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testdata::synthetic;

    #[test]
    fn identical_runs_pass_and_a_planted_regression_is_named() {
        let old = synthetic("old", 1.0);
        let same = compare(&old, &old.clone(), 10.0);
        assert!(same.regressions().is_empty(), "{}", same.table());
        assert_eq!(same.rows.len(), 5 * 9);
        // 20% slower everywhere: latencies up, rates down.
        let slow = synthetic("new", 1.2);
        let cmp = compare(&old, &slow, 10.0);
        let names: std::collections::BTreeSet<_> =
            cmp.regressions().iter().map(|r| r.metric).collect();
        assert!(
            names.contains("ttft_p50_ms") && names.contains("request_rate"),
            "{}",
            cmp.table()
        );
        assert!(!names.contains("failed"));
        assert!(cmp.table().contains("REGRESSED"));
        // Within a 25% threshold it passes.
        assert!(compare(&old, &slow, 25.0).regressions().is_empty());
        // A floor above the planted change in ms spares the latencies only.
        let floored = compare_with_floor(&old, &slow, 10.0, 1000.0);
        let names: std::collections::BTreeSet<_> =
            floored.regressions().iter().map(|r| r.metric).collect();
        assert_eq!(names, ["output_token_rate", "request_rate"].into());
        // Faster is never a regression.
        assert!(compare(&slow, &old, 0.0).regressions().is_empty());
    }

    /// A point of `ttfts.len()` rounds, round `i` one request with TTFT
    /// `ttfts[i]` ms that took `secs[i]` seconds.
    fn rounds(ttfts: &[f64], secs: &[f64]) -> BenchResults {
        let record = |ttft: f64| crate::request::RequestRecord {
            ttft_ms: Some(ttft),
            itl_ms: vec![1.0],
            e2e_ms: ttft + 1.0,
            input_tokens: Some(10),
            output_tokens: 2,
            error: None,
            ..crate::request::RequestRecord::default()
        };
        let rounds: Vec<PointResult> = ttfts
            .iter()
            .zip(secs)
            .map(|(&t, &s)| PointResult::aggregate(4, &[record(t)], s))
            .collect();
        let all: Vec<_> = ttfts.iter().map(|&t| record(t)).collect();
        let mut run = synthetic("r", 1.0);
        run.points = vec![PointResult {
            rounds,
            ..PointResult::aggregate(4, &all, secs.iter().sum())
        }];
        run
    }

    #[test]
    fn a_change_within_the_rounds_spread_is_noise() {
        // TTFT p50 20 → 24 ms (+20%) and rate −17%, but the rounds overlap.
        let old = rounds(&[18.0, 20.0, 26.0], &[1.0, 1.0, 1.3]);
        let new = rounds(&[21.0, 24.0, 25.0], &[1.1, 1.2, 1.3]);
        let cmp = compare(&old, &new, 10.0);
        let ttft = cmp.rows.iter().find(|r| r.metric == "ttft_p50_ms").unwrap();
        assert_eq!(ttft.worse_pct, Some(20.0));
        assert_eq!(ttft.noise_pct, Some(40.0));
        assert!(cmp.regressions().is_empty(), "{}", cmp.table());
        assert!(cmp.table().contains("every round of the new run"));
    }

    #[test]
    fn every_round_worse_is_a_regression() {
        let old = rounds(&[19.0, 20.0, 21.0], &[1.0, 1.0, 1.0]);
        let new = rounds(&[23.0, 24.0, 26.0], &[1.2, 1.2, 1.25]);
        let names: std::collections::BTreeSet<_> = compare(&old, &new, 10.0)
            .regressions()
            .iter()
            .map(|r| r.metric)
            .collect();
        assert!(names.contains("ttft_p50_ms"), "{names:?}");
        assert!(names.contains("request_rate"), "{names:?}");
        // One round of the new run as good as the old's worst: noise.
        let new = rounds(&[21.0, 24.0, 26.0], &[1.0, 1.2, 1.25]);
        let names: Vec<_> = compare(&old, &new, 10.0)
            .regressions()
            .iter()
            .map(|r| r.metric)
            .collect();
        assert!(!names.contains(&"ttft_p50_ms"), "{names:?}");
        assert!(!names.contains(&"request_rate"), "{names:?}");
    }

    #[test]
    fn thresholds_parse() {
        assert_eq!(parse_threshold("10%"), Ok(10.0));
        assert_eq!(parse_threshold("2.5"), Ok(2.5));
        assert!(parse_threshold("-1%").is_err());
        assert!(parse_threshold("ten").is_err());
    }
}
