//! `cargo xtask up`: a Dynamo stack for a person, kept up until Ctrl-C.

use std::time::Duration;

use testbed_dynamo::TopologyBuilder;
use testbed_harness::TestContext;

use crate::flags::{Shape, UpFlags};

/// Starts the stack, prints how to reach it, waits, stops it.
pub fn run(flags: &UpFlags) -> anyhow::Result<i32> {
    testbed_harness::signals::handle_signals_manually();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let ctx = TestContext::new("up")?;
        let mode = flags.router_mode;
        let builder = match flags.topology {
            Shape::Agg => TopologyBuilder::routed(1, mode),
            Shape::Routed => TopologyBuilder::routed(flags.workers.max(1), mode),
            Shape::Disagg => TopologyBuilder::disaggregated().router_mode(mode),
        }
        .discovery(flags.discovery)
        .event_plane(flags.event_plane);
        let builder = builder.speedup(flags.speedup_ratio);
        println!("up: starting {:?} with {} worker(s) …", flags.topology, builder.worker_count());
        let default_shape = matches!(flags.topology, Shape::Routed)
            && mode == testbed_dynamo::RouterMode::Kv
            && flags.discovery == testbed_dynamo::DiscoveryKind::Etcd
            && flags.event_plane == testbed_dynamo::EventPlaneKind::NatsCore;
        let started = std::time::Instant::now();
        let topology = builder.start(&ctx).await?;
        let ready = started.elapsed().as_secs_f64();
        let url = topology.frontend.url().to_owned();
        println!("\nup: ready in {ready:.2} s{}", against_floor(ready, default_shape, flags.workers));
        println!("The model `{}` is served at {url}", topology.model_name());
        println!("  curl -s {url}/v1/models");
        println!(
            "  curl -s {url}/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"hi\"}}],\"max_tokens\":16}}'",
            topology.model_name()
        );
        println!("  metrics: {}  (workers: {})", topology.frontend.metrics_url(), topology.workers.iter().map(|w| w.metrics_url()).collect::<Vec<_>>().join(", "));
        println!("  model folder: {}", topology.model().dir.display());
        println!("environment to reach it:");
        if let Some(n) = &topology.nats {
            println!("  export NATS_SERVER={}", n.url());
        }
        if let Some(e) = &topology.etcd {
            println!("  export ETCD_ENDPOINTS={}", e.endpoints().join(","));
        }
        if let testbed_dynamo::planes::Discovery::File(dir) = &topology.planes().discovery {
            println!("  export DYN_FILE_KV={}", dir.display());
        }
        println!("logs: {}", ctx.dir().display());
        match flags.for_seconds {
            Some(s) => {
                println!("\nup: stopping in {s} s (or at Ctrl-C)");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(s)) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            None => {
                println!("\nup: press Ctrl-C to stop everything");
                tokio::signal::ctrl_c().await?;
            }
        }
        println!("up: stopping …");
        let took = testbed_dynamo::startup::stop(topology);
        println!("up: stopped in {:.2} s; nothing of it runs any more", took.as_secs_f64());
        anyhow::Ok(0)
    })
}

/// `" (floor 0.90 s, 1.09x)"` when the latest `bench startup` measured the
/// floor of this shape; how to measure it otherwise.
fn against_floor(ready_s: f64, default_shape: bool, workers: usize) -> String {
    if !default_shape {
        return String::new();
    }
    match testbed_dynamo::startup::Medians::latest() {
        Some(m) if m.floor.workers == workers => format!(
            " (floor {:.2} s by `cargo xtask bench startup`: {:.2}x)",
            m.floor.ready_s(),
            ready_s / m.floor.ready_s()
        ),
        _ => " (measure its floor with `cargo xtask bench startup`)".to_owned(),
    }
}
