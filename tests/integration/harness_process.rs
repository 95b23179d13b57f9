//! The process harness under real process trees: nothing survives a drop, a
//! panic, a readiness timeout, a SIGTERM or a SIGKILL of the test process.

use std::process::Child;
use std::time::{Duration, Instant};

use testbed_harness::procinfo;
use testbed_harness::reaper;
use testbed_harness::{
    run_test, Layout, ManagedProcess, PortLease, Probe, ProcessError, ProcessSpec, RunId,
};

/// A shell leader with a `sleep` grandchild, as `(leader, grandchild)` pids.
async fn spawn_tree(ctx: &testbed_harness::TestContext) -> anyhow::Result<(ManagedProcess, u32)> {
    let tree = ManagedProcess::spawn(ProcessSpec::shell(
        "tree",
        "sleep 600 & echo grandchild $!; wait",
        ctx.dir(),
    ))?;
    let grandchild = testbed_tests::grandchild_of(tree.log_path()).await?;
    Ok((tree, grandchild))
}

fn alive(pid: u32) -> bool {
    procinfo::stat(pid).is_some_and(|s| s.state != 'Z')
}

async fn eventually_dead(pids: &[u32], within: Duration) -> anyhow::Result<()> {
    testbed_tests::all_dead(pids, within).await
}

/// Drops `tree` and checks that its leader and grandchild are gone within
/// 100 ms.
async fn dropped_tree_dies(tree: ManagedProcess, grandchild: u32) -> anyhow::Result<()> {
    let leader = tree.pid();
    drop(tree);
    eventually_dead(&[leader, grandchild], Duration::from_millis(100)).await
}

#[test]
fn drop_kills_the_whole_tree() {
    run_test(|ctx| async move {
        let (tree, grandchild) = spawn_tree(&ctx).await?;
        let leader = tree.pid();
        assert!(alive(leader) && alive(grandchild));
        assert_eq!(
            tree.group_members().len(),
            2,
            "leader and grandchild share the group"
        );
        dropped_tree_dies(tree, grandchild).await
    });
}

#[test]
fn stop_escalates_to_sigkill_after_the_grace_period() {
    run_test(|ctx| async move {
        let mut stubborn = ManagedProcess::spawn(
            ProcessSpec::shell(
                "stubborn",
                "trap '' TERM; echo trapped; while :; do sleep 0.05; done",
                ctx.dir(),
            )
            .stop_grace(Duration::from_millis(300)),
        )?;
        stubborn
            .wait_ready(
                &Probe::custom("log says trapped", {
                    let log = stubborn.log_path().to_owned();
                    move || {
                        let log = log.clone();
                        async move {
                            let text = std::fs::read_to_string(&log).map_err(|e| e.to_string())?;
                            if text.lines().any(|l| l == "trapped") {
                                Ok(())
                            } else {
                                Err("not yet".into())
                            }
                        }
                    }
                }),
                Duration::from_secs(5),
            )
            .await?;
        let started = Instant::now();
        let status = stubborn.stop().await;
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "a process ignoring SIGTERM is killed"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the grace period was granted"
        );
        assert!(stubborn.group_members().is_empty());
        Ok(())
    });
}

#[test]
fn readiness_timeout_names_the_probe_and_leaves_nothing() {
    run_test(|ctx| async move {
        let (mut tree, grandchild) = spawn_tree(&ctx).await?;
        let nobody = PortLease::allocate()?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], nobody.port()));
        let err = tree
            .wait_ready(&Probe::tcp(addr), Duration::from_millis(300))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ProcessError::ProbeTimeout { .. }), "{text}");
        assert!(
            text.starts_with(&format!(
                "tree was not ready after 300ms: probe TCP connect to {addr} kept failing"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("its log is {}", tree.log_path().display())),
            "{text}"
        );
        dropped_tree_dies(tree, grandchild).await
    });
}

#[test]
fn early_exit_fails_fast_and_quotes_the_log() {
    run_test(|ctx| async move {
        let mut dying = ManagedProcess::spawn(ProcessSpec::shell(
            "dying",
            "echo 'fatal: bad flag --nope' >&2; exit 3",
            ctx.dir(),
        ))?;
        let started = Instant::now();
        let err = dying
            .wait_ready(
                &Probe::http_ok("http://127.0.0.1:1/health"),
                Duration::from_secs(30),
            )
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "failed fast, not after the timeout"
        );
        let text = err.to_string();
        assert!(text.starts_with("dying exited with exit code 3 before it was ready (`sh -c 'echo '\\''fatal: bad flag --nope'\\'' >&2; exit 3'`)"), "{text}");
        assert!(text.ends_with("fatal: bad flag --nope"), "{text}");
        assert!(!err.is_port_conflict());
        Ok(())
    });
}

