//! The bench load generator: a pure HTTP client of an OpenAI-compatible
//! endpoint. It sweeps concurrency with prompts of an exact input token
//! count and a fixed output length, records per request the time to first
//! token, the inter-token latencies, the end-to-end latency, the output
//! tokens and the error kind, and aggregates them per point (mean, p50, p90,
//! p99, requests/s, output tokens/s, errors by kind).
//!
//! Around it: the results of a run (`results.json`, `results.csv`, charts in
//! PNG and SVG), the comparison of two runs against a regression threshold,
//! and a loopback SSE server with configured delays that measures the
//! generator itself.
//!
//! It knows no Dynamo: the tokenizer that counts prompt tokens and the URL
//! to load are given by the caller.

pub mod charts;
pub mod compare;
pub mod engine;
pub mod prompts;
pub mod results;
pub mod sse;
pub mod stats;

pub use compare::{compare, Comparison, MetricDelta};
pub use engine::{run_point, sweep, BenchSpec, ConnectionMode, Endpoint, ErrorKind, RequestRecord};
pub use prompts::{CountWith, PromptSet, TokenCounter};
pub use results::{BenchResults, HostInfo};
pub use sse::{LoopbackSseServer, SseServerConfig};
pub use stats::{PointResult, Summary};

#[cfg(test)]
mod testdata {
    use crate::engine::{BenchSpec, RequestRecord};
    use crate::results::BenchResults;
    use crate::stats::PointResult;

    /// Results of a made-up sweep.
    pub(crate) fn synthetic(run_id: &str, scale: f64) -> BenchResults {
        let points = [1usize, 2, 4, 8, 16]
            .iter()
            .map(|&c| {
                let records: Vec<RequestRecord> = (0..20)
                    .map(|i| RequestRecord {
                        ttft_ms: Some(scale * (5.0 + c as f64 + i as f64 * 0.1)),
                        itl_ms: vec![scale * (1.0 + c as f64 * 0.05); 7],
                        e2e_ms: scale * (12.0 + c as f64 * 2.0),
                        input_tokens: Some(130),
                        output_tokens: 8,
                        error: None,
                    })
                    .collect();
                PointResult::aggregate(c, &records, 0.05 * scale * (20.0 / c as f64).max(1.0))
            })
            .collect();
        BenchResults::new(
            run_id,
            BenchSpec::new("http://x", "tiny"),
            "synthetic",
            points,
        )
    }
}
