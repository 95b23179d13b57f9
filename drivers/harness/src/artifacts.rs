//! Per-test artifacts: `target/testbed/<run-id>/<test-name>/` holds every
//! process log of the test and its own tracing output. Kept (and its path
//! printed) when the test fails; removed when it passes, unless
//! `TESTBED_KEEP_LOGS=1` (`cargo xtask test --keep-logs`).

use std::future::Future;
use std::path::{Path, PathBuf};

use tracing_subscriber::layer::SubscriberExt;

use crate::{Layout, RunId};

/// What a test knows about itself: its name, its artifact folder, its run.
#[derive(Debug, Clone)]
pub struct TestContext {
    name: String,
    dir: PathBuf,
    run_id: RunId,
    layout: Layout,
}

impl TestContext {
    /// A context for the test `name`, creating its artifact folder.
    pub fn new(name: &str) -> anyhow::Result<TestContext> {
        let layout = Layout::from_env();
        let run_id = RunId::current();
        let dir = layout.run_artifacts(&run_id).join(sanitize(name));
        Layout::ensure_dir(&dir)?;
        Ok(TestContext {
            name: name.to_owned(),
            dir,
            run_id,
            layout,
        })
    }

    /// The test's full name (`family::case`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The artifact folder: process logs go here.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A sub-folder of the artifact folder, created.
    pub fn subdir(&self, name: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join(name);
        Layout::ensure_dir(&dir)?;
        Ok(dir)
    }

    /// The run this test belongs to.
    pub fn run_id(&self) -> &RunId {
        &self.run_id
    }

    /// The testbed's folders.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A short name unique to this test within its run, safe for NATS
    /// subjects, etcd prefixes and Dynamo namespaces (letters, digits, `_`):
    /// tests that share a service keep their keys apart with it.
    pub fn namespace(&self) -> String {
        let hash = crate::hash::short_hex(self.name.as_bytes(), 4);
        let leaf: String = self
            .name
            .rsplit("::")
            .next()
            .unwrap_or("t")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        format!("t{leaf}{hash}")
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '.'
            }
        })
        .collect()
}

/// Whether artifacts of passing tests are kept.
fn keep_logs() -> bool {
    matches!(
        std::env::var("TESTBED_KEEP_LOGS").as_deref(),
        Ok("1") | Ok("true")
    )
}

/// The current test's name: libtest names the test's thread after it.
pub fn current_test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .map(str::to_owned)
        .or_else(|| std::env::var("NEXTEST_TEST_NAME").ok())
        .unwrap_or_else(|| format!("unnamed-{}", std::process::id()))
}

/// Prints where the artifacts are if the test panics.
struct KeepOnPanic<'a>(&'a TestContext);

impl Drop for KeepOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "testbed: test {} panicked; logs kept in {}",
                self.0.name,
                self.0.dir.display()
            );
        }
    }
}

/// Runs one test body: gives it a [`TestContext`] and a Tokio runtime,
/// sends its tracing output to `test.log` in its artifact folder (and to
/// stderr, which nextest shows on failure), and turns an `Err` into a panic
/// whose message names the artifact folder.
pub fn run_test<F, Fut>(body: F)
where
    F: FnOnce(TestContext) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let ctx = TestContext::new(&current_test_name()).expect("create the test's artifact folder");
    let log_file = std::fs::File::create(ctx.dir.join("test.log")).expect("create test.log");
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_env("TESTBED_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(log_file)),
        )
        .with(tracing_subscriber::fmt::layer().with_test_writer());
    let _default = tracing::subscriber::set_default(subscriber);
    let guard = KeepOnPanic(&ctx);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a Tokio runtime");
    let result = runtime.block_on(body(ctx.clone()));
    drop(runtime);
    drop(guard);
    match result {
        Ok(()) => {
            if !keep_logs() {
                let _ = std::fs::remove_dir_all(&ctx.dir);
            }
        }
        Err(e) => panic!(
            "{e:?}\n\ntestbed: logs of this test are in {}",
            ctx.dir.display()
        ),
    }
}
