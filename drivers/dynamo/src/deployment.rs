//! What a family that only sends requests talks to: a topology the test
//! started itself, or — under `cargo xtask test --target URL` — a running
//! Dynamo deployment that the testbed did not start and does not stop.

use std::future::Future;

use testbed_harness::run_test;
use testbed_load::OpenAiClient;

use crate::topology::{Topology, TopologyBuilder};

/// The variable naming the running deployment's frontend URL
/// (`cargo xtask test --target`).
pub const TARGET_URL: &str = "TESTBED_TARGET_URL";
/// The variable naming its Prometheus endpoint (`--metrics-url`; the
/// frontend's own `/metrics` when unset).
pub const TARGET_METRICS_URL: &str = "TESTBED_TARGET_METRICS_URL";

/// A deployment under test.
#[derive(Debug)]
pub enum Deployment {
    /// Started by the test, stopped when dropped.
    Started(Box<Topology>),
    /// Running already, elsewhere.
    Target {
        /// A client of its frontend.
        client: OpenAiClient,
        /// Its Prometheus endpoint.
        metrics_url: String,
    },
}

impl Deployment {
    /// The running deployment the environment names, if any.
    pub fn target_from_env() -> Option<Deployment> {
        let url = std::env::var(TARGET_URL).ok().filter(|u| !u.is_empty())?;
        let url = url.trim_end_matches('/').to_owned();
        let metrics_url = std::env::var(TARGET_METRICS_URL)
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| format!("{url}/metrics"));
        Some(Deployment::Target {
            client: OpenAiClient::new(url),
            metrics_url,
        })
    }

    /// A client of its frontend.
    pub fn client(&self) -> &OpenAiClient {
        match self {
            Deployment::Started(t) => t.frontend.client(),
            Deployment::Target { client, .. } => client,
        }
    }

    /// Its frontend's Prometheus endpoint.
    pub fn metrics_url(&self) -> String {
        match self {
            Deployment::Started(t) => t.frontend.metrics_url(),
            Deployment::Target { metrics_url, .. } => metrics_url.clone(),
        }
    }
}

impl TopologyBuilder {
    /// Runs a test (see [`run_test`]) whose body only sends requests:
    /// against the running deployment [`TARGET_URL`] names when it is set,
    /// otherwise against this topology, started for the test.
    pub fn test_remote<F, Fut>(self, body: F)
    where
        F: FnOnce(Deployment) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        run_test(|ctx| async move {
            let deployment = match Deployment::target_from_env() {
                Some(target) => target,
                None => Deployment::Started(Box::new(self.start(&ctx).await?)),
            };
            body(deployment).await
        });
    }
}
