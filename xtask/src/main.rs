//! The testbed's command line (`cargo xtask …`): plans a tier, provisions
//! the pins, owns the run's shared services, runs nextest, prints the
//! summary. One module per subcommand; every flag lives in `flags`.

mod bench;
mod bisect;
mod bisect_dynamo;
mod capability;
mod doctor;
mod flags;
mod needs;
mod setup;
mod summary;
mod test;
mod tier;
mod up;

use clap::Parser;

fn main() {
    let xtask = flags::Xtask::parse();
    let sh = match xshell::Shell::new() {
        Ok(sh) => sh,
        Err(e) => {
            eprintln!("xtask: cannot start a shell: {e}");
            std::process::exit(1);
        }
    };
    let repo = testbed_harness::Layout::from_env().repo_root;
    sh.change_dir(&repo);
    let result = match &xtask.command {
        flags::Command::Test(f) => test::run(&sh, f),
        flags::Command::Doctor(f) => doctor::run(f),
        flags::Command::Setup(f) => setup::run(&sh, f).map(|()| 0),
        flags::Command::Up(f) => up::run(f),
        flags::Command::Bench(f) => bench::run(f),
        flags::Command::Bisect(f) => bisect::run(&sh, f),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::exit(1);
        }
    }
}