#[test]
fn port_conflict_is_recognised() {
    run_test(|ctx| async move {
        let mut clash = ManagedProcess::spawn(ProcessSpec::shell(
            "clash",
            "echo 'listen tcp 127.0.0.1:4222: bind: address already in use'; exit 1",
            ctx.dir(),
        ))?;
        let err = clash
            .wait_ready(
                &Probe::http_ok("http://127.0.0.1:1/"),
                Duration::from_secs(10),
            )
            .await
            .unwrap_err();
        assert!(err.is_port_conflict(), "{err}");
        Ok(())
    });
}

#[test]
fn missing_program_says_what_to_do() {
    run_test(|ctx| async move {
        let err = ManagedProcess::spawn(ProcessSpec::new(
            "ghost",
            "testbed-no-such-program",
            ctx.dir(),
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot start ghost (`testbed-no-such-program`): No such file or directory (os error 2); `testbed-no-such-program` was not found: run `cargo xtask doctor` to see what is missing and the command that provisions it"
        );
        Ok(())
    });
}

/// Starts the fixture child as a separate test process in run `run_id`.
fn fixture(
    ctx: &testbed_harness::TestContext,
    mode: &str,
    run_id: &RunId,
) -> anyhow::Result<(Child, u32, u32)> {
    let (child, mut out) =
        testbed_tests::start_fixture(&crate::fixture_child(), mode, run_id, ctx.dir())?;
    let line = out.next().transpose()?.unwrap_or_default();
    let mut parts = line.split_whitespace().skip(1).map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(leader)), Some(Ok(grandchild))) => Ok((child, leader, grandchild)),
        _ => anyhow::bail!("fixture child printed {line:?}"),
    }
}

/// Checks that the fixture's tree (`leader`, `grandchild`) died within 2 s
/// and that its teardown removed the run's records.
async fn fixture_left_nothing(run: &RunId, leader: u32, grandchild: u32) -> anyhow::Result<()> {
    eventually_dead(&[leader, grandchild], Duration::from_secs(2)).await?;
    testbed_tests::assert_nothing_left_for_the_reaper(run);
    Ok(())
}

#[test]
fn panic_in_the_test_process_leaves_nothing() {
    run_test(|ctx| async move {
        let run = RunId::fresh("panic");
        let (mut child, leader, grandchild) = fixture(&ctx, "panic", &run)?;
        let status = child.wait()?;
        assert_eq!(status.code(), Some(101), "the fixture panicked");
        fixture_left_nothing(&run, leader, grandchild).await
    });
}

#[test]
fn sigterm_of_the_test_process_leaves_nothing() {
    run_test(|ctx| async move {
        let run = RunId::fresh("sigterm");
        let (mut child, leader, grandchild) = fixture(&ctx, "hang", &run)?;
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait()?;
        assert_eq!(
            status.code(),
            Some(128 + libc::SIGTERM),
            "the signal thread ran teardown and exited"
        );
        fixture_left_nothing(&run, leader, grandchild).await
    });
}

#[test]
fn sigkill_of_the_test_process_is_reaped() {
    run_test(|ctx| async move {
        let layout = Layout::from_env();
        let run = RunId::fresh("sigkill");
        let (mut child, leader, grandchild) = fixture(&ctx, "hang", &run)?;
        let records = reaper::records(&layout, &run);
        assert_eq!(records.len(), 1, "the tree is registered under its run");
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait()?;
        // The parent-death signal takes the leader at once; the grandchild
        // (no such signal of its own) is what only the reaper can find.
        eventually_dead(&[leader], Duration::from_secs(2)).await?;
        assert!(
            alive(grandchild),
            "checked from outside: the grandchild outlived the killed test"
        );
        let reaped = reaper::reap_run(&layout, &run);
        assert_eq!(
            reaped.iter().map(|r| r.pid).collect::<Vec<_>>(),
            vec![grandchild]
        );
        eventually_dead(&[grandchild], Duration::from_secs(2)).await?;
        assert!(reaper::records(&layout, &run).is_empty());
        Ok(())
    });
}
