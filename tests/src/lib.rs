//! Helpers the tier binaries share. Tests never spawn services or pick ports
//! themselves: they ask the drivers; what is here only glues test code.

use anyhow::Context as _;
use std::time::Duration;

use serde_json::Value;
use testbed_dynamo::{metrics, Metrics, TinyModel};
use testbed_harness::poll::{Check, Poll};
use testbed_load::{OpenAiClient, Stream};

/// Tokens of `text` by the fixture's tokenizer (no special tokens added).
pub fn token_count(text: &str) -> usize {
    let tokenizer = TinyModel::ensure()
        .expect("the tiny model")
        .tokenizer()
        .expect("its tokenizer");
    tokenizer.encode(text, false).expect("encode").len()
}

/// A prompt of `words` generated words, distinct per `seed`.
pub fn prompt(seed: u64, words: usize) -> String {
    testbed_load::prompts::words(seed, words)
}

/// A prompt of exactly `tokens` tokens by the fixture's tokenizer.
pub fn prompt_of_tokens(seed: u64, tokens: usize) -> String {
    let tokenizer = TinyModel::ensure()
        .expect("the tiny model")
        .tokenizer()
        .expect("its tokenizer");
    testbed_load::prompts::exact_prompt(&tokenizer, tokens, seed).expect("an exact prompt")
}

/// Asserts that a stream whose worker was killed mid-way was migrated
/// transparently: status 200, no error event, `[DONE]`, every one of
/// `max_tokens` tokens, and the frontend's migration counter rose since
/// `before`.
pub async fn assert_migrated(
    stream: &Stream,
    max_tokens: u32,
    frontend_metrics_url: &str,
    before: &Metrics,
) -> anyhow::Result<()> {
    assert_eq!(stream.status, 200);
    assert!(
        stream.error().is_none(),
        "migration hid the failure: {:?}",
        stream.error()
    );
    assert!(stream.done(), "the migrated stream finished");
    assert_eq!(
        stream.usage().map(|u| u["completion_tokens"].clone()),
        Some(max_tokens.into()),
        "every token arrived"
    );
    let after = Metrics::scrape(frontend_metrics_url).await?;
    let migrations = metrics::delta(before, &after, "dynamo_frontend_model_migration_total", &[]);
    assert!(
        migrations >= 1.0,
        "the migration metric rose ({migrations})"
    );
    Ok(())
}

/// POSTs and insists on 200, returning the JSON body.
pub async fn ok(client: &OpenAiClient, path: &str, body: &Value) -> anyhow::Result<Value> {
    let answer = client.post(path, body).await?;
    anyhow::ensure!(
        answer.status == 200,
        "POST {path} answered {}: {}",
        answer.status,
        answer.text
    );
    Ok(answer.json)
}

