//! `testbed-runner`: the heavy half of the testbed's command line. `cargo
//! xtask up` and `cargo xtask bench` become it; `cargo xtask test` runs its
//! `hold` to keep what a tier's tests share up for the whole tier.

mod bench;
mod flags;
mod hold;
mod progress;
mod provenance;
mod routers;
mod startup;
mod up;
mod workloads;

use clap::Parser;

fn main() {
    let cli = flags::Runner::parse();
    let result = match &cli.command {
        flags::Command::Up(f) => up::run(f),
        flags::Command::Bench(f) => bench::run(f),
        flags::Command::Hold(f) => hold::run(f),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("testbed-runner: error: {e:#}");
            std::process::exit(1);
        }
    }
}
