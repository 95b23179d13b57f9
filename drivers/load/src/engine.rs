//! The one load generator: clients against an OpenAI-compatible endpoint,
//! each request sent and judged by [`crate::request::send`]. Closed loop
//! (a number of clients sending back to back, for a number of requests or
//! for a while) or open loop (requests at their own arrival times, e.g. a
//! Poisson process or a trace). The bench sweeps and the fault tier's load
//! companion are both this engine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::client::{http_client, ConnectionMode};
use crate::request::{self, Request, RequestRecord};
use crate::stats::PointResult;
use crate::workload::{Job, Workload};

/// Which OpenAI endpoint to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `/v1/chat/completions`, the prompt as one user message.
    Chat,
    /// `/v1/completions`, the prompt as is.
    Completions,
}

impl Endpoint {
    /// The path under the base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/v1/chat/completions",
            Endpoint::Completions => "/v1/completions",
        }
    }
}

/// What to measure: one sweep over concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchSpec {
    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// The served model name.
    pub model: String,
    /// The endpoint to load.
    pub endpoint: Endpoint,
    /// Input tokens per prompt (the content, as the tokenizer counts it).
    pub input_tokens: usize,
    /// Output tokens per request, forced with `ignore_eos` and
    /// `min_tokens`.
    pub output_tokens: u32,
    /// The concurrencies of the sweep, in order (closed loop).
    pub concurrencies: Vec<usize>,
    /// Request rates to sweep instead, in order: open loop, Poisson
    /// arrivals (requests/s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<f64>,
    /// Requests per point and round.
    pub requests_per_point: usize,
    /// Rounds of the sweep: every point is measured once per round, the
    /// rounds interleaved (every point of round 1, then of round 2, …), so
    /// that a change in the machine's load between rounds shows up as
    /// spread within each point, which `bench compare` reads as noise.
    #[serde(default = "one_round")]
    pub rounds: usize,
    /// Stream the answers (server-sent events); otherwise only end-to-end
    /// latency is measured.
    pub stream: bool,
    /// A request unanswered after this many seconds is a `timeout`.
    pub request_timeout_s: f64,
    /// Connection use.
    pub connection: ConnectionMode,
}

/// Results written before rounds existed had one.
fn one_round() -> usize {
    1
}

impl BenchSpec {
    /// A streaming chat sweep of `model` at `url` with defaults: 128 input
    /// tokens, 32 output tokens, concurrency 1..64 in powers of two, 200
    /// requests per point in one round, fresh connections.
    pub fn new(url: &str, model: &str) -> BenchSpec {
        BenchSpec {
            url: url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            endpoint: Endpoint::Chat,
            input_tokens: 128,
            output_tokens: 32,
            concurrencies: vec![1, 2, 4, 8, 16, 32, 64],
            rates: Vec::new(),
            requests_per_point: 200,
            rounds: 1,
            stream: true,
            request_timeout_s: 60.0,
            connection: ConnectionMode::FreshPerRequest,
        }
    }

    /// The HTTP client this spec asks for.
    pub fn client(&self) -> reqwest::Client {
        http_client(self.connection, None)
    }

    /// The request body for `job`: its prompt (or messages), its output
    /// length forced (`max_tokens` = `min_tokens`, `ignore_eos`), streamed
    /// with usage when the spec streams.
    pub fn body(&self, job: &Job) -> Value {
        let tokens = job.output_tokens.unwrap_or(self.output_tokens);
        let mut body = match self.endpoint {
            Endpoint::Chat => json!({"model": self.model, "messages": job.messages()}),
            Endpoint::Completions => json!({"model": self.model, "prompt": job.prompt_text()}),
        };
        body["max_tokens"] = json!(tokens);
        body["min_tokens"] = json!(tokens);
        body["ignore_eos"] = json!(true);
        body["stream"] = json!(self.stream);
        if self.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    /// Sends `job` (each turn of a conversation in order, the earlier
    /// answers in its history) and records each request.
    pub async fn send(&self, client: &reqwest::Client, job: &Job) -> Vec<RequestRecord> {
        let url = format!("{}{}", self.url, self.endpoint.path());
        let tokens = job.output_tokens.unwrap_or(self.output_tokens);
        let mut answers: Vec<String> = Vec::new();
        let mut records = Vec::new();
        for turn in 0..job.turns.len() {
            let body = self.body(&job.up_to(turn, &answers));
            let rec = request::send(
                client,
                &Request {
                    url: &url,
                    body: &body,
                    stream: self.stream,
                    expect_tokens: Some(u64::from(tokens)),
                    timeout: Duration::from_secs_f64(self.request_timeout_s.max(0.001)),
                    keep_text: job.turns.len() > 1,
                },
            )
            .await;
            let failed = rec.error.is_some();
            answers.push(rec.text.clone());
            records.push(rec);
            if failed {
                break;
            }
        }
        records
    }
}

/// How requests are dispatched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dispatch {
    /// `clients` clients send back to back until `requests` are sent.
    Closed {
        /// Clients at once.
        clients: usize,
        /// Requests in all.
        requests: usize,
    },
    /// `clients` clients send back to back until `duration` has passed.
    ClosedFor {
        /// Clients at once.
        clients: usize,
        /// How long.
        duration: Duration,
    },
    /// Every job at its own arrival time (`Job::at`), however many are in
    /// flight.
    Open,
}