/// The text of a completion or chat answer's first choice.
pub fn text_of(answer: &Value) -> String {
    let choice = &answer["choices"][0];
    choice["text"]
        .as_str()
        .or_else(|| choice["message"]["content"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// `usage.completion_tokens`.
pub fn completion_tokens(answer: &Value) -> u64 {
    answer["usage"]["completion_tokens"].as_u64().unwrap_or(0)
}

/// The metrics a cancellation moves, before the client goes away.
#[derive(Debug, Clone)]
pub struct Before {
    frontend_url: String,
    worker_url: String,
    frontend: Metrics,
    worker: Metrics,
}

impl Before {
    /// Scrapes the frontend's and the serving worker's metrics now.
    pub async fn scrape(frontend_url: &str, worker_url: &str) -> anyhow::Result<Before> {
        Ok(Before {
            frontend: Metrics::scrape(frontend_url).await?,
            worker: Metrics::scrape(worker_url).await?,
            frontend_url: frontend_url.to_owned(),
            worker_url: worker_url.to_owned(),
        })
    }

    /// The worker's metrics as scraped.
    pub fn worker(&self) -> &Metrics {
        &self.worker
    }
}

/// Waits (10 s at most) until the worker stopped the request since
/// `before`, the frontend counted a disconnected client, and both have
/// nothing in flight. Only Dynamo's own metrics: it holds for every engine
/// (an engine's own checks come after).
///
/// The worker stops a request in one of two ways, and counts each: the
/// frontend's stop arrives first (`dynamo_component_cancellation_total`),
/// or its next response finds the stream closed and it stops generating
/// itself (`dynamo_component_errors_total{error_type="publish_response"}`,
/// logged "Failed to publish response for stream"). Which comes first is
/// a race: the second was seen once in CI, under load, when the client
/// left 35 ms into the request. A request that ran to its end moves
/// neither.
pub async fn assert_cancelled(before: &Before) -> anyhow::Result<()> {
    Poll::new("the disconnect cancelled through frontend and worker")
        .every(Duration::from_millis(50))
        .until(|| async {
            let f = Metrics::scrape(&before.frontend_url).await?;
            let w = Metrics::scrape(&before.worker_url).await?;
            let cancelled =
                metrics::delta(&before.worker, &w, "dynamo_component_cancellation_total", &[]);
            let broken_stream = metrics::delta(
                &before.worker,
                &w,
                "dynamo_component_errors_total",
                &[("error_type", "publish_response")],
            );
            let disconnected = metrics::delta(
                &before.frontend,
                &f,
                "dynamo_frontend_disconnected_clients",
                &[],
            );
            let inflight = (
                f.value("dynamo_frontend_inflight_requests", &[]),
                w.value("dynamo_component_inflight_requests", &[]),
            );
            let seen = format!("worker cancellations +{cancelled}, worker stops on a closed response stream +{broken_stream}, disconnected clients +{disconnected}, in flight (frontend, worker) {inflight:?}");
            let stopped = cancelled >= 1.0 || broken_stream >= 1.0;
            if stopped && disconnected >= 1.0 && inflight == (0.0, 0.0) {
                println!("{seen}");
                return Ok(Check::Done(()));
            }
            Ok(Check::NotYet(seen))
        })
        .await
}

/// Opens a streaming request, reads its first event, waits for
/// `generating` (the worker has it in flight), then goes away mid-stream.
pub async fn disconnect_mid_stream<F, Fut>(
    client: &OpenAiClient,
    path: &str,
    body: Value,
    generating: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut stream = client.open_stream(path, body).await?;
    anyhow::ensure!(
        stream.status == 200,
        "the stream answered {}",
        stream.status
    );
    let first = stream.next_event(Duration::from_secs(30)).await?;
    anyhow::ensure!(first.is_some(), "the stream ended before its first event");
    // The first event can precede the worker's start (under load): go away
    // only once the worker is generating.
    generating().await?;
    stream.abandon();
    Ok(())
}

/// Asserts that `err` says `who` exited with `code` before it was ready
/// and quotes the log line that names `quoted`.
pub fn assert_early_exit(err: &anyhow::Error, who: &str, code: i32, quoted: &str) {
    let text = format!("{err:#}");
    let expected = format!("{who} exited with exit code {code} before it was ready");
    assert!(
        text.starts_with(&expected),
        "expected `{expected}…`: {text}"
    );
    assert!(
        text.contains(quoted),
        "the log is quoted ({quoted}): {text}"
    );
}

/// Asserts that run `run` left no process record behind: its processes
/// were stopped by their own teardown, not left for the reaper.
pub fn assert_nothing_left_for_the_reaper(run: &testbed_harness::RunId) {
    let records = testbed_harness::reaper::records(&testbed_harness::Layout::from_env(), run);
    assert!(
        records.is_empty(),
        "teardown removed every record of run {}: {records:?}",
        run.as_str()
    );
}

/// The `testbed-runner` binary (`cargo xtask up` and `bench` are it), as
/// `cargo xtask test` builds it.
pub fn runner_binary() -> anyhow::Result<std::path::PathBuf> {
    let exe = testbed_harness::Layout::from_env()
        .target_dir
        .join("debug")
        .join("testbed-runner");
    anyhow::ensure!(
        exe.is_file(),
        "{} is not built: run `cargo build --workspace --bin testbed-runner` (`cargo xtask test` builds it)",
        exe.display()
    );
    Ok(exe)
}

/// The processes of `pids` still alive (not zombies), with their command
/// lines.
pub fn alive(pids: &[u32]) -> Vec<(u32, String)> {
    use testbed_harness::procinfo;
    pids.iter()
        .filter(|p| procinfo::stat(**p).is_some_and(|s| s.state != 'Z'))
        .map(|p| (*p, procinfo::cmdline(*p).unwrap_or_default()))
        .collect()
}

/// Waits until no process of `pids` is alive, `within` at most; the error
/// lists the survivors.
pub async fn all_dead(pids: &[u32], within: Duration) -> anyhow::Result<()> {
    Poll::new("every process gone")
        .timeout(within)
        .every(Duration::from_millis(10))
        .until(|| async {
            let left = alive(pids);
            Ok(testbed_harness::poll::check(left.is_empty(), || {
                format!("survivors {left:?}")
            }))
        })
        .await
}

/// The pid a process tree's log announces with `grandchild <pid>` (the
/// harness's own tests start `sh -c 'sleep 600 & echo grandchild $!; wait'`).
pub async fn grandchild_of(log: &std::path::Path) -> anyhow::Result<u32> {
    Poll::new(format!("{} announcing its grandchild", log.display()))
        .timeout(Duration::from_secs(5))
        .every(Duration::from_millis(10))
        .until(|| async {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            Ok(
                match text.lines().find_map(|l| l.strip_prefix("grandchild ")) {
                    Some(pid) => Check::Done(pid.trim().parse()?),
                    None => Check::NotYet(format!("{} lines", text.lines().count())),
                },
            )
        })
        .await
}

/// A worker's instance id (what `nvext.worker_id` reports and what pins a
/// request to it), from the `worker_id` label (hex) of its own metrics.
pub async fn instance_id(worker_metrics_url: &str) -> anyhow::Result<u64> {
    let m = Metrics::scrape(worker_metrics_url).await?;
    let hex = m
        .label_values("worker_id")
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no worker_id label at {worker_metrics_url}"))?;
    u64::from_str_radix(&hex, 16).map_err(|e| anyhow::anyhow!("worker_id {hex:?}: {e}"))
}

/// `body` pinned to the worker with instance id `id` (Dynamo's
/// `nvext.backend_instance_id`, honoured by every router mode).
pub fn pinned(mut body: Value, id: u64) -> Value {
    body["nvext"]["backend_instance_id"] = id.into();
    body
}

/// One TCP connect to `addr` from inside the network namespace `netns` (a
/// test host), through the fixture child's `connect` mode: `connected`,
/// `refused`, `timed out`, or the error.
pub fn connect_from(
    fixture_child: &std::path::Path,
    netns: &str,
    addr: std::net::SocketAddr,
    timeout: Duration,
) -> anyhow::Result<String> {
    let ip = testbed_harness::hosts::ip_binary().context("iproute2's ip")?;
    let output = std::process::Command::new(ip)
        .args(["netns", "exec", netns])
        .arg(fixture_child)
        .args([
            "connect",
            &addr.to_string(),
            &timeout.as_millis().to_string(),
        ])
        .output()
        .context("run the fixture child on a host")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The network namespaces `ip netns list` shows.
pub fn netns_list() -> Vec<String> {
    let Some(ip) = testbed_harness::hosts::ip_binary() else {
        return Vec::new();
    };
    std::process::Command::new(ip)
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a network interface called `name` exists in the test's namespace.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Where a binary target of this package is at run time: where nextest
/// says (`NEXTEST_BIN_EXE_<name>`: in a run from an archive, the extracted
/// copy), else `built`, the path cargo compiled in. Use
/// [`fixture_child!`].
pub fn bin_exe(name: &str, built: &str) -> std::path::PathBuf {
    [
        format!("NEXTEST_BIN_EXE_{name}"),
        format!("NEXTEST_BIN_EXE_{}", name.replace('-', "_")),
    ]
    .iter()
    .find_map(std::env::var_os)
    .map(std::path::PathBuf::from)
    .unwrap_or_else(|| std::path::PathBuf::from(built))
}

/// The fixture child binary (`testbed-fixture-child`) for a test of this
/// package: the archive's copy when the tests run from one.
#[macro_export]
macro_rules! fixture_child {
    () => {
        $crate::bin_exe(
            "testbed-fixture-child",
            env!("CARGO_BIN_EXE_testbed-fixture-child"),
        )
    };
}

/// Starts the fixture child (`binary`, built with this package) in `mode`
/// as a test process of run `run`, logging into `log_dir`; returns it with
/// its standard output, whose first line (what it started) is the caller's
/// to read.
pub fn start_fixture(
    binary: &std::path::Path,
    mode: &str,
    run: &testbed_harness::RunId,
    log_dir: &std::path::Path,
) -> anyhow::Result<(
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(binary)
        .arg(mode)
        .env("TESTBED_RUN_ID", run.as_str())
        .env("FIXTURE_LOG_DIR", log_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("start the fixture child ({mode})"))?;
    let stdout = child.stdout.take().context("piped")?;
    Ok((child, std::io::BufReader::new(stdout).lines()))
}

#[cfg(test)]
mod tests {
    /// nextest's run-time path wins over the compiled-in one (each test
    /// runs in a process of its own, so the variable is this test's).
    #[test]
    fn a_binary_is_found_where_nextest_says_it_is() {
        let name = "testbed-bin-exe-probe";
        assert_eq!(
            super::bin_exe(name, "/built/here"),
            std::path::PathBuf::from("/built/here")
        );
        std::env::set_var("NEXTEST_BIN_EXE_testbed_bin_exe_probe", "/extracted/there");
        assert_eq!(
            super::bin_exe(name, "/built/here"),
            std::path::PathBuf::from("/extracted/there")
        );
    }
}
