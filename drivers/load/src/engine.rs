//! The engine: closed-loop clients against an OpenAI-compatible endpoint.
//! At each point of a sweep, `concurrency` clients send requests back to
//! back until the point's request count is sent; every request is timed
//! from the client's side (time to first content token, gaps between
//! content chunks, end to end) and checked (status, error events, `[DONE]`,
//! the exact output length).
//!
//! Each request opens a fresh connection with `TCP_NODELAY` by default:
//! Dynamo's HTTP listener does not set `TCP_NODELAY`, and sequential
//! streams on one reused keep-alive connection stall ~40 ms each (Nagle
//! plus delayed ACK), which would be measured as latency of the server.

use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::prompts::PromptSet;
use crate::stats::PointResult;

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

/// How requests use connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionMode {
    /// A new connection per request (the default; see the module doc).
    FreshPerRequest,
    /// Reuse idle keep-alive connections from a pool.
    KeepAlive,
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
    /// The concurrencies of the sweep, in order.
    pub concurrencies: Vec<usize>,
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
    /// Print a progress line per point on stderr.
    pub progress: bool,
}

/// Results written before rounds existed had one.
fn one_round() -> usize {
    1
}

impl BenchSpec {
    /// A streaming chat sweep of `model` at `url` with defaults: 128 input
    /// tokens, 32 output tokens, concurrency 1..64 in powers of two, 200
    /// requests per point in one round, fresh connections, progress on.
    pub fn new(url: &str, model: &str) -> BenchSpec {
        BenchSpec {
            url: url.trim_end_matches('/').to_owned(),
            model: model.to_owned(),
            endpoint: Endpoint::Chat,
            input_tokens: 128,
            output_tokens: 32,
            concurrencies: vec![1, 2, 4, 8, 16, 32, 64],
            requests_per_point: 200,
            rounds: 1,
            stream: true,
            request_timeout_s: 60.0,
            connection: ConnectionMode::FreshPerRequest,
            progress: true,
        }
    }

    /// The HTTP client this spec asks for.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut b = reqwest::Client::builder().no_proxy().tcp_nodelay(true);
        if self.connection == ConnectionMode::FreshPerRequest {
            b = b.pool_max_idle_per_host(0);
        }
        Ok(b.build()?)
    }

    /// The request body for `prompt`.
    pub fn body(&self, prompt: &str) -> Value {
        let mut body = match self.endpoint {
            Endpoint::Chat => json!({
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
            }),
            Endpoint::Completions => json!({"model": self.model, "prompt": prompt}),
        };
        body["max_tokens"] = json!(self.output_tokens);
        body["min_tokens"] = json!(self.output_tokens);
        body["ignore_eos"] = json!(true);
        body["stream"] = json!(self.stream);
        if self.stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// No connection.
    Connect,
    /// A non-2xx status.
    Status(u16),
    /// The stream carried an error event, or the body an error object.
    ErrorEvent,
    /// The stream ended without `[DONE]`, or the body was cut or malformed.
    Incomplete,
    /// Fewer or more output tokens than asked.
    WrongLength,
    /// No complete answer within the request timeout.
    Timeout,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::Status(s) => write!(f, "status_{s}"),
            ErrorKind::ErrorEvent => f.write_str("error_event"),
            ErrorKind::Incomplete => f.write_str("incomplete"),
            ErrorKind::WrongLength => f.write_str("wrong_length"),
            ErrorKind::Timeout => f.write_str("timeout"),
        }
    }
}

/// One request, as the client saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Time to the first chunk with content, ms (streaming only).
    pub ttft_ms: Option<f64>,
    /// Gaps between consecutive content chunks, ms.
    pub itl_ms: Vec<f64>,
    /// From send to the end of the answer, ms.
    pub e2e_ms: f64,
    /// Prompt tokens, from the usage block.
    pub input_tokens: Option<u64>,
    /// Output tokens, from the usage block (content chunks if it has none).
    pub output_tokens: u64,
    /// Why it failed; `None` when it delivered every token.
    pub error: Option<ErrorKind>,
}

/// A streamed chunk, as far as the engine reads it.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    message: Option<Delta>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