/// Told how a load goes, for progress output (the caller's business: the
/// engine prints nothing).
pub trait Observer: Send + Sync {
    /// A request finished; `done` have so far, of `total` (when known).
    fn finished(&self, _done: usize, _total: Option<usize>) {}
    /// A point finished.
    fn point(&self, _point: &PointResult) {}
    /// A round of a sweep starts (1-based).
    fn round(&self, _round: usize, _rounds: usize) {}
}

/// An observer that says nothing.
pub struct Quiet;

impl Observer for Quiet {}

/// Runs `jobs` against `spec`'s endpoint as `dispatch` says; returns every
/// record (in finishing order) and the wall time.
pub async fn run(
    spec: &BenchSpec,
    jobs: Arc<Vec<Job>>,
    dispatch: Dispatch,
    observer: Arc<dyn Observer>,
) -> (Vec<RequestRecord>, Duration) {
    let client = spec.client();
    let spec = Arc::new(spec.clone());
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    let total = match dispatch {
        Dispatch::Closed { requests, .. } => Some(requests),
        Dispatch::ClosedFor { .. } => None,
        Dispatch::Open => Some(jobs.len()),
    };
    let record = {
        let (finished, observer) = (finished.clone(), observer.clone());
        move |mut rec: RequestRecord, sent: Instant| {
            rec.sent_at_ms = (sent - started).as_secs_f64() * 1e3;
            let done = finished.fetch_add(1, Ordering::Relaxed) + 1;
            observer.finished(done, total);
            rec
        }
    };
    match dispatch {
        Dispatch::Closed { clients, .. } | Dispatch::ClosedFor { clients, .. } => {
            let (limit, deadline) = match dispatch {
                Dispatch::Closed { requests, .. } => (requests, None),
                Dispatch::ClosedFor { duration, .. } => (usize::MAX, Some(started + duration)),
                Dispatch::Open => unreachable!(),
            };
            for _ in 0..clients.max(1) {
                let (client, spec, jobs, next) =
                    (client.clone(), spec.clone(), jobs.clone(), next.clone());
                let record = record.clone();
                set.spawn(async move {
                    let mut records = Vec::new();
                    loop {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= limit {
                            break;
                        }
                        let job = &jobs[i % jobs.len()];
                        let sent = Instant::now();
                        for rec in spec.send(&client, job).await {
                            records.push(record(rec, sent));
                        }
                    }
                    records
                });
            }
        }
        Dispatch::Open => {
            for i in 0..jobs.len() {
                let (client, spec, jobs) = (client.clone(), spec.clone(), jobs.clone());
                let at = jobs[i].at.unwrap_or_default();
                let record = record.clone();
                tokio::time::sleep_until((started + at).into()).await;
                set.spawn(async move {
                    let sent = Instant::now();
                    let records: Vec<RequestRecord> = spec.send(&client, &jobs[i]).await;
                    records
                        .into_iter()
                        .map(|r| record(r, sent))
                        .collect::<Vec<_>>()
                });
            }
        }
    }
    let mut records = Vec::new();
    while let Some(joined) = set.join_next().await {
        records.extend(joined.unwrap_or_default());
    }
    (records, started.elapsed())
}

/// One closed-loop point: `concurrency` clients until
/// `spec.requests_per_point` requests are sent, with the jobs of
/// `workload` starting at `offset`. Returns the aggregate and every record.
pub async fn run_point(
    spec: &BenchSpec,
    workload: &Workload,
    concurrency: usize,
    offset: usize,
    observer: Arc<dyn Observer>,
) -> (PointResult, Vec<RequestRecord>) {
    let jobs = Arc::new(workload.jobs(offset, spec.requests_per_point));
    let (records, took) = run(
        spec,
        jobs,
        Dispatch::Closed {
            clients: concurrency,
            requests: spec.requests_per_point,
        },
        observer.clone(),
    )
    .await;
    let point = PointResult::aggregate(concurrency, &records, took.as_secs_f64());
    observer.point(&point);
    (point, records)
}

