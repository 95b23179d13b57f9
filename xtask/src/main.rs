//! The testbed's command line (`cargo xtask …`): plans a tier, provisions
//! the pins, holds what a tier's tests share, runs nextest, prints the
//! summary. One module per subcommand; every flag lives in `flags`.
//!
//! It links no driver that needs protoc, an async runtime or plotting, so
//! that `cargo xtask doctor` and `setup` build in seconds on a bare
//! machine; `up`, `bench` and the holding of shared services are
//! `testbed-runner`'s, which xtask builds once `setup` has provisioned
//! protoc.

mod archive;
mod bisect;
mod bisect_dynamo;
mod capability;
mod cargo;
mod coverage;
mod doctor;
mod exit;
mod flags;
mod merge;
mod mutate;
mod needs;
mod partition;
mod provision;
mod report;
mod retention;
mod runner;
mod setup;
mod summary;
mod test;
#[cfg(test)]
mod tidy;
mod tier;

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
    let layout = testbed_harness::Layout::from_env();
    sh.change_dir(&layout.repo_root);
    let result = match &xtask.command {
        flags::Command::Test(f) => test::run(&sh, f),
        flags::Command::Doctor(f) => doctor::run(f),
        flags::Command::Setup(f) => setup::run(&sh, f),
        flags::Command::Up(f) => runner_command(&layout, "up", &f.args),
        flags::Command::Bench(f) => runner_command(&layout, "bench", &f.args),
        flags::Command::Bisect(f) => bisect::run(&sh, f),
        flags::Command::Mutate(f) => mutate::run(f),
        flags::Command::Archive(f) => archive::run(f),
        flags::Command::Report(flags::ReportCommand::Merge(f)) => merge::run(f),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::exit(exit::code_of(&e));
        }
    }
}

/// `up` and `bench` are `testbed-runner`'s: provisions what it builds and
/// runs with (protoc, the services, the Dynamo env), then becomes it.
fn runner_command(
    layout: &testbed_harness::Layout,
    name: &str,
    args: &[String],
) -> anyhow::Result<i32> {
    let sh = xshell::Shell::new()?;
    setup::ensure_for(&sh, &[capability::Need::Env("dynamo".into())]).map_err(exit::missing)?;
    let mut argv = vec![name.to_owned()];
    argv.extend(args.iter().cloned());
    runner::exec(layout, &argv)
}
