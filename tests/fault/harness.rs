//! The testbed itself under faults: a test process killed (SIGKILL) or
//! interrupted (SIGINT, as Ctrl-C through nextest) with a whole Dynamo stack
//! running, `cargo xtask up` stopped with Ctrl-C, and a worker that dies
//! during start-up. No process survives, and the next stack starts cleanly.

use std::io::{BufRead, BufReader};

use anyhow::Context;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testbed_dynamo::{MockerOptions, TopologyBuilder};
use testbed_harness::{procinfo, reaper, run_test, Layout, RunId};
use testbed_tests::{alive, all_dead};

/// Starts the fixture child with a running stack in its own run, sends it
/// `signal` once the stack is up, and returns how the child ended and the
/// pids of its stack.
fn signal_a_stack_in_a_child(
    run: &RunId,
    signal: i32,
) -> anyhow::Result<(std::process::ExitStatus, Vec<u32>)> {
    let fixture = testbed_tests::fixture_child!();
    let (mut child, mut out) =
        testbed_tests::start_fixture(&fixture, "stack", run, &std::env::temp_dir())?;
    let line = out.next().transpose()?.unwrap_or_default();
    let pids: Vec<u32> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    anyhow::ensure!(pids.len() >= 5, "the stack child printed {line:?}");
    // SAFETY: plain kill of our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    Ok((child.wait()?, pids))
}

#[test]
fn sigkilled_test_process_with_a_stack_is_reaped() {
    run_test(|ctx| async move {
        let run = RunId::fresh("fault-sigkill");
        let (_, pids) = signal_a_stack_in_a_child(&run, libc::SIGKILL)?;
        let reaped = reaper::reap_run(&Layout::from_env(), &run);
        println!(
            "the reaper killed {} process(es) the parent-death signal had not",
            reaped.len()
        );
        all_dead(&pids, Duration::from_secs(5)).await?;
        // The next stack starts cleanly on the same machine.
        let t = TopologyBuilder::aggregated().start(&ctx).await?;
        assert_eq!(
            t.client().chat("tiny", "after the crash", 4).await?.status,
            200
        );
        Ok(())
    });
}

#[test]
fn interrupted_test_process_stops_its_stack() {
    run_test(|_ctx| async move {
        let run = RunId::fresh("fault-sigint");
        let (status, pids) = signal_a_stack_in_a_child(&run, libc::SIGINT)?;
        assert_eq!(
            status.code(),
            Some(128 + libc::SIGINT),
            "the signal thread tore down and exited"
        );
        all_dead(&pids, Duration::from_secs(5)).await?;
        testbed_tests::assert_nothing_left_for_the_reaper(&run);
        Ok(())
    });
}

#[test]
fn worker_dying_at_start_fails_fast_with_its_log() {
    run_test(|ctx| async move {
        let builder = TopologyBuilder::aggregated().mocker(MockerOptions {
            extra_args: vec!["--no-such-flag".into()],
            ..MockerOptions::default()
        });
        let started = Instant::now();
        let err = builder.start(&ctx).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "failed fast, not at a timeout ({:?})",
            started.elapsed()
        );
        testbed_tests::assert_early_exit(&err, "worker-0", 2, "--no-such-flag");
        Ok(())
    });
}

/// Every descendant of `root` (children, their children, …), live now.
fn descendants(root: u32) -> Vec<u32> {
    let all = procinfo::all();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|p| p.ppid == parent).map(|p| p.pid));
        i += 1;
    }
    found.remove(0);
    found
}

#[test]
fn xtask_up_stops_its_whole_stack_on_ctrl_c() {
    run_test(|_ctx| async move {
        let xtask = Layout::from_env().target_dir.join("debug").join("xtask");
        anyhow::ensure!(
            xtask.is_file(),
            "{} is not built: run `cargo build -p xtask` (`cargo xtask` builds it)",
            xtask.display()
        );
        let mut child = Command::new(&xtask)
            .args(["up", "--topology", "routed", "--workers", "2"])
            .env("TESTBED_RUN_ID", RunId::fresh("fault-up").as_str())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut url = None;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines.by_ref() {
            let line = line?;
            if let Some((_, rest)) = line.split_once(" is served at ") {
                url = Some(rest.trim().to_owned());
            }
            if line.contains("press Ctrl-C") {
                break;
            }
        }
        let url = url.context("`xtask up` never printed its URL")?;
        let pids = descendants(child.id());
        // nats-server, etcd, the frontend and two workers at least.
        assert!(pids.len() >= 5, "up's processes: {:?}", alive(&pids));
        let answer = testbed_dynamo::OpenAiClient::new(url)
            .chat("tiny", "are you up?", 4)
            .await?;
        assert_eq!(answer.status, 200, "{}", answer.text);

        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        // Read on: up reports its stop on stdout.
        let rest: Vec<String> = lines.collect::<Result<_, _>>()?;
        let status = child.wait()?;
        assert!(
            status.success(),
            "Ctrl-C is a normal stop: {status}; {rest:?}"
        );
        assert!(
            rest.iter()
                .any(|l| l.contains("; nothing of it runs any more")),
            "up said it stopped: {rest:?}"
        );
        all_dead(&pids, Duration::from_secs(5)).await?;
        Ok(())
    });
}
