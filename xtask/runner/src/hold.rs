//! `hold --tier T`: what a tier's tests share, started once and held until
//! `cargo xtask test` closes this process's standard input (or it is told
//! to stop). Tests join through the run's shared state, exactly as they do
//! under a plain `cargo nextest run`, where the first test starts each
//! thing and the last one stops it.

use std::io::BufRead;

use crate::flags::HoldFlags;

/// Holds the tier's shared things; returns when told to let go.
pub fn run(flags: &HoldFlags) -> anyhow::Result<i32> {
    testbed_harness::signals::handle_signals_manually();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let held = runtime.block_on(acquire(&flags.tier))?;
    println!("ready");
    // Either stdin closes (xtask is done) or a signal arrives (Ctrl-C):
    // both end the hold.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let stdin_tx = tx.clone();
    std::thread::spawn(move || {
        for _ in std::io::stdin().lock().lines() {}
        let _ = stdin_tx.send(());
    });
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = tx.send(());
        }
    });
    let _ = rx.recv();
    // Let go of everything at once: each stack's stop waits for its
    // workers' graceful shutdown (vLLM: ~6 s).
    std::thread::scope(|scope| {
        for thing in held {
            scope.spawn(move || drop(thing));
        }
    });
    Ok(0)
}

/// A lease on one shared thing; dropping it lets go.
type Held = Box<dyn std::any::Any + Send>;

/// What a tier shares: leases that keep each thing up while they live.
/// Shared engine stacks start together.
async fn acquire(tier: &str) -> anyhow::Result<Vec<Held>> {
    let mut held: Vec<Held> = Vec::new();
    if tier == "integration" {
        held.push(Box::new(testbed_nats::SharedNats::acquire().await?));
        held.push(Box::new(testbed_etcd::SharedEtcd::acquire().await?));
    }
    let shapes = testbed_dynamo::stacks::for_tier(tier);
    let stacks = futures::future::try_join_all(shapes.iter().map(|s| async move {
        eprintln!("hold: starting the shared stack {} …", s.key);
        let started = std::time::Instant::now();
        let stack = s.acquire().await?;
        eprintln!(
            "hold: shared stack {} ready in {:.1} s ({})",
            s.key,
            started.elapsed().as_secs_f64(),
            stack.info().dir.display()
        );
        anyhow::Ok(stack)
    }))
    .await?;
    held.extend(stacks.into_iter().map(|s| Box::new(s) as Held));
    Ok(held)
}
