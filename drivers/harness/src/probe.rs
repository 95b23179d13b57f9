//! Readiness probes: how a driver knows its process serves. A probe is tried
//! again and again while the process is watched; see
//! [`crate::ManagedProcess::wait_ready`].

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// The future a custom probe returns: `Ok(())` when ready, `Err(why not)`.
pub type ProbeFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A check on an HTTP answer: status and body in, `Err(why not)` out.
pub type HttpPredicate = Arc<dyn Fn(u16, &str) -> Result<(), String> + Send + Sync>;

/// One way of asking "are you serving yet?".
#[derive(Clone)]
pub enum Probe {
    /// A TCP connection to the address is accepted.
    Tcp(SocketAddr),
    /// A GET of the URL answers and the predicate accepts the answer.
    Http {
        /// The URL to GET.
        url: String,
        /// What the answer must satisfy, in words, for error messages.
        expectation: String,
        /// The check itself.
        predicate: HttpPredicate,
    },
    /// An async check of the driver's own (a real client connection, say).
    Custom {
        /// What is checked, for error messages.
        description: String,
        /// Makes one attempt.
        attempt: Arc<dyn Fn() -> ProbeFuture + Send + Sync>,
    },
}

impl Probe {
    /// Ready once `addr` accepts a TCP connection.
    pub fn tcp(addr: SocketAddr) -> Probe {
        Probe::Tcp(addr)
    }

    /// Ready once GET `url` answers 2xx.
    pub fn http_ok(url: impl Into<String>) -> Probe {
        Probe::http(url, "a 2xx status", |status, _| {
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        })
    }

    /// Ready once GET `url` answers something `predicate` accepts.
    pub fn http(
        url: impl Into<String>,
        expectation: impl Into<String>,
        predicate: impl Fn(u16, &str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Probe {
        Probe::Http {
            url: url.into(),
            expectation: expectation.into(),
            predicate: Arc::new(predicate),
        }
    }

    /// Ready once `attempt` resolves to `Ok(())`.
    pub fn custom<F, Fut>(description: impl Into<String>, attempt: F) -> Probe
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Probe::Custom {
            description: description.into(),
            attempt: Arc::new(move || Box::pin(attempt())),
        }
    }

    /// Makes one attempt, bounded by `limit`.
    pub async fn attempt(&self, limit: Duration) -> Result<(), String> {
        let work = async {
            match self {
                Probe::Tcp(addr) => tokio::net::TcpStream::connect(addr)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Probe::Http { url, predicate, .. } => {
                    let client = http_client();
                    let resp = client.get(url).send().await.map_err(|e| error_chain(&e))?;
                    let status = resp.status().as_u16();
                    let body = resp.text().await.map_err(|e| error_chain(&e))?;
                    predicate(status, &body)
                }
                Probe::Custom { attempt, .. } => attempt().await,
            }
        };
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(format!("attempt took longer than {limit:?}")),
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Tcp(addr) => write!(f, "TCP connect to {addr}"),
            Probe::Http {
                url, expectation, ..
            } => write!(f, "HTTP GET {url} expecting {expectation}"),
            Probe::Custom { description, .. } => f.write_str(description),
        }
    }
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn http_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("build the probe HTTP client")
        })
        .clone()
}

/// An error and its sources on one line: reqwest's own message alone says
/// "error sending request" and hides the cause.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
