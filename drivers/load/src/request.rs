//! One request, as a load sees it: sent, timed from the client's side
//! (time to the first content token, gaps between content chunks, end to
//! end) and judged (status, error events, `[DONE]`, the exact output
//! length). The bench engine and the fault companion both send every
//! request through [`send`].

use std::fmt;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sse::SseParser;

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

impl ErrorKind {
    /// Whether the server answered with an explicit failure (a status, an
    /// error event, a short answer), as opposed to leaving the client
    /// without an answer (no connection, a cut stream, silence): a fault
    /// test allows the first and counts the second as lost.
    pub fn is_explicit(self) -> bool {
        matches!(
            self,
            ErrorKind::Status(_) | ErrorKind::ErrorEvent | ErrorKind::WrongLength
        )
    }
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Prompt tokens served from the prefix cache, from the usage block.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    /// When it was sent, ms after the load started.
    #[serde(default)]
    pub sent_at_ms: f64,
    /// Why it failed; `None` when it delivered every token.
    pub error: Option<ErrorKind>,
    /// The answer's text (kept only for multi-turn sessions, which send it
    /// back).
    #[serde(skip)]
    pub text: String,
}

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The full URL.
    pub url: &'a str,
    /// The JSON body (with `stream` set as wanted).
    pub body: &'a Value,
    /// Whether the body asks for a stream.
    pub stream: bool,
    /// The exact number of output tokens expected, if any.
    pub expect_tokens: Option<u64>,
    /// No answer within this is a timeout.
    pub timeout: Duration,
    /// Keep the answer's text in the record.
    pub keep_text: bool,
}

/// A streamed chunk or a whole body, as far as a load reads it.
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
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl ChunkChoice {
    fn content(&self) -> Option<&str> {
        fn non_empty(s: &Option<String>) -> Option<&str> {
            s.as_deref().filter(|s| !s.is_empty())
        }
        self.delta
            .as_ref()
            .and_then(|d| non_empty(&d.content))
            .or_else(|| non_empty(&self.text))
            .or_else(|| self.message.as_ref().and_then(|d| non_empty(&d.content)))
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Sends `request` with `client` and records how it went.
pub async fn send(client: &reqwest::Client, request: &Request<'_>) -> RequestRecord {
    let started = Instant::now();
    let mut rec = RequestRecord::default();
    let outcome = tokio::time::timeout(
        request.timeout,
        exchange(client, request, started, &mut rec),
    )
    .await;
    rec.e2e_ms = ms(started.elapsed());
    rec.error = match outcome {
        Err(_) => Some(ErrorKind::Timeout),
        Ok(Err(kind)) => Some(kind),
        Ok(Ok(()))
            if request
                .expect_tokens
                .is_some_and(|n| n != rec.output_tokens) =>
        {
            Some(ErrorKind::WrongLength)
        }
        Ok(Ok(())) => None,
    };
    if !request.keep_text {
        rec.text.clear();
    }
    rec
}

async fn exchange(
    client: &reqwest::Client,
    request: &Request<'_>,
    started: Instant,
    rec: &mut RequestRecord,
) -> Result<(), ErrorKind> {
    let resp = client
        .post(request.url)
        .json(request.body)
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
    if !request.stream {
        let body = resp.bytes().await.map_err(|_| ErrorKind::Incomplete)?;
        let chunk: Chunk = serde_json::from_slice(&body).map_err(|_| ErrorKind::Incomplete)?;
        if chunk.error.is_some() {
            return Err(ErrorKind::ErrorEvent);
        }
        if let Some(text) = chunk.choices.first().and_then(ChunkChoice::content) {
            rec.text.push_str(text);
        }
        let usage = chunk.usage.ok_or(ErrorKind::Incomplete)?;
        rec.read_usage(usage);
        return Ok(());
    }
    let mut bytes = resp.bytes_stream();
    let mut parser = SseParser::new();
    let mut last: Option<Duration> = None;
    let mut content_chunks = 0u64;
    let mut done = false;
    while let Some(piece) = bytes.next().await {
        let piece = piece.map_err(|_| ErrorKind::Incomplete)?;
        let at = started.elapsed();
        for data in parser.push(&piece) {
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let chunk: Chunk = serde_json::from_str(&data).map_err(|_| ErrorKind::Incomplete)?;
            if chunk.error.is_some() {
                return Err(ErrorKind::ErrorEvent);
            }
            if let Some(text) = chunk.choices.first().and_then(ChunkChoice::content) {
                content_chunks += 1;
                rec.text.push_str(text);
                match last {
                    None => rec.ttft_ms = Some(ms(at)),
                    Some(prev) => rec.itl_ms.push(ms(at - prev)),
                }
                last = Some(at);
            }
            if let Some(u) = chunk.usage {
                rec.read_usage(u);
            }
        }
    }
    if rec.output_tokens == 0 {
        rec.output_tokens = content_chunks;
    }
    if done {
        Ok(())
    } else {
        Err(ErrorKind::Incomplete)
    }
}

impl RequestRecord {
    fn read_usage(&mut self, u: Usage) {
        self.input_tokens = u.prompt_tokens.or(self.input_tokens);
        self.output_tokens = u.completion_tokens.unwrap_or(self.output_tokens);
        if let Some(cached) = u.prompt_tokens_details.and_then(|d| d.cached_tokens) {
            self.cached_tokens = Some(cached);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_name_themselves_and_say_whether_the_server_answered() {
        let cases = [
            (ErrorKind::Status(503), "status_503", true),
            (ErrorKind::ErrorEvent, "error_event", true),
            (ErrorKind::WrongLength, "wrong_length", true),
            (ErrorKind::Connect, "connect", false),
            (ErrorKind::Incomplete, "incomplete", false),
            (ErrorKind::Timeout, "timeout", false),
        ];
        for (kind, name, explicit) in cases {
            assert_eq!(
                (kind.to_string().as_str(), kind.is_explicit()),
                (name, explicit)
            );
        }
    }
}
