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

use crate::engine::WorkerSpec;
use crate::model::TinyModel;
use crate::planes::{Planes, Site};
use crate::topology::TopologyBuilder;
use crate::worker::Worker;

/// What a user of a shared stack needs to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackInfo {
    /// The frontend's base URL.
    pub frontend_url: String,
    /// The main model's name.
    pub model_name: String,
    /// Every worker, in start order.
    pub workers: Vec<WorkerInfo>,
    /// Its planes, for a test that adds a worker of its own.
    pub planes: Planes,
    /// The stack's log folder.
    pub dir: PathBuf,
}

/// One worker of a shared stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its name (its log is `<name>.log` in the stack's folder).
    pub name: String,
    /// The model it serves.
    pub model: String,
    /// Its Prometheus endpoint.
    pub metrics_url: String,
    /// Its system server (health, LoRA management).
    pub system_url: String,
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

    /// The workers serving `model`, in start order.
    pub fn workers_of(&self, model: &str) -> Vec<&WorkerInfo> {
        self.info
            .workers
            .iter()
            .filter(|w| w.model == model)
            .collect()
    }

    /// Starts a worker of the test's own (`name`, serving `model_name` with
    /// `spec`) on the stack's planes, logging into `dir`: it dies with the
    /// test. Its caller waits for it to be counted.
    pub fn spawn_worker(
        &self,
        dir: &std::path::Path,
        name: &str,
        model_name: &str,
        spec: &WorkerSpec,
    ) -> anyhow::Result<Worker> {
        let site = Site {
            dir,
            planes: &self.info.planes,
            shared_state: None,
            hosts: None,
        };
        Worker::spawn(&site, name, &TinyModel::ensure()?, model_name, spec)
    }
}
