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
        let topology = builder.start(&ctx).await?;
        let url = topology.frontend.url().to_owned();
        println!("\nup: ready. The model `{}` is served at {url}", topology.model_name());
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
        drop(topology);
        println!("up: stopped; nothing of it runs any more");
        anyhow::Ok(0)
    })
}
