//! Aggregates of one point of a sweep: latency summaries (mean and
//! nearest-rank percentiles over sorted samples), rates and errors by kind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::request::RequestRecord;

/// A latency distribution, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest sample.
    pub min: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 90th percentile (nearest rank).
    pub p90: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// The summary of `samples` (all zeros when there are none).
    pub fn of(mut samples: Vec<f64>) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        Summary {
            count: n,
            mean: samples.iter().sum::<f64>() / n as f64,
            min: samples[0],
            p50: percentile(&samples, 50.0),
            p90: percentile(&samples, 90.0),
            p99: percentile(&samples, 99.0),
            max: samples[n - 1],
        }
    }
}

/// The nearest-rank percentile `p` of sorted, non-empty `sorted`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One point of a sweep: what was asked, what came back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    /// Requests in flight at once (closed loop); 0 for an open-loop point.
    pub concurrency: usize,
    /// The offered Poisson rate of an open-loop point, requests/s; `None`
    /// for a closed-loop point or a trace replayed at its own times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offered_rate: Option<f64>,
    /// Requests sent.
    pub requests: usize,
    /// Requests that delivered every token.
    pub completed: usize,
    /// Requests that failed, any kind.
    pub failed: usize,
    /// Failures by kind (`status_503`, `timeout`, …).
    pub errors: BTreeMap<String, usize>,
    /// Wall time of the point, from the first send to the last answer, in
    /// seconds.
    pub duration_s: f64,
    /// Completed requests per second.
    pub request_rate: f64,
    /// Output tokens of completed requests per second.
    pub output_token_rate: f64,
    /// Output tokens of completed requests, all together.
    pub output_tokens: u64,
    /// Prompt tokens per request as the server reported them (usage), mean;
    /// includes the chat template's own tokens.
    pub input_tokens_mean: f64,
    /// Fewest prompt tokens a request reported.
    pub input_tokens_min: u64,
    /// Most prompt tokens a request reported.
    pub input_tokens_max: u64,
    /// Time to first content token, ms.
    pub ttft_ms: Summary,
    /// Time between consecutive content chunks, over every request, ms.
    pub itl_ms: Summary,
    /// Request latency from send to the end of the answer, ms.
    pub e2e_ms: Summary,
    /// With more than one round: each round's own result (whose `rounds`
    /// are empty); the fields above aggregate them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rounds: Vec<PointResult>,
}

impl PointResult {
    /// The point's load in words: `c=16`, `32 req/s`, `trace`.
    pub fn load(&self) -> String {
        match (self.offered_rate, self.concurrency) {
            (Some(rate), _) => format!("{rate} req/s"),
            (None, 0) => "trace".to_owned(),
            (None, c) => format!("c={c}"),
        }
    }

    /// Whether `other` is the same load (for comparisons).
    pub fn same_load(&self, other: &PointResult) -> bool {
        self.concurrency == other.concurrency && self.offered_rate == other.offered_rate
    }

    /// Aggregates the records of one point that took `duration_s`.
    pub fn aggregate(
        concurrency: usize,
        records: &[RequestRecord],
        duration_s: f64,
    ) -> PointResult {
        let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.error.is_none()).collect();
        let mut errors = BTreeMap::new();
        for r in records {
            if let Some(e) = &r.error {
                *errors.entry(e.to_string()).or_default() += 1;
            }
        }
        let output_tokens: u64 = ok.iter().map(|r| r.output_tokens).sum();
        let inputs: Vec<u64> = ok.iter().filter_map(|r| r.input_tokens).collect();
        let rate = |x: f64| {
            if duration_s > 0.0 {
                x / duration_s
            } else {
                0.0
            }
        };
        PointResult {
            concurrency,
            offered_rate: None,
            requests: records.len(),
            completed: ok.len(),
            failed: records.len() - ok.len(),
            errors,
            duration_s,
            request_rate: rate(ok.len() as f64),
            output_token_rate: rate(output_tokens as f64),
            output_tokens,
            input_tokens_mean: if inputs.is_empty() {
                0.0
            } else {
                inputs.iter().sum::<u64>() as f64 / inputs.len() as f64
            },
            input_tokens_min: inputs.iter().copied().min().unwrap_or(0),
            input_tokens_max: inputs.iter().copied().max().unwrap_or(0),
            ttft_ms: Summary::of(ok.iter().filter_map(|r| r.ttft_ms).collect()),
            itl_ms: Summary::of(ok.iter().flat_map(|r| r.itl_ms.iter().copied()).collect()),
            e2e_ms: Summary::of(ok.iter().map(|r| r.e2e_ms).collect()),
            rounds: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::ErrorKind;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = Summary::of((1..=100).rev().map(f64::from).collect());
        assert_eq!(
            (s.count, s.min, s.p50, s.p90, s.p99, s.max),
            (100, 1.0, 50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(s.mean, 50.5);
        let one = Summary::of(vec![7.0]);
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
        assert_eq!(Summary::of(vec![]), Summary::default());
    }

    #[test]
    fn aggregate_counts_errors_and_rates() {
        let ok = |ttft: f64| RequestRecord {
            ttft_ms: Some(ttft),
            itl_ms: vec![1.0, 2.0],
            e2e_ms: ttft + 3.0,
            input_tokens: Some(10),
            output_tokens: 3,
            error: None,
            ..RequestRecord::default()
        };
        let bad = RequestRecord {
            error: Some(ErrorKind::Status(503)),
            ..ok(0.0)
        };
        let p = PointResult::aggregate(2, &[ok(10.0), ok(20.0), bad], 2.0);
        assert_eq!((p.requests, p.completed, p.failed), (3, 2, 1));
        assert_eq!(p.errors["status_503"], 1);
        assert_eq!(p.request_rate, 1.0);
        assert_eq!(p.output_token_rate, 3.0);
        assert_eq!(p.ttft_ms.p50, 10.0);
        assert_eq!(p.itl_ms.count, 4);
        assert_eq!((p.input_tokens_min, p.input_tokens_max), (10, 10));
    }
}
