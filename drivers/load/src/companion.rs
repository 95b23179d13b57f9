//! The fault tier's load companion: closed-loop streaming clients for a
//! while, against a frontend, while a test injects a fault. Every request's
//! fate is counted: completed; failed with an explicit answer (a status, an
//! error event, a short answer); or lost (no answer, a cut stream, a
//! timeout) — what a fault test asserts is zero.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{self, BenchSpec, Dispatch, Quiet};
use crate::prompts;
use crate::request::RequestRecord;
use crate::workload::Job;

/// What load to make.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The frontend's base URL.
    pub url: String,
    /// The model to ask.
    pub model: String,
    /// Concurrent clients.
    pub concurrency: usize,
    /// How long to keep sending.
    pub duration: Duration,
    /// Tokens per answer.
    pub max_tokens: u32,
    /// A request unanswered after this long is lost.
    pub request_timeout: Duration,
}

impl LoadSpec {
    /// `concurrency` clients against `url` for `duration`, 16-token answers.
    pub fn new(url: &str, model: &str, concurrency: usize, duration: Duration) -> LoadSpec {
        LoadSpec {
            url: url.to_owned(),
            model: model.into(),
            concurrency,
            duration,
            max_tokens: 16,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// What happened to every request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: usize,
    /// Streams that delivered every token and `[DONE]`.
    pub completed: usize,
    /// Explicit failures, by kind (`status_503`, `error_event`, …).
    pub failed: BTreeMap<String, usize>,
    /// No answer in time, or a stream cut without `[DONE]`.
    pub lost: usize,
}

impl LoadReport {
    /// Counts `records`.
    pub fn of(records: &[RequestRecord]) -> LoadReport {
        let mut report = LoadReport::default();
        for r in records {
            report.sent += 1;
            match r.error {
                None => report.completed += 1,
                Some(kind) if kind.is_explicit() => {
                    *report.failed.entry(kind.to_string()).or_default() += 1
                }
                Some(_) => report.lost += 1,
            }
        }
        report
    }

    /// Explicit failures, all kinds.
    pub fn failed_total(&self) -> usize {
        self.failed.values().sum()
    }

    /// `sent N / completed N / failed N {…} / lost N`.
    pub fn summary(&self) -> String {
        format!(
            "sent {} / completed {} / failed {} {:?} / lost {}",
            self.sent,
            self.completed,
            self.failed_total(),
            self.failed,
            self.lost
        )
    }
}

/// A running load; [`Load::finish`] waits for it and reports.
pub struct Load {
    handle: tokio::task::JoinHandle<LoadReport>,
}

impl Load {
    /// Starts the load in the background.
    pub fn start(spec: LoadSpec) -> Load {
        let handle = tokio::spawn(async move {
            let bench = BenchSpec {
                output_tokens: spec.max_tokens,
                request_timeout_s: spec.request_timeout.as_secs_f64(),
                ..BenchSpec::new(&spec.url, &spec.model)
            };
            // Distinct prompts, so that no prefix cache makes requests alike.
            let jobs: Vec<Job> = (0..1024)
                .map(|i| Job::prompt(prompts::words(0x10ad + i, 12)))
                .collect();
            let (records, _) = engine::run(
                &bench,
                Arc::new(jobs),
                Dispatch::ClosedFor {
                    clients: spec.concurrency,
                    duration: spec.duration,
                },
                Arc::new(Quiet),
            )
            .await;
            let report = LoadReport::of(&records);
            tracing::info!(report = %report.summary(), "load finished");
            report
        });
        Load { handle }
    }

    /// Waits for the load to end and reports.
    pub async fn finish(self) -> anyhow::Result<LoadReport> {
        Ok(self.handle.await?)
    }
}
