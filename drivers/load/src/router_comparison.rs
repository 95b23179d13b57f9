//! Routers side by side on one workload: per load point, each router's
//! TTFT p50 and throughput, and the verdict on KV routing's lead: at every
//! point its TTFT p50 must beat the best of the other routers by at least
//! a margin. A regression in KV routing (the overlap ignored, events
//! lost) closes the gap and fails the verdict.

use std::fmt::Write as _;

use crate::results::BenchResults;

/// One router's numbers at one point.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterPoint {
    /// The router mode (`kv`, `round-robin`, …).
    pub router: String,
    /// TTFT p50, ms.
    pub ttft_p50_ms: f64,
    /// Completed requests per second.
    pub request_rate: f64,
    /// Failed requests.
    pub failed: usize,
}

/// One load point across routers.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The load (`c=8`).
    pub load: String,
    /// Each router's numbers, in the order given.
    pub routers: Vec<RouterPoint>,
    /// How much lower KV's TTFT p50 is than the best other router's, in
    /// percent of the latter (negative: KV is worse).
    pub kv_gain_pct: f64,
}

/// The comparison and its verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterComparison {
    /// The margin KV must win by, in percent.
    pub margin_pct: f64,
    /// One row per load point.
    pub rows: Vec<Row>,
}

impl RouterComparison {
    /// Compares `runs` (one per router, named by the router; one of them
    /// `kv`) point by point.
    pub fn of(
        runs: &[(String, BenchResults)],
        margin_pct: f64,
    ) -> anyhow::Result<RouterComparison> {
        let kv = runs
            .iter()
            .position(|(name, _)| name == "kv")
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the comparison needs the kv router among {:?}",
                    runs.iter().map(|r| &r.0).collect::<Vec<_>>()
                )
            })?;
        anyhow::ensure!(
            runs.len() >= 2,
            "the comparison needs kv and at least one other router"
        );
        let mut rows = Vec::new();
        for point in &runs[kv].1.points {
            let mut routers = Vec::new();
            for (name, run) in runs {
                let p = run
                    .points
                    .iter()
                    .find(|p| p.same_load(point))
                    .ok_or_else(|| {
                        anyhow::anyhow!("router {name} has no point at {}", point.load())
                    })?;
                routers.push(RouterPoint {
                    router: name.clone(),
                    ttft_p50_ms: p.ttft_ms.p50,
                    request_rate: p.request_rate,
                    failed: p.failed,
                });
            }
            let best_other = routers
                .iter()
                .filter(|r| r.router != "kv")
                .map(|r| r.ttft_p50_ms)
                .fold(f64::INFINITY, f64::min);
            let kv_ttft = routers[kv].ttft_p50_ms;
            let kv_gain_pct = if best_other > 0.0 {
                (best_other - kv_ttft) / best_other * 100.0
            } else {
                0.0
            };
            rows.push(Row {
                load: point.load(),
                routers,
                kv_gain_pct,
            });
        }
        Ok(RouterComparison { margin_pct, rows })
    }

    /// Whether KV routing won by the margin at every point, with no
    /// request failed anywhere.
    pub fn kv_wins(&self) -> bool {
        !self.rows.is_empty()
            && self.rows.iter().all(|r| {
                r.kv_gain_pct >= self.margin_pct && r.routers.iter().all(|p| p.failed == 0)
            })
    }

    /// A table for a terminal, with the verdict.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let names: Vec<&str> = self
            .rows
            .first()
            .map(|r| r.routers.iter().map(|p| p.router.as_str()).collect())
            .unwrap_or_default();
        let _ = write!(out, "{:>8}", "load");
        for n in &names {
            let _ = write!(out, " {:>22}", format!("{n} TTFT p50 / req/s"));
        }
        let _ = writeln!(out, " {:>10}", "KV gain");
        for r in &self.rows {
            let _ = write!(out, "{:>8}", r.load);
            for p in &r.routers {
                let failed = if p.failed > 0 {
                    format!(" ({} failed)", p.failed)
                } else {
                    String::new()
                };
                let _ = write!(
                    out,
                    " {:>22}",
                    format!("{:.1} ms / {:.0}{failed}", p.ttft_p50_ms, p.request_rate)
                );
            }
            let _ = writeln!(out, " {:>9.1}%", r.kv_gain_pct);
        }
        let _ = writeln!(
            out,
            "{}",
            if self.kv_wins() {
                format!(
                    "KV routing's TTFT p50 beats the best other router by at least {}% at every point",
                    self.margin_pct
                )
            } else {
                format!(
                    "REGRESSED: KV routing's TTFT p50 does not beat the best other router by {}% at every point (or requests failed)",
                    self.margin_pct
                )
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::synthetic;

    fn runs(kv_scale: f64) -> Vec<(String, BenchResults)> {
        vec![
            ("kv".to_owned(), synthetic("kv", kv_scale)),
            ("round-robin".to_owned(), synthetic("round-robin", 1.0)),
            ("random".to_owned(), synthetic("random", 1.2)),
        ]
    }

    #[test]
    fn kv_wins_only_by_the_margin_at_every_point() {
        // TTFT scales with the synthetic run's scale: kv at 0.7 is 30% lower.
        let win = RouterComparison::of(&runs(0.7), 20.0).unwrap();
        assert!(win.kv_wins(), "{}", win.table());
        assert!(win.rows.iter().all(|r| (r.kv_gain_pct - 30.0).abs() < 1e-6));
        assert!(win
            .table()
            .contains("beats the best other router by at least 20%"));
        let close = RouterComparison::of(&runs(0.9), 20.0).unwrap();
        assert!(!close.kv_wins());
        assert!(close.table().contains("REGRESSED"), "{}", close.table());
    }

    #[test]
    fn failures_and_missing_routers_are_not_a_win() {
        let mut with_failure = runs(0.5);
        with_failure[1].1.points[0].failed = 1;
        assert!(!RouterComparison::of(&with_failure, 20.0).unwrap().kv_wins());
        let no_kv = vec![
            ("random".to_owned(), synthetic("random", 1.0)),
            ("round-robin".to_owned(), synthetic("rr", 1.0)),
        ];
        let err = RouterComparison::of(&no_kv, 20.0).unwrap_err().to_string();
        assert_eq!(
            err,
            "the comparison needs the kv router among [\"random\", \"round-robin\"]"
        );
    }
}
