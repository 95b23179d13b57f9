//! The one client stack: the OpenAI client and its server-sent-events
//! parser, the load generator (bench sweeps and the fault tier's load
//! companion alike), workloads and prompts, per-point statistics, results
//! files, charts, comparisons, and a loopback SSE server with configured
//! delays that measures the generator itself.
//!
//! It is a pure HTTP client: it knows no process and no Dynamo; the URL to
//! load, the tokenizer that counts prompt tokens and where the numbers came
//! from are given by the caller.

pub mod arrivals;
pub mod charts;
pub mod client;
pub mod companion;
pub mod compare;
pub mod engine;
pub mod loopback;
pub mod mooncake;
pub mod prompts;
pub mod request;
pub mod results;
mod rng;
pub mod router_comparison;
pub mod sessions;
pub mod shared_prefix;
pub mod sse;
pub mod stats;
pub mod workload;

pub use client::{Answer, ConnectionMode, OpenAiClient, PendingRequest, Stream};
pub use companion::{Load, LoadReport, LoadSpec};
pub use compare::{compare, Comparison, MetricDelta};
pub use engine::{run, run_point, sweep, BenchSpec, Dispatch, Endpoint, Observer, Quiet};
pub use loopback::{LoopbackSseServer, SseServerConfig};
pub use prompts::{CountWith, PromptSet, TokenCounter};
pub use request::{ErrorKind, RequestRecord};
pub use results::{BenchResults, HostInfo, Provenance};
pub use sessions::Sessions;
pub use shared_prefix::SharedPrefix;
pub use stats::{PointResult, Summary};
pub use workload::{Job, Workload};

#[cfg(test)]
mod testdata {
    use crate::engine::BenchSpec;
    use crate::request::RequestRecord;
    use crate::results::{BenchResults, Provenance};
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
                        ..RequestRecord::default()
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
            Provenance::default(),
        )
    }
}
