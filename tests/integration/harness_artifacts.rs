//! Per-test artifact folders: a passing test's folder is pruned, a failing
//! one's is kept and its path is in the failure message.

use std::path::PathBuf;

use testbed_harness::run_test;

/// Runs `run_test` on a thread named `name` (the test name it uses) with a
/// body that writes a log line and returns `outcome`; gives back the
/// folder it was given and the panic message, if it panicked.
fn run_named(name: &str, outcome: anyhow::Result<()>) -> (PathBuf, Option<String>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let joined = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            run_test(|ctx| async move {
                std::fs::write(ctx.dir().join("worker.log"), "a line of a process's log\n")?;
                tx.send(ctx.dir().to_owned())?;
                outcome
            })
        })
        .expect("spawn")
        .join();
    let dir = rx.recv().expect("the body ran");
    let message = joined.err().map(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    });
    (dir, message)
}

#[test]
fn a_passing_tests_folder_is_pruned_and_a_failing_ones_is_kept_and_named() {
    // SAFETY: nextest runs each test in its own process; nothing else reads
    // the environment concurrently.
    unsafe { std::env::set_var("TESTBED_KEEP_LOGS", "0") };

    let (passed, message) = run_named("artifacts::planted_pass", Ok(()));
    assert_eq!(message, None);
    assert!(!passed.exists(), "{} was pruned", passed.display());

    let (failed, message) = run_named(
        "artifacts::planted_failure",
        Err(anyhow::anyhow!("the planted failure")),
    );
    let message = message.expect("a failing body panics");
    assert!(message.starts_with("the planted failure"), "{message}");
    assert!(
        message.ends_with(&format!(
            "testbed: logs of this test are in {}",
            failed.display()
        )),
        "{message}"
    );
    assert_eq!(
        std::fs::read_to_string(failed.join("worker.log")).unwrap(),
        "a line of a process's log\n",
        "the failing test's logs are kept"
    );
    assert!(
        failed.join("test.log").is_file(),
        "with its own tracing output"
    );
    std::fs::remove_dir_all(&failed).unwrap();
}