impl ChunkChoice {
    fn has_content(&self) -> bool {
        let non_empty = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
        self.delta.as_ref().is_some_and(|d| non_empty(&d.content))
            || non_empty(&self.text)
            || self.message.as_ref().is_some_and(|d| non_empty(&d.content))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Sends one request and times it.
pub async fn one_request(
    client: &reqwest::Client,
    spec: &BenchSpec,
    prompt: &str,
) -> RequestRecord {
    let started = Instant::now();
    let mut rec = RequestRecord {
        ttft_ms: None,
        itl_ms: Vec::new(),
        e2e_ms: 0.0,
        input_tokens: None,
        output_tokens: 0,
        error: None,
    };
    let timeout = Duration::from_secs_f64(spec.request_timeout_s.max(0.001));
    let outcome =
        tokio::time::timeout(timeout, exchange(client, spec, prompt, started, &mut rec)).await;
    rec.e2e_ms = ms(started.elapsed());
    rec.error = match outcome {
        Err(_) => Some(ErrorKind::Timeout),
        Ok(Err(kind)) => Some(kind),
        Ok(Ok(())) if rec.output_tokens != u64::from(spec.output_tokens) => {
            Some(ErrorKind::WrongLength)
        }
        Ok(Ok(())) => None,
    };
    rec
}

async fn exchange(
    client: &reqwest::Client,
    spec: &BenchSpec,
    prompt: &str,
    started: Instant,
    rec: &mut RequestRecord,
) -> Result<(), ErrorKind> {
    let resp = client
        .post(format!("{}{}", spec.url, spec.endpoint.path()))
        .json(&spec.body(prompt))
        .send()
        .await
        .map_err(|e| {
            if e.is_connect() {
                ErrorKind::Connect
            } else {
                ErrorKind::Incomplete
            }
        })?;
    let status = resp.status();
    if !status.is_success() {
        let _ = resp.bytes().await;
        return Err(ErrorKind::Status(status.as_u16()));
    }
    if !spec.stream {
        let body = resp.bytes().await.map_err(|_| ErrorKind::Incomplete)?;
        let chunk: Chunk = serde_json::from_slice(&body).map_err(|_| ErrorKind::Incomplete)?;
        if chunk.error.is_some() {
            return Err(ErrorKind::ErrorEvent);
        }
        let usage = chunk.usage.ok_or(ErrorKind::Incomplete)?;
        rec.input_tokens = usage.prompt_tokens;
        rec.output_tokens = usage.completion_tokens.unwrap_or(0);
        return Ok(());
    }
    let mut bytes = resp.bytes_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut last: Option<Duration> = None;
    let mut content_chunks = 0u64;
    let mut usage_tokens = None;
    let mut done = false;
    while let Some(piece) = bytes.next().await {
        let piece = piece.map_err(|_| ErrorKind::Incomplete)?;
        let at = started.elapsed();
        buffer.extend_from_slice(&piece);
        while let Some(end) = find_event_end(&buffer) {
            let event: Vec<u8> = buffer.drain(..end).collect();
            for line in event.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let Some(data) = line.strip_prefix(b"data:") else {
                    continue;
                };
                let data = data.strip_prefix(b" ").unwrap_or(data);
                if data == b"[DONE]" {
                    done = true;
                    continue;
                }
                let chunk: Chunk =
                    serde_json::from_slice(data).map_err(|_| ErrorKind::Incomplete)?;
                if chunk.error.is_some() {
                    return Err(ErrorKind::ErrorEvent);
                }
                if chunk.choices.first().is_some_and(ChunkChoice::has_content) {
                    content_chunks += 1;
                    match last {
                        None => rec.ttft_ms = Some(ms(at)),
                        Some(prev) => rec.itl_ms.push(ms(at - prev)),
                    }
                    last = Some(at);
                }
                if let Some(u) = chunk.usage {
                    rec.input_tokens = u.prompt_tokens.or(rec.input_tokens);
                    usage_tokens = u.completion_tokens.or(usage_tokens);
                }
            }
        }
    }
    rec.output_tokens = usage_tokens.unwrap_or(content_chunks);
    if done {
        Ok(())
    } else {
        Err(ErrorKind::Incomplete)
    }
}

/// The end (exclusive, separator included) of the first complete event.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs one point: `concurrency` closed-loop clients until
/// `spec.requests_per_point` requests are sent, with prompts from
/// `prompts` starting at `prompt_offset`. Returns the aggregate and every
/// record.
pub async fn run_point(
    client: &reqwest::Client,
    spec: &BenchSpec,
    prompts: &Arc<PromptSet>,
    concurrency: usize,
    prompt_offset: usize,
) -> (PointResult, Vec<RequestRecord>) {
    let total = spec.requests_per_point;
    let next = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let spec_arc = Arc::new(spec.clone());
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1).min(total.max(1)) {
        let (client, spec, prompts) = (client.clone(), spec_arc.clone(), prompts.clone());
        let (next, finished) = (next.clone(), finished.clone());
        set.spawn(async move {
            let mut records = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= spec.requests_per_point {
                    break;
                }
                records.push(one_request(&client, &spec, prompts.get(prompt_offset + i)).await);
                finished.fetch_add(1, Ordering::Relaxed);
            }
            records
        });
    }
    let ticker = spec.progress.then(|| {
        let finished = finished.clone();
        let tty = std::io::stderr().is_terminal();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(if tty { 1 } else { 10 }));
            tick.tick().await;
            loop {
                tick.tick().await;
                let n = finished.load(Ordering::Relaxed);
                if tty {
                    eprint!("\rbench: concurrency {concurrency}: {n}/{total} requests …");
                } else {
                    eprintln!("bench: concurrency {concurrency}: {n}/{total} requests …");
                }
            }
        })
    });
    let mut records = Vec::with_capacity(total);
    while let Some(joined) = set.join_next().await {
        records.extend(joined.unwrap_or_default());
    }
    let duration = started.elapsed().as_secs_f64();
    if let Some(t) = ticker {
        t.abort();
    }
    let point = PointResult::aggregate(concurrency, &records, duration);
    if spec.progress {
        let clear = if std::io::stderr().is_terminal() {
            "\r\x1b[2K"
        } else {
            ""
        };
        eprintln!(
            "{clear}bench: concurrency {concurrency}: {}/{} ok in {:.2} s, {:.1} req/s, {:.0} tok/s, TTFT p50 {:.2} ms, ITL p50 {:.2} ms{}",
            point.completed,
            point.requests,
            point.duration_s,
            point.request_rate,
            point.output_token_rate,
            point.ttft_ms.p50,
            point.itl_ms.p50,
            if point.errors.is_empty() { String::new() } else { format!(", errors {:?}", point.errors) }
        );
    }
    (point, records)
}

