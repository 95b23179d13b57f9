//! `bench startup`: a routed mocker stack's ready and stop times against
//! the floor of its critical path (see `testbed_dynamo::startup`), as
//! medians over rounds; kept for `up` to compare against.

use testbed_dynamo::startup::{self, Alone, Floor, Medians};
use testbed_harness::TestContext;

use crate::flags::StartupFlags;

/// Measures, prints, keeps.
pub fn run(flags: &StartupFlags) -> anyhow::Result<i32> {
    testbed_harness::signals::handle_signals_manually();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let medians = runtime.block_on(async {
        let ctx = TestContext::new("bench-startup")?;
        let mut samples = Vec::new();
        for round in 1..=flags.rounds {
            let dir = ctx.dir().join(format!("round-{round}"));
            let floor = startup::measure_floor(&dir.join("floor"), flags.workers).await?;
            let stack = startup::measure_stack(
                startup::routed_stack(flags.workers),
                &dir.join("stack"),
            )
            .await?;
            println!(
                "bench startup: round {round}/{}: floor {:.3} s, stack ready {:.3} s, stopped in {:.3} s",
                flags.rounds,
                floor.ready_s(),
                stack.ready_s,
                stack.stop_s
            );
            samples.push((floor, stack));
        }
        let _ = std::fs::remove_dir_all(ctx.dir());
        anyhow::Ok(Medians::of(&samples))
    })?;
    print(&medians.floor, &medians);
    let path = medians.keep()?;
    println!("kept in {}", path.display());
    Ok(0)
}

fn print(floor: &Floor, medians: &Medians) {
    println!("\nmedians of {} rounds (seconds)", medians.rounds);
    println!("{:<38} {:>8} {:>8} {:>8}", "", "ready", "cpu", "stop");
    let row = |name: &str, a: Alone| {
        println!(
            "{name:<38} {:>8.3} {:>8.3} {:>8.3}",
            a.ready_s, a.cpu_s, a.stop_s
        )
    };
    row("nats-server alone", floor.nats);
    row("etcd alone", floor.etcd);
    row("frontend alone (to /live)", floor.frontend);
    row("mocker alone (to counted by frontend)", floor.worker);
    println!(
        "{:<38} {:>8} {:>8.3}",
        "  frontend + etcd on its model, once", "", floor.model_setup_cpu_s
    );
    println!(
        "{:<38} {:>8.3}",
        "critical path, each alone",
        floor.path_s()
    );
    println!(
        "{:<38} {:>8.3}",
        format!("CPU to ready / {} cores", floor.cores),
        floor.cpu_bound_s()
    );
    println!(
        "{:<38} {:>8.3} {:>8} {:>8.3}",
        "floor",
        floor.ready_s(),
        "",
        floor.stop_s()
    );
    println!(
        "{:<38} {:>8.3} {:>8} {:>8.3}",
        format!("stack ({} mockers)", floor.workers),
        medians.stack.ready_s,
        "",
        medians.stack.stop_s
    );
    println!(
        "stack / floor: ready {:.2}x",
        medians.stack.ready_s / floor.ready_s()
    );
}