/// One open-loop point: `spec.requests_per_point` jobs of `workload` from
/// `offset` on, sent at the arrivals of a Poisson process of `rate`
/// requests per second (seeded by `offset`), however many are in flight.
pub async fn run_rate_point(
    spec: &BenchSpec,
    workload: &Workload,
    rate: f64,
    offset: usize,
    observer: Arc<dyn Observer>,
) -> anyhow::Result<(PointResult, Vec<RequestRecord>)> {
    let arrivals = crate::arrivals::poisson(rate, spec.requests_per_point, offset as u64)?;
    let jobs: Vec<Job> = workload
        .jobs(offset, spec.requests_per_point)
        .into_iter()
        .zip(arrivals)
        .map(|(job, at)| Job {
            at: Some(at),
            ..job
        })
        .collect();
    let (records, took) = run(spec, Arc::new(jobs), Dispatch::Open, observer.clone()).await;
    let point = PointResult {
        offered_rate: Some(rate),
        ..PointResult::aggregate(0, &records, took.as_secs_f64())
    };
    observer.point(&point);
    Ok((point, records))
}

/// A trace replayed: every job at its own arrival time (`Job::at`).
pub async fn replay(
    spec: &BenchSpec,
    jobs: Vec<Job>,
    observer: Arc<dyn Observer>,
) -> (PointResult, Vec<RequestRecord>) {
    let (records, took) = run(spec, Arc::new(jobs), Dispatch::Open, observer.clone()).await;
    let point = PointResult::aggregate(0, &records, took.as_secs_f64());
    observer.point(&point);
    (point, records)
}

/// Runs every point of `spec`, round after round, each request with a job
/// of its own (round `r`, point `k` starts at job
/// `(r * points + k) * requests_per_point`). With more than one round a
/// point's result aggregates every round's requests and keeps each round's
/// own result in [`PointResult::rounds`].
pub async fn sweep(
    spec: &BenchSpec,
    workload: &Workload,
    observer: Arc<dyn Observer>,
) -> anyhow::Result<Vec<PointResult>> {
    let rounds = spec.rounds.max(1);
    let open = !spec.rates.is_empty();
    let points = if open {
        spec.rates.len()
    } else {
        spec.concurrencies.len()
    };
    let mut records: Vec<Vec<RequestRecord>> = vec![Vec::new(); points];
    let mut per_round: Vec<Vec<PointResult>> = vec![Vec::new(); points];
    for round in 0..rounds {
        if rounds > 1 {
            observer.round(round + 1, rounds);
        }
        for k in 0..points {
            let offset = (round * points + k) * spec.requests_per_point;
            let (point, recs) = if open {
                run_rate_point(spec, workload, spec.rates[k], offset, observer.clone()).await?
            } else {
                let c = spec.concurrencies[k];
                run_point(spec, workload, c, offset, observer.clone()).await
            };
            per_round[k].push(point);
            records[k].extend(recs);
        }
    }
    Ok(per_round
        .into_iter()
        .zip(records)
        .map(|(mut rounds_of_point, records)| {
            if rounds_of_point.len() == 1 {
                return rounds_of_point.remove(0);
            }
            let duration = rounds_of_point.iter().map(|p| p.duration_s).sum();
            let first = &rounds_of_point[0];
            let (concurrency, offered_rate) = (first.concurrency, first.offered_rate);
            PointResult {
                rounds: rounds_of_point,
                offered_rate,
                ..PointResult::aggregate(concurrency, &records, duration)
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_forces_the_output_length_and_asks_for_usage() {
        let spec = BenchSpec::new("http://127.0.0.1:1/", "tiny");
        let job = Job::prompt("hello");
        let body = spec.body(&job);
        assert_eq!(spec.url, "http://127.0.0.1:1");
        assert_eq!(body["messages"][0]["content"], "hello");
        assert_eq!(body["max_tokens"], 32);
        assert_eq!(body["min_tokens"], 32);
        assert_eq!(body["ignore_eos"], true);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        let mut unary = spec.clone();
        unary.stream = false;
        unary.endpoint = Endpoint::Completions;
        let body = unary.body(&Job {
            output_tokens: Some(7),
            ..Job::prompt("x")
        });
        assert_eq!(
            (body["prompt"].as_str(), body["max_tokens"].as_u64()),
            (Some("x"), Some(7))
        );
        assert!(body.get("stream_options").is_none());
        let conversation = Job::conversation(vec!["a".into(), "b".into()]).up_to(1, &["A".into()]);
        let body = spec.body(&conversation);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "A"},
                {"role": "user", "content": "b"}
            ])
        );
    }
}