/// Runs every point of `spec`, round after round, each request with a
/// prompt of its own (round `r`, point `k` starts at prompt
/// `(r * points + k) * requests_per_point`). With more than one round a
/// point's result aggregates every round's requests and keeps each
/// round's own result in [`PointResult::rounds`].
pub async fn sweep(spec: &BenchSpec, prompts: &Arc<PromptSet>) -> anyhow::Result<Vec<PointResult>> {
    let client = spec.client()?;
    let rounds = spec.rounds.max(1);
    let points = spec.concurrencies.len();
    let mut records: Vec<Vec<RequestRecord>> = vec![Vec::new(); points];
    let mut per_round: Vec<Vec<PointResult>> = vec![Vec::new(); points];
    for round in 0..rounds {
        if rounds > 1 && spec.progress {
            eprintln!("bench: round {}/{rounds}", round + 1);
        }
        for (k, &c) in spec.concurrencies.iter().enumerate() {
            let offset = (round * points + k) * spec.requests_per_point;
            let (point, recs) = run_point(&client, spec, prompts, c, offset).await;
            per_round[k].push(point);
            records[k].extend(recs);
        }
    }
    Ok(spec
        .concurrencies
        .iter()
        .zip(per_round)
        .zip(records)
        .map(|((&c, mut rounds_of_point), records)| {
            if rounds_of_point.len() == 1 {
                return rounds_of_point.remove(0);
            }
            let duration = rounds_of_point.iter().map(|p| p.duration_s).sum();
            PointResult {
                rounds: rounds_of_point,
                ..PointResult::aggregate(c, &records, duration)
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
        let body = spec.body("hello");
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
        let body = unary.body("x");
        assert_eq!(body["prompt"], "x");
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn event_ends() {
        assert_eq!(find_event_end(b"data: a\n\ndata: b"), Some(9));
        assert_eq!(find_event_end(b"data: a\r\n\r\n"), Some(11));
        assert_eq!(find_event_end(b"data: a\n"), None);
    }

    #[test]
    fn error_kinds_name_themselves() {
        assert_eq!(ErrorKind::Status(503).to_string(), "status_503");
        assert_eq!(ErrorKind::WrongLength.to_string(), "wrong_length");
    }
}
