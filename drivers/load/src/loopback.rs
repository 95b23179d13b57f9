//! A loopback server that answers OpenAI-style requests with a stream of
//! server-sent events at configured delays: the first content chunk
//! `ttft` after the request is read, then one every `itl`, then the usage
//! chunk and `[DONE]`. Without streaming it answers one JSON body after
//! `ttft + (n - 1) * itl`.
//!
//! It measures the generator itself: its delays are exact to the
//! scheduler's wake-up (a thread per connection sleeping to absolute
//! deadlines, `TCP_NODELAY`), so what the engine reports beyond them is
//! the engine's own error; with zero delays it shows the request rate the
//! engine sustains. It listens on a port the kernel picks on 127.0.0.1
//! (port 0), so no two servers ever collide.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseServerConfig {
    /// From the request read to the first content chunk.
    pub ttft: Duration,
    /// Between consecutive content chunks.
    pub itl: Duration,
    /// Tokens per answer; `None`: the request's `max_tokens` (16 without).
    pub tokens: Option<u32>,
    /// Prompt tokens reported in usage.
    pub prompt_tokens: u32,
}

impl Default for SseServerConfig {
    fn default() -> Self {
        SseServerConfig {
            ttft: Duration::ZERO,
            itl: Duration::ZERO,
            tokens: None,
            prompt_tokens: 8,
        }
    }
}

/// A running loopback SSE server; dropping it stops accepting.
pub struct LoopbackSseServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    accept: Option<JoinHandle<()>>,
}

impl LoopbackSseServer {
    /// Starts the server on 127.0.0.1 with `config`.
    pub fn start(config: SseServerConfig) -> std::io::Result<LoopbackSseServer> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let accept = {
            let (stop, served) = (stop.clone(), served.clone());
            std::thread::Builder::new()
                .name("sse-accept".into())
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let Ok(conn) = conn else { continue };
                        let served = served.clone();
                        let _ =
                            std::thread::Builder::new()
                                .name("sse-conn".into())
                                .spawn(move || {
                                    if serve(conn, config).is_ok() {
                                        served.fetch_add(1, Ordering::Relaxed);
                                    }
                                });
                    }
                })?
        };
        Ok(LoopbackSseServer {
            addr,
            stop,
            served,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered in full so far.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for LoopbackSseServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Reads one request, answers it, closes the connection.
fn serve(conn: TcpStream, config: SseServerConfig) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut length = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let start = Instant::now();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let tokens = config
        .tokens
        .unwrap_or_else(|| request["max_tokens"].as_u64().map_or(16, |n| n as u32));
    let stream = request["stream"].as_bool().unwrap_or(false);
    let chat = request.get("messages").is_some();
    let usage = json!({
        "prompt_tokens": config.prompt_tokens,
        "completion_tokens": tokens,
        "total_tokens": config.prompt_tokens + tokens,
    });
    let mut conn = conn;
    let sleep_until = |deadline: Instant| {
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
    };
    if !stream {
        sleep_until(start + config.ttft + config.itl * tokens.saturating_sub(1));
        let text = "tok ".repeat(tokens as usize);
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"})
        } else {
            json!({"index": 0, "text": text, "finish_reason": "length"})
        };
        let body =
            json!({"object": "chat.completion", "choices": [choice], "usage": usage}).to_string();
        write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return conn.flush();
    }
    conn.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n",
    )?;
    for i in 0..tokens {
        sleep_until(start + config.ttft + config.itl * i);
        let choice = if chat {
            json!({"index": 0, "delta": {"content": "tok "}})
        } else {
            json!({"index": 0, "text": "tok "})
        };
        let event = json!({"object": "chat.completion.chunk", "choices": [choice]});
        conn.write_all(format!("data: {event}\n\n").as_bytes())?;
    }
    let last = json!({"object": "chat.completion.chunk", "choices": [], "usage": usage});
    conn.write_all(format!("data: {last}\n\ndata: [DONE]\n\n").as_bytes())?;
    conn.flush()?;
    conn.shutdown(std::net::Shutdown::Write)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{run_point, BenchSpec, Endpoint, Quiet};
    use crate::prompts::PromptSet;
    use crate::request::ErrorKind;
    use crate::workload::{Job, Workload};

    fn spec(url: &str) -> BenchSpec {
        BenchSpec {
            output_tokens: 8,
            requests_per_point: 12,
            ..BenchSpec::new(url, "m")
        }
    }

    fn workload() -> Workload {
        Workload::Prompts(Arc::new(PromptSet {
            tokens: 1,
            prompts: vec!["hi".into()],
        }))
    }

    #[tokio::test]
    async fn engine_reads_streams_and_bodies_from_the_loopback_server() {
        let server = LoopbackSseServer::start(SseServerConfig {
            itl: Duration::from_millis(1),
            ..SseServerConfig::default()
        })
        .unwrap();
        for (stream, endpoint) in [
            (true, Endpoint::Chat),
            (true, Endpoint::Completions),
            (false, Endpoint::Chat),
        ] {
            let spec = BenchSpec {
                stream,
                endpoint,
                ..spec(&server.url())
            };
            let (point, records) = run_point(&spec, &workload(), 3, 0, Arc::new(Quiet)).await;
            assert_eq!(
                point.completed, 12,
                "{stream} {endpoint:?}: {:?}",
                point.errors
            );
            assert_eq!(point.output_tokens, 12 * 8);
            assert_eq!((point.input_tokens_min, point.input_tokens_max), (8, 8));
            if stream {
                assert!(records
                    .iter()
                    .all(|r| r.itl_ms.len() == 7 && r.ttft_ms.is_some()));
                // Under load events can arrive together (ITLs of 0), but
                // the last token cannot come before the server's 7 gaps of
                // 1 ms: TTFT plus the ITLs is when it came.
                for r in &records {
                    let last = r.ttft_ms.unwrap_or(0.0) + r.itl_ms.iter().sum::<f64>();
                    assert!(last >= 7.0, "last token after {last} ms: {r:?}");
                }
            }
        }
        // A connection's thread counts it after the client has read the
        // end: the count catches up within moments.
        testbed_harness::poll::Poll::new("the server counting 36 requests")
            .timeout(Duration::from_secs(5))
            .every(Duration::from_millis(5))
            .until(|| async {
                let n = server.served();
                Ok(testbed_harness::poll::check(n == 36, || {
                    format!("{n} counted")
                }))
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn wrong_length_and_refused_connections_are_errors() {
        let server = LoopbackSseServer::start(SseServerConfig {
            tokens: Some(5),
            ..SseServerConfig::default()
        })
        .unwrap();
        let s = spec(&server.url());
        let client = s.client();
        let rec = s.send(&client, &Job::prompt("x")).await.remove(0);
        assert_eq!(rec.error, Some(ErrorKind::WrongLength));
        assert_eq!(rec.output_tokens, 5);
        let url = server.url();
        drop(server);
        let gone = BenchSpec {
            request_timeout_s: 2.0,
            ..spec(&url)
        };
        let rec = gone.send(&client, &Job::prompt("x")).await.remove(0);
        assert_eq!(rec.error, Some(ErrorKind::Connect));
    }
}
