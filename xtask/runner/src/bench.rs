//! `cargo xtask bench`: a concurrency sweep against a topology it starts
//! (or an existing deployment), its results written and summarised; and
//! `cargo xtask bench compare OLD NEW`.

use std::sync::Arc;

use testbed_dynamo::{MockerOptions, TinyModel, TopologyBuilder};
use testbed_harness::{Layout, RunId, TestContext};
use testbed_load::{BenchResults, BenchSpec, ConnectionMode, Endpoint};

use crate::flags::{BenchAction, BenchCompareFlags, BenchFlags, BenchRunFlags, WorkloadKind};

/// Runs the subcommand; the exit code is 1 when `compare` finds a
/// regression.
pub fn run(flags: &BenchFlags) -> anyhow::Result<i32> {
    match &flags.action {
        Some(BenchAction::Compare(c)) => compare(c),
        Some(BenchAction::Startup(s)) => crate::startup::run(s),
        Some(BenchAction::Routers(r)) => crate::routers::run(r),
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
        concurrencies: if flags.rate.is_empty() {
            flags.concurrency.clone()
        } else {
            Vec::new()
        },
        rates: flags.rate.clone(),
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

/// The topology a bench starts when no `--url` is given.
pub fn topology_of(flags: &BenchRunFlags) -> (TopologyBuilder, String) {
    let mocker = MockerOptions {
        speedup_ratio: flags.speedup_ratio,
        num_gpu_blocks: flags.mocker_kv_blocks,
        ..MockerOptions::default()
    };
    let builder = TopologyBuilder::routed(flags.workers.max(1), flags.router_mode)
        .mocker(mocker)
        .model_name(&flags.model)
        .frontend_args(flags.frontend_args.iter());
    let mut description = format!(
        "{} mocker(s), {} router, speedup {}",
        builder.worker_count(),
        flags.router_mode.as_arg(),
        flags.speedup_ratio
    );
    if let Some(blocks) = flags.mocker_kv_blocks {
        description.push_str(&format!(", {blocks} KV blocks each"));
    }
    if !flags.frontend_args.is_empty() {
        description.push_str(&format!(", frontend {}", flags.frontend_args.join(" ")));
    }
    (builder, description)
}

/// Checks the sweep's points are well formed.
fn check(flags: &BenchRunFlags) -> anyhow::Result<()> {
    anyhow::ensure!(flags.requests > 0, "--requests must be positive");
    if flags.workload.kind == WorkloadKind::Trace {
        return Ok(());
    }
    if flags.rate.is_empty() {
        anyhow::ensure!(
            !flags.concurrency.is_empty() && flags.concurrency.iter().all(|&c| c > 0),
            "--concurrency needs one or more positive numbers"
        );
    } else {
        anyhow::ensure!(
            flags.rate.iter().all(|r| r.is_finite() && *r > 0.0),
            "--rate needs positive requests/s, got {:?}",
            flags.rate
        );
    }
    Ok(())
}

/// Where a bench run writes: `--out`, or `target/testbed/bench/<run id>`.
pub fn out_dir(out: &Option<std::path::PathBuf>, run_id: &RunId) -> std::path::PathBuf {
    out.clone().unwrap_or_else(|| {
        Layout::from_env()
            .target_dir
            .join("testbed")
            .join("bench")
            .join(run_id.as_str())
    })
}

fn sweep(flags: &BenchRunFlags) -> anyhow::Result<i32> {
    check(flags)?;
    testbed_harness::signals::handle_signals_manually();
    let run_id = RunId::fresh("bench");
    let out = out_dir(&flags.out, &run_id);
    let tokenizer = TinyModel::ensure()?.tokenizer()?;
    let points = if flags.rate.is_empty() {
        flags.concurrency.len()
    } else {
        flags.rate.len()
    };
    let job_count = points * flags.requests * usize::from(flags.rounds);
    let made = crate::workloads::make(flags, &tokenizer, job_count)?;
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
                let (builder, description) = topology_of(flags);
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
        let mut spec = spec_of(flags, &url);
        let observer = Arc::new(crate::progress::Printer::new());
        let (points, what) = match made {
            crate::workloads::Made::Sweep(workload, what) => {
                let load = if spec.rates.is_empty() {
                    format!("concurrency {:?}", spec.concurrencies)
                } else {
                    format!("Poisson rates {:?} req/s", spec.rates)
                };
                println!(
                    "bench: {what}, {} out tokens, {} requests per point in each of {} round(s), {load} against {}",
                    spec.output_tokens, spec.requests_per_point, spec.rounds, spec.url
                );
                let points = tokio::select! {
                    points = testbed_load::sweep(&spec, &workload, observer) => points?,
                    _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the topology is stopped"),
                };
                (points, what)
            }
            crate::workloads::Made::Trace(jobs, what) => {
                spec.concurrencies = Vec::new();
                spec.requests_per_point = jobs.len();
                println!("bench: {what}: {} requests against {}", jobs.len(), spec.url);
                let (point, _) = tokio::select! {
                    point = testbed_load::engine::replay(&spec, jobs, observer) => point,
                    _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the topology is stopped"),
                };
                (vec![point], what)
            }
        };
        drop(topology);
        anyhow::Ok(BenchResults::new(
            run_id.as_str(),
            spec,
            &format!("{description}; {what}"),
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
