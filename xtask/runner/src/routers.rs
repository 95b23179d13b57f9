//! `bench routers`: KV routing against round-robin and random on a
//! prefix-heavy workload, each router on a stack of its own (the same
//! mockers, KV cache and prompts), results and overlaid charts written,
//! and the verdict on KV routing's lead as the exit code.

use std::sync::Arc;

use testbed_dynamo::{MockerOptions, TinyModel, TopologyBuilder};
use testbed_harness::{RunId, TestContext};
use testbed_load::router_comparison::RouterComparison;
use testbed_load::{BenchResults, BenchSpec, SharedPrefix, Workload};

use crate::flags::RoutersFlags;

/// Runs every router, compares, returns 0 when KV routing wins by the
/// margin and 4 when it does not.
pub fn run(flags: &RoutersFlags) -> anyhow::Result<i32> {
    anyhow::ensure!(
        flags.modes.iter().any(|m| m.as_arg() == "kv") && flags.modes.len() >= 2,
        "--modes needs kv and at least one other router, got {:?}",
        flags.modes.iter().map(|m| m.as_arg()).collect::<Vec<_>>()
    );
    anyhow::ensure!(
        !flags.concurrency.is_empty() && flags.concurrency.iter().all(|&c| c > 0),
        "--concurrency needs one or more positive numbers"
    );
    testbed_harness::signals::handle_signals_manually();
    let started = std::time::Instant::now();
    let run_id = RunId::fresh("routers");
    let out = crate::bench::out_dir(&flags.out, &run_id);
    let tokenizer = TinyModel::ensure()?.tokenizer()?;
    let prefix = (flags.isl as f64 * flags.prefix_ratio).round() as usize;
    anyhow::ensure!(
        prefix <= flags.isl,
        "--prefix-ratio is a share between 0 and 1"
    );
    let shape = SharedPrefix {
        groups: flags.prefix_groups,
        prefix_tokens: prefix,
        suffix_tokens: flags.isl - prefix,
        requests: flags.requests * flags.concurrency.len(),
        seed: 1,
    };
    println!(
        "bench routers: {} prompts of {} tokens in {} groups sharing {prefix} tokens each …",
        shape.requests, flags.isl, shape.groups
    );
    let jobs = shape
        .jobs(&tokenizer)?
        .into_iter()
        .map(|(_, j)| j)
        .collect();
    let workload = Workload::Jobs(Arc::new(jobs));
    let what = format!(
        "{} mockers at speedup {}, {} KV blocks each; {} groups sharing {prefix} of {} tokens, {} out",
        flags.workers, flags.speedup_ratio, flags.mocker_kv_blocks, shape.groups, flags.isl, flags.osl
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    for mode in &flags.modes {
        let name = mode.as_arg().to_owned();
        let results = runtime.block_on(async {
            let ctx = TestContext::new(&format!("routers-{name}"))?;
            let builder = TopologyBuilder::routed(flags.workers, *mode)
                .mocker(MockerOptions {
                    speedup_ratio: flags.speedup_ratio,
                    num_gpu_blocks: Some(flags.mocker_kv_blocks),
                    ..MockerOptions::default()
                })
                .frontend_args(flags.frontend_args.iter());
            println!("bench routers: {name}: starting the stack (logs: {}) …", ctx.dir().display());
            let topology = builder.start(&ctx).await?;
            let spec = BenchSpec {
                input_tokens: flags.isl,
                output_tokens: flags.osl,
                concurrencies: flags.concurrency.clone(),
                requests_per_point: flags.requests,
                ..BenchSpec::new(topology.frontend.url(), topology.model_name())
            };
            // The first requests after start are slow whatever the router
            // (measured: 26–31 ms TTFT against ~7): warm up on prompts of
            // no group.
            let warmup = testbed_load::PromptSet::generate(&tokenizer, 32, 8, 99)?;
            testbed_load::engine::run(
                &spec,
                Arc::new(warmup.prompts.into_iter().map(testbed_load::Job::prompt).collect()),
                testbed_load::Dispatch::Closed { clients: 2, requests: 8 },
                Arc::new(testbed_load::Quiet),
            )
            .await;
            let points = tokio::select! {
                points = testbed_load::sweep(&spec, &workload, Arc::new(crate::progress::Printer::new())) => points?,
                _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; the stack is stopped"),
            };
            drop(topology);
            anyhow::Ok(BenchResults::new(
                &name,
                spec,
                &format!("{name} router, {what}"),
                points,
                crate::provenance::capture(),
            ))
        })?;
        results.write(&out.join(&name))?;
        runs.push((name, results));
    }
    let overlay: Vec<BenchResults> = runs.iter().map(|(_, r)| r.clone()).collect();
    let charts = testbed_load::charts::write_charts(&overlay, &out)?;
    let comparison = RouterComparison::of(&runs, flags.margin)?;
    println!("\nbench routers: {what}\n{}", comparison.table());
    std::fs::write(out.join("comparison.txt"), comparison.table())?;
    println!(
        "bench routers: {} routers in {:.1} s; results and charts in {}",
        runs.len(),
        started.elapsed().as_secs_f64(),
        out.display()
    );
    for c in charts
        .iter()
        .filter(|c| c.extension().is_some_and(|e| e == "png"))
    {
        println!("  {}", c.display());
    }
    Ok(if comparison.kv_wins() { 0 } else { 4 })
}
