//! The standalone KV router, `python -m dynamo.router`: Dynamo's KV-aware
//! router as a process of its own, for any set of workers (the frontend
//! embeds the same router). It has no HTTP: it serves `generate`,
//! `best_worker_id` and `get_overlap_scores` on the request plane, so the
//! testbed asks it through Dynamo's own runtime client (a short Python
//! process from the same env, [`QUERY_PY`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use testbed_harness::{retry_on_port_conflict, ManagedProcess, PortLease, Probe, ProcessSpec};

use crate::planes::Site;

/// The query client: connects with the planes in its environment, waits
/// for the instances of the endpoint `argv[1]`, sends the JSON request
/// `argv[2]` to the first that answers and writes each response as a JSON
/// line to the file `argv[3]` — not to its log, where Dynamo's runtime
/// logs (stderr) can land in the middle of a printed line (seen once).
const QUERY_PY: &str = r#"
import asyncio, json, os, sys
from dynamo.runtime import DistributedRuntime

async def main(path, request, out):
    runtime = DistributedRuntime(
        asyncio.get_running_loop(),
        os.environ.get("DYN_DISCOVERY_BACKEND", "etcd"),
        os.environ.get("DYN_REQUEST_PLANE", "tcp"),
    )
    client = await runtime.endpoint(path).client()
    ids = await asyncio.wait_for(client.wait_for_instances(), 30)
    errors = []
    # A router that died without deregistering stays listed until its
    # lease expires: ask each instance until one answers.
    for instance in ids:
        try:
            answers = []
            async for item in await client.direct(request, instance):
                answers.append(item.data() if hasattr(item, "data") else item)
            with open(out, "w") as f:
                f.writelines(json.dumps(a) + "\n" for a in answers)
            break
        except Exception as e:
            errors.append(f"{instance}: {e}")
    else:
        raise SystemExit("no instance of " + path + " answered: " + "; ".join(errors))
    runtime.shutdown()

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]))
"#;

/// How long a query may take: importing Dynamo and joining the planes
/// take a second or two on a loaded 2-core machine.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running standalone router.
#[derive(Debug)]
pub struct StandaloneRouter {
    name: String,
    /// The Dynamo namespace it serves its endpoints in.
    namespace: String,
    process: ManagedProcess,
    /// Its system port (health, metrics), held while it lives.
    _system_port: PortLease,
    /// The interpreter and environment its queries run with.
    python: PathBuf,
    env: Vec<(String, String)>,
    dir: PathBuf,
    /// Queries sent so far (each logs to its own file).
    queries: AtomicUsize,
}

impl StandaloneRouter {
    /// Starts router `name` over the workers at `workers_endpoint`
    /// (`namespace.component.endpoint`), hashing `block_size`-token blocks
    /// (it must equal the workers' block size: the router does not read it
    /// from their cards), with `args` added (`--router-*` flags), and waits
    /// until its system server answers (on another system port if its own
    /// was taken meanwhile).
    pub async fn start(
        site: &Site<'_>,
        python: &Path,
        name: &str,
        workers_endpoint: &str,
        block_size: u32,
        args: &[String],
    ) -> anyhow::Result<StandaloneRouter> {
        let namespace = workers_endpoint
            .split('.')
            .next()
            .unwrap_or("dynamo")
            .to_owned();
        let at = site.placement(name);
        let env = site.planes.env(site.dir, name, &at);
        let (process, system_port) = retry_on_port_conflict(name, || async {
            let system_port = PortLease::allocate_for(name)?;
            let spec = ProcessSpec::new(name, python, site.dir)
                .args(["-m", "dynamo.router", "--endpoint", workers_endpoint])
                .args(["--router-block-size", &block_size.to_string()])
                .args(args)
                .stop_grace(Duration::from_secs(5))
                .env("DYN_SYSTEM_PORT", system_port.port().to_string())
                // It registers no health check of its own: without this its
                // /health says 503 forever. Queries wait for its endpoints.
                .env("DYN_SYSTEM_STARTING_HEALTH_STATUS", "ready")
                .envs(env.clone())
                .placed(&at);
            let mut process = ManagedProcess::spawn(spec)?;
            let probe = Probe::http_ok(format!("http://{}:{}/health", at.addr, system_port.port()));
            process.wait_ready(&probe, Duration::from_secs(60)).await?;
            Ok((process, system_port))
        })
        .await?;
        Ok(StandaloneRouter {
            name: name.to_owned(),
            namespace,
            process,
            _system_port: system_port,
            python: python.to_owned(),
            env,
            dir: site.dir.to_owned(),
            queries: AtomicUsize::new(0),
        })
    }

    /// The worker it would route `tokens` to (without routing them).
    pub async fn best_worker(&self, tokens: &[u32]) -> anyhow::Result<u64> {
        let answers = self
            .query("best_worker_id", serde_json::json!(tokens))
            .await?;
        answers
            .first()
            .and_then(Value::as_u64)
            .with_context(|| format!("best_worker_id answered {answers:?}"))
    }

    /// How many blocks of `tokens` each worker holds, per its index: a map
    /// from worker instance id to matched blocks (workers with none are
    /// absent).
    pub async fn overlap(&self, tokens: &[u32]) -> anyhow::Result<Vec<(u64, u64)>> {
        let answers = self
            .query(
                "get_overlap_scores",
                serde_json::json!({ "token_ids": tokens }),
            )
            .await?;
        let answer = answers
            .first()
            .with_context(|| "get_overlap_scores answered nothing".to_owned())?;
        overlap_of(answer)
            .with_context(|| format!("get_overlap_scores answered an unknown shape: {answer}"))
    }

    /// Sends `request` to the router's endpoint `endpoint` and returns the
    /// responses.
    async fn query(&self, endpoint: &str, request: Value) -> anyhow::Result<Vec<Value>> {
        let n = self.queries.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-query-{n}", self.name);
        let path = format!("{}.router.{endpoint}", self.namespace);
        let out = self.dir.join(format!("{name}.jsonl"));
        let spec = ProcessSpec::new(&name, &self.python, &self.dir)
            .args(["-c", QUERY_PY, &path, &request.to_string()])
            .arg(&out)
            .envs(self.env.clone());
        let mut process = ManagedProcess::spawn(spec)?;
        let (status, _) = process.wait_exit(QUERY_TIMEOUT).await?;
        anyhow::ensure!(
            status.success(),
            "{name} ({path}) failed with {status}:\n{}",
            process.log_tail(20)
        );
        std::fs::read_to_string(&out)
            .with_context(|| format!("{name} wrote no answers to {}", out.display()))?
            .lines()
            .map(|json| serde_json::from_str(json).context("a response that is not JSON"))
            .collect()
    }

    /// The process, for faults and logs.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }
}

/// Matched device blocks per worker from a `get_overlap_scores` answer
/// (`{"block_size", "num_blocks", "shared_cache", "workers": [row]}`, a row
/// per worker and data-parallel rank with its blocks per storage tier).
fn overlap_of(answer: &Value) -> Option<Vec<(u64, u64)>> {
    answer["workers"]
        .as_array()?
        .iter()
        .map(|row| {
            let id = row["worker_id"].as_u64()?;
            let blocks = row["device_blocks"]
                .as_u64()
                .or_else(|| row["device"].as_u64())?;
            Some((id, blocks))
        })
        .collect()
}
