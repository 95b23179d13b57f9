//! The one OpenAI-compatible client: chat and completions, streaming (SSE,
//! with per-event arrival times) or not, the raw request for
//! error-contract tests, and the request a client abandons. Every request
//! goes out on a fresh connection with `TCP_NODELAY` unless asked
//! otherwise (see [`ConnectionMode`]).

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::sse::SseParser;

/// How requests use connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionMode {
    /// A new connection per request (the default): Dynamo 1.6.1's HTTP
    /// listener does not set `TCP_NODELAY`, and sequential streams on one
    /// reused keep-alive connection stall ~40 ms each (Nagle plus delayed
    /// ACK), which would be measured as latency of the server.
    #[default]
    FreshPerRequest,
    /// Reuse idle keep-alive connections from a pool.
    KeepAlive,
}

/// The HTTP client every request of the testbed goes through: no proxy,
/// `TCP_NODELAY`, connections per `mode`.
pub fn http_client(mode: ConnectionMode, timeout: Option<Duration>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().no_proxy().tcp_nodelay(true);
    if mode == ConnectionMode::FreshPerRequest {
        b = b.pool_max_idle_per_host(0);
    }
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    b.build().expect("build the HTTP client")
}

/// A client of one frontend.
#[derive(Debug, Clone)]
pub struct OpenAiClient {
    base: String,
    http: reqwest::Client,
}

/// An HTTP answer: status and body as JSON (or `Null` when not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body parsed as JSON, `Value::Null` if it is not JSON.
    pub json: Value,
    /// The body as text.
    pub text: String,
}

/// One server-sent event of a stream.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `data:` payload (`[DONE]` for the last).
    pub data: String,
    /// When it arrived, since the request was sent.
    pub at: Duration,
}

/// A finished stream.
#[derive(Debug, Clone)]
pub struct Stream {
    /// HTTP status.
    pub status: u16,
    /// Every event, in order.
    pub events: Vec<SseEvent>,
}

impl Stream {
    /// The events' payloads parsed as JSON (without `[DONE]`).
    pub fn chunks(&self) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| e.data != "[DONE]")
            .filter_map(|e| serde_json::from_str(&e.data).ok())
            .collect()
    }

    /// Whether the stream ended with `[DONE]`.
    pub fn done(&self) -> bool {
        self.events.last().is_some_and(|e| e.data == "[DONE]")
    }

    /// The concatenated text of every chunk (chat `delta.content` or
    /// completion `text`).
    pub fn text(&self) -> String {
        self.chunks()
            .iter()
            .filter_map(|c| {
                let choice = c["choices"].get(0)?;
                choice["delta"]["content"]
                    .as_str()
                    .or_else(|| choice["text"].as_str())
                    .map(str::to_owned)
            })
            .collect()
    }

    /// Chunks that carried content tokens.
    pub fn content_chunks(&self) -> usize {
        self.chunks()
            .iter()
            .filter(|c| {
                c["choices"].get(0).is_some_and(|ch| {
                    ch["delta"]["content"]
                        .as_str()
                        .is_some_and(|s| !s.is_empty())
                        || ch["text"].as_str().is_some_and(|s| !s.is_empty())
                })
            })
            .count()
    }

    /// The usage block, from the final chunk that carries it.
    pub fn usage(&self) -> Option<Value> {
        self.chunks()
            .into_iter()
            .rev()
            .find_map(|c| c.get("usage").filter(|u| !u.is_null()).cloned())
    }

    /// An error event, if the stream carried one.
    pub fn error(&self) -> Option<Value> {
        self.chunks().into_iter().find(|c| {
            c.get("error").is_some() || c.get("message").is_some() && c.get("choices").is_none()
        })
    }
}

/// A unary request sent on a connection of its own and not read: the
/// client that will go away before the answer. [`PendingRequest::abandon`]
/// (or dropping it) closes the socket, which the frontend sees as a
/// disconnect. A raw socket, because an aborted reqwest future leaves the
/// close to its pool's connection task, so the disconnect is not certain.
#[derive(Debug)]
pub struct PendingRequest {
    socket: tokio::net::TcpStream,
}

impl PendingRequest {
    /// Closes the connection without reading the answer.
    pub async fn abandon(mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.socket.shutdown().await
    }
}

/// A streaming request whose events are read one at a time, so that the
/// client can go away mid-stream ([`LiveStream::abandon`], or drop it).
pub struct LiveStream {
    /// HTTP status.
    pub status: u16,
    response: reqwest::Response,
    parser: SseParser,
    pending: std::collections::VecDeque<String>,
}

