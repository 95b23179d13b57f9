//! Stacks shared by the tests of a run: a whole topology (services,
//! frontend, workers) started once for every test that asks for the same
//! shape, through the run's shared state (see `testbed_harness::shared`):
//! the first user starts it, `cargo xtask test` holds it for the tier, the
//! last user stops it. Only read-only families share a stack; anything
//! that kills, stalls or reconfigures gets its own.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use testbed_harness::shared::{self, SharedLease, Started};
use testbed_load::OpenAiClient;

use crate::topology::TopologyBuilder;

/// What a user of a shared stack needs to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackInfo {
    /// The frontend's base URL.
    pub frontend_url: String,
    /// The served model's name.
    pub model_name: String,
    /// Each worker's Prometheus endpoint, in start order.
    pub worker_metrics_urls: Vec<String>,
    /// Each worker's system server (health, LoRA management), in start
    /// order.
    pub worker_system_urls: Vec<String>,
    /// The stack's log folder.
    pub dir: PathBuf,
}

/// One test's use of a shared stack.
#[derive(Debug)]
pub struct SharedStack {
    info: StackInfo,
    client: OpenAiClient,
    _lease: SharedLease,
}

impl SharedStack {
    /// Joins the run's stack called `key`, starting it from `builder` if
    /// none runs. Every user of a key must ask for the same shape.
    pub async fn acquire(key: &str, builder: TopologyBuilder) -> anyhow::Result<SharedStack> {
        let (value, lease) = shared::acquire(key, |start| async move {
            let grace = Duration::from_secs(15);
            let topology = builder.start_in(start.dir, Some(start.state_file)).await?;
            let (groups, info) = topology.detach();
            Ok(Started {
                groups,
                value: serde_json::to_string(&info)?,
                stop_grace: grace,
            })
        })
        .await?;
        let info: StackInfo = serde_json::from_str(&value)?;
        Ok(SharedStack {
            client: OpenAiClient::new(&info.frontend_url),
            info,
            _lease: lease,
        })
    }

    /// A client of its frontend.
    pub fn client(&self) -> &OpenAiClient {
        &self.client
    }

    /// What it is.
    pub fn info(&self) -> &StackInfo {
        &self.info
    }

    /// Its frontend's Prometheus endpoint.
    pub fn frontend_metrics_url(&self) -> String {
        format!("{}/metrics", self.info.frontend_url)
    }
}
