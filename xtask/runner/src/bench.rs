//! `cargo xtask bench`: a concurrency sweep against a topology it starts
//! (or an existing deployment), its results written and summarised; and
//! `cargo xtask bench compare OLD NEW`.

use std::sync::Arc;

use testbed_dynamo::{TinyModel, TopologyBuilder};
use testbed_harness::{Layout, RunId, TestContext};
use testbed_load::{BenchResults, BenchSpec, ConnectionMode, Endpoint, PromptSet, Workload};

use crate::flags::{BenchAction, BenchCompareFlags, BenchFlags, BenchRunFlags};

/// Runs the subcommand; the exit code is 1 when `compare` finds a
/// regression.
pub fn run(flags: &BenchFlags) -> anyhow::Result<i32> {
    match &flags.action {
        Some(BenchAction::Compare(c)) => compare(c),
        Some(BenchAction::Startup(s)) => crate::startup::run(s),
        None => sweep(&flags.run),
    }
}

fn compare(flags: &BenchCompareFlags) -> anyhow::Result<i32> {
    let old = BenchResults::read(&flags.old)?;
    let new = BenchResults::read(&flags.new)?;
    println!(
        "bench compare: old {} ({}) vs new {} ({}), threshold {}% (latencies also > {} ms)",
        old.run_id,
        old.git_revision.as_deref().unwrap_or("?"),
        new.run_id,
        new.git_revision.as_deref().unwrap_or("?"),
        flags.threshold,
        flags.min_delta_ms
    );
    if old.spec.input_tokens != new.spec.input_tokens
        || old.spec.output_tokens != new.spec.output_tokens
        || old.topology != new.topology
    {
        println!(
            "bench compare: warning: the runs differ in shape ({} in/{} out, {}) vs ({} in/{} out, {})",
            old.spec.input_tokens,
            old.spec.output_tokens,
            old.topology,
            new.spec.input_tokens,
            new.spec.output_tokens,
            new.topology
        );
    }
    let cmp =
        testbed_load::compare::compare_with_floor(&old, &new, flags.threshold, flags.min_delta_ms);
    print!("{}", cmp.table());
    Ok(if cmp.regressions().is_empty() { 0 } else { 4 })
}

fn spec_of(flags: &BenchRunFlags, url: &str) -> BenchSpec {
    BenchSpec {
        endpoint: if flags.completions {
            Endpoint::Completions
        } else {
            Endpoint::Chat
        },
        input_tokens: flags.isl,
        output_tokens: flags.osl,
        concurrencies: flags.concurrency.clone(),
        requests_per_point: flags.requests,
        rounds: usize::from(flags.rounds),
        stream: !flags.no_stream,
        request_timeout_s: flags.request_timeout,
        connection: if flags.keep_alive {
            ConnectionMode::KeepAlive
        } else {
            ConnectionMode::FreshPerRequest
        },
        ..BenchSpec::new(url, &flags.model)
    }
}

fn sweep(flags: &BenchRunFlags) -> anyhow::Result<i32> {
    anyhow::ensure!(
        !flags.concurrency.is_empty() && flags.concurrency.iter().all(|&c| c > 0),
        "--concurrency needs one or more positive numbers"
    );
    anyhow::ensure!(flags.requests > 0, "--requests must be positive");
    testbed_harness::signals::handle_signals_manually();
    let run_id = RunId::fresh("bench");
    let out = flags.out.clone().unwrap_or_else(|| {
        Layout::from_env()
            .target_dir
            .join("testbed")
            .join("bench")
            .join(run_id.as_str())
    });
    let tokenizer = TinyModel::ensure()?.tokenizer()?;
    let prompt_count = flags.concurrency.len() * flags.requests * usize::from(flags.rounds);
    println!(
        "bench: making {prompt_count} prompts of exactly {} tokens …",
        flags.isl
    );
    let workload = Workload::Prompts(Arc::new(PromptSet::generate(
        &tokenizer,
        flags.isl,
        prompt_count,
        1,
    )?));
    // One thread: the load generator measures on one core and leaves the
    // others to the deployment.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    let results = runtime.block_on(async {
        let ctx;
        let mut topology = None;
        let (url, description) = match &flags.url {
            Some(url) => (url.clone(), format!("existing deployment at {url}")),
            None => {
                ctx = TestContext::new("bench")?;
                let builder = TopologyBuilder::routed(flags.workers.max(1), flags.router_mode)
                    .speedup(flags.speedup_ratio)
                    .model_name(&flags.model);
                let description = format!(
                    "{} mocker(s), {} router, speedup {}",
                    builder.worker_count(),
                    flags.router_mode.as_arg(),
                    flags.speedup_ratio
                );
                println!(
                    "bench: starting {description} (logs: {}) …",
                    ctx.dir().display()
                );
                let t = builder.start(&ctx).await?;
                let url = t.frontend.url().to_owned();
                topology = Some(t);
                (url, description)
            }
        };
        let spec = spec_of(flags, &url);
        println!(
            "bench: {} in / {} out tokens, {} requests per point in each of {} round(s), concurrency {:?} against {}",
            spec.input_tokens,
            spec.output_tokens,
            spec.requests_per_point,
            spec.rounds,
            spec.concurrencies,
            spec.url
        );
        let points = tokio::select! {
            points = testbed_load::sweep(&spec, &workload, Arc::new(crate::progress::Printer::new())) => points,
            _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the topology is stopped"),
        };
        drop(topology);
        anyhow::Ok(BenchResults::new(
            run_id.as_str(),
            spec,
            &description,
            points,
            crate::provenance::capture(),
        ))
    })?;
    let files = results.write(&out)?;
    println!("\n{}", results.table());
    println!(
        "bench: {} points in {:.1} s; results in {}:",
        results.points.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    for f in files {
        println!("  {}", f.display());
    }
    let failed: usize = results.points.iter().map(|p| p.failed).sum();
    if failed > 0 {
        println!("bench: {failed} request(s) failed (see errors above): exit 5");
        return Ok(5);
    }
    Ok(0)
}