impl LiveStream {
    /// The next event's data, waiting up to `timeout`; `None` when the
    /// stream ended.
    pub async fn next_event(&mut self, timeout: Duration) -> anyhow::Result<Option<String>> {
        loop {
            if let Some(data) = self.pending.pop_front() {
                return Ok(Some(data));
            }
            let chunk = tokio::time::timeout(timeout, self.response.chunk())
                .await
                .with_context(|| format!("no event within {timeout:?}"))?
                .context("reading the event stream")?;
            match chunk {
                None => return Ok(None),
                Some(chunk) => self.pending.extend(self.parser.push(&chunk)),
            }
        }
    }

    /// Goes away: the connection (one of its own) closes.
    pub fn abandon(self) {}
}

impl OpenAiClient {
    /// A client of the frontend at `base` (`http://127.0.0.1:PORT`), with a
    /// fresh connection per request and a 60 s timeout.
    pub fn new(base: impl Into<String>) -> OpenAiClient {
        OpenAiClient {
            base: base.into().trim_end_matches('/').to_owned(),
            http: http_client(
                ConnectionMode::FreshPerRequest,
                Some(Duration::from_secs(60)),
            ),
        }
    }

    /// The frontend's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// POSTs `body` to `path` (a unary request) on a fresh connection and
    /// returns without reading the answer; see [`PendingRequest`].
    pub async fn send_unread(&self, path: &str, body: &Value) -> anyhow::Result<PendingRequest> {
        use tokio::io::AsyncWriteExt;
        let authority = self
            .base
            .strip_prefix("http://")
            .with_context(|| format!("{} is not an http:// URL", self.base))?
            .trim_end_matches('/');
        let mut socket = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("connect to {authority}"))?;
        let payload = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        );
        socket.write_all(request.as_bytes()).await?;
        Ok(PendingRequest { socket })
    }

    /// A chat request body for `model` with one user message.
    pub fn chat_body(model: &str, content: &str, max_tokens: u32) -> Value {
        json!({
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens,
            "nvext": {"extra_fields": ["worker_id", "timing"]},
        })
    }

    /// POSTs `body` as JSON to `path` and reads the whole answer.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        answer(resp).await
    }

    /// Sends a hand-made request (error-contract tests).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> anyhow::Result<Answer> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body.to_owned());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        answer(
            req.send()
                .await
                .with_context(|| format!("request {path}"))?,
        )
        .await
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        answer(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .with_context(|| format!("GET {path}"))?,
        )
        .await
    }

    /// A non-streaming chat completion.
    pub async fn chat(
        &self,
        model: &str,
        content: &str,
        max_tokens: u32,
    ) -> anyhow::Result<Answer> {
        self.post(
            "/v1/chat/completions",
            &Self::chat_body(model, content, max_tokens),
        )
        .await
    }

    /// The ids of the models `/v1/models` lists (an error unless it answers
    /// 200 with a list).
    pub async fn models(&self) -> anyhow::Result<Vec<String>> {
        let answer = self.get("/v1/models").await?;
        anyhow::ensure!(
            answer.status == 200,
            "GET /v1/models: {} {}",
            answer.status,
            answer.text
        );
        let data = answer.json["data"]
            .as_array()
            .with_context(|| format!("GET /v1/models: no data list in {}", answer.text))?;
        Ok(data
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect())
    }

    /// A streaming chat completion, collected (usage included).
    pub async fn stream_chat(
        &self,
        model: &str,
        content: &str,
        max_tokens: u32,
    ) -> anyhow::Result<Stream> {
        self.stream(
            "/v1/chat/completions",
            Self::chat_body(model, content, max_tokens),
        )
        .await
    }

    /// POSTs `body` (with `"stream": true` and usage added) to `path` and
    /// returns the stream unread.
    pub async fn open_stream(&self, path: &str, mut body: Value) -> anyhow::Result<LiveStream> {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path} (stream)"))?;
        Ok(LiveStream {
            status: resp.status().as_u16(),
            response: resp,
            parser: SseParser::new(),
            pending: Default::default(),
        })
    }

    /// POSTs `body` (with `"stream": true` added) to `path` and collects the
    /// server-sent events.
    pub async fn stream(&self, path: &str, body: Value) -> anyhow::Result<Stream> {
        let started = Instant::now();
        let LiveStream {
            status,
            response,
            mut parser,
            ..
        } = self.open_stream(path, body).await?;
        let mut bytes = response.bytes_stream();
        let mut events = Vec::new();
        while let Some(chunk) = bytes.next().await {
            let chunk = chunk.context("reading the event stream")?;
            let at = started.elapsed();
            events.extend(
                parser
                    .push(&chunk)
                    .into_iter()
                    .map(|data| SseEvent { data, at }),
            );
        }
        Ok(Stream { status, events })
    }
}

async fn answer(resp: reqwest::Response) -> anyhow::Result<Answer> {
    let status = resp.status().as_u16();
    let text = resp.text().await.context("reading the body")?;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Answer { status, json, text })
}
