//! A bounded background load for fault tests: N concurrent streaming
//! clients for T seconds against a frontend on loopback. Every request's
//! outcome is recorded — completed, failed with an explicit error (status
//! or error event), or lost (no answer, or a stream that ended without
//! `[DONE]` or hung) — so that a test can assert that nothing was lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::OpenAiClient;

/// What load to make.
#[derive(Debug, Clone)]
pub struct LoadSpec {
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
    /// `concurrency` clients for `duration`, 16-token answers.
    pub fn new(model: &str, concurrency: usize, duration: Duration) -> LoadSpec {
        LoadSpec {
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
    /// Explicit failures, by kind (`status 503`, `error event`, …).
    pub failed: BTreeMap<String, usize>,
    /// No answer in time, or a stream cut without `[DONE]`.
    pub lost: usize,
}

impl LoadReport {
    /// Explicit failures, all kinds.
    pub fn failed_total(&self) -> usize {
        self.failed.values().sum()
    }

    /// `sent N / completed N / failed N / lost N`.
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

/// One request's fate.
enum Outcome {
    Completed,
    Failed(String),
    Lost,
}

impl Load {
    /// Starts the load in the background.
    pub fn start(client: &OpenAiClient, spec: LoadSpec) -> Load {
        let client = client.clone();
        let handle = tokio::spawn(async move {
            let deadline = Instant::now() + spec.duration;
            let workers = (0..spec.concurrency).map(|c| {
                let client = client.clone();
                let spec = spec.clone();
                async move {
                    let mut outcomes = Vec::new();
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        i += 1;
                        outcomes.push(
                            one(&client, &spec, &format!("load client {c} request {i}")).await,
                        );
                    }
                    outcomes
                }
            });
            let mut report = LoadReport::default();
            for outcome in futures::future::join_all(workers)
                .await
                .into_iter()
                .flatten()
            {
                report.sent += 1;
                match outcome {
                    Outcome::Completed => report.completed += 1,
                    Outcome::Failed(kind) => *report.failed.entry(kind).or_default() += 1,
                    Outcome::Lost => report.lost += 1,
                }
            }
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

async fn one(client: &OpenAiClient, spec: &LoadSpec, content: &str) -> Outcome {
    let body = json!({"model": spec.model, "messages": [{"role": "user", "content": content}], "max_tokens": spec.max_tokens});
    match tokio::time::timeout(
        spec.request_timeout,
        client.stream("/v1/chat/completions", body),
    )
    .await
    {
        Err(_) => Outcome::Lost,
        Ok(Err(_)) => Outcome::Lost,
        Ok(Ok(stream)) => {
            if stream.status != 200 {
                return Outcome::Failed(format!("status {}", stream.status));
            }
            if stream.error().is_some() {
                return Outcome::Failed("error event".into());
            }
            if !stream.done() {
                return Outcome::Lost;
            }
            match stream.usage().and_then(|u| u["completion_tokens"].as_u64()) {
                Some(n) if n == u64::from(spec.max_tokens) => Outcome::Completed,
                other => Outcome::Failed(format!("short answer ({other:?} tokens)")),
            }
        }
    }
}
