//! Every flag of `testbed-runner` (`cargo xtask up`, `cargo xtask bench`),
//! declared in one place. The deployment's choices are the drivers' own
//! enums.

use clap::{Parser, Subcommand, ValueEnum};
use testbed_dynamo::{DiscoveryKind, EventPlaneKind, RouterMode};

/// The heavy half of `cargo xtask`.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version)]
pub struct Runner {
    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a Dynamo stack (frontend + mocker workers, with their NATS and
    /// etcd) and keep it up until Ctrl-C, printing its URLs, a `curl` to
    /// try, and the environment to reach it. Ctrl-C stops every process it
    /// started.
    Up(UpFlags),
    /// Benchmark a Dynamo deployment: sweep concurrency with prompts of an
    /// exact input length and a fixed output length, and write results
    /// (JSON, CSV, PNG and SVG charts) to `target/testbed/bench/<run-id>/`.
    ///
    /// Starts its own topology (2 mockers, KV router, speedup 10 by default)
    /// unless `--url` names an existing one. `bench compare OLD NEW` puts
    /// two runs side by side and exits 4 when a metric regressed; a run
    /// with failed requests exits 5.
    Bench(BenchFlags),
    /// Hold what the tests of a tier share (for `cargo xtask test`): start
    /// it, print `ready`, keep it until standard input closes.
    #[command(hide = true)]
    Hold(HoldFlags),
}

/// `hold`.
#[derive(Debug, clap::Args)]
pub struct HoldFlags {
    /// The tier whose shared services to hold.
    #[arg(long)]
    pub tier: String,
}

/// Deployment shapes of `up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// One worker.
    Agg,
    /// N workers behind the router.
    Routed,
    /// A prefill and a decode worker.
    Disagg,
}

/// `up`.
#[derive(Debug, clap::Args)]
pub struct UpFlags {
    /// The shape of the deployment.
    #[arg(long, value_enum, default_value = "routed")]
    pub topology: Shape,
    /// Aggregated workers (routed topology).
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// The frontend's router mode.
    #[arg(long, value_enum, default_value = "kv")]
    pub router_mode: RouterMode,
    /// Where workers register.
    #[arg(long, value_enum, default_value = "etcd")]
    pub discovery: DiscoveryKind,
    /// How KV events travel.
    #[arg(long, value_enum, default_value = "nats")]
    pub event_plane: EventPlaneKind,
    /// The mocker's speedup ratio (1 = realistic timing, 100 = fast).
    #[arg(long, default_value_t = 10.0)]
    pub speedup_ratio: f64,
    /// Stop after this many seconds instead of waiting for Ctrl-C.
    #[arg(long)]
    pub for_seconds: Option<u64>,
}

/// `bench`.
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

/// What `bench` does besides a run.
#[derive(Debug, Subcommand)]
pub enum BenchAction {
    /// Two runs side by side; exit 4 when a metric of NEW is worse than
    /// OLD's by more than the threshold (or NEW has more failures).
    Compare(BenchCompareFlags),
    /// How long a routed mocker stack (NATS, etcd, KV-routed frontend, N
    /// mockers) takes to be ready and to stop, against the floor of its
    /// critical path: each process alone, with what it needs already up.
    /// Prints the medians and keeps them for `up` to compare against.
    Startup(StartupFlags),
}

/// `bench startup`.
#[derive(Debug, clap::Args)]
pub struct StartupFlags {
    /// Rounds (floor, then stack, each round); medians are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub rounds: u16,
    /// Mockers in the stack.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
}

/// `bench compare`.
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
    pub router_mode: RouterMode,
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Runner::command().debug_assert();
    }

    #[test]
    fn bench_run_and_compare_parse() {
        let parse = |args: &[&str]| Runner::try_parse_from(args);
        let Command::Bench(flags) = parse(&["r", "bench", "--concurrency", "1,2", "--isl", "64"])
            .unwrap()
            .command
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
        assert_eq!(flags.run.router_mode, RouterMode::Kv);
        let cases: [(&str, &[&str]); 4] = [
            ("zero rounds", &["r", "bench", "--rounds", "0"]),
            (
                "bad threshold",
                &["r", "bench", "compare", "a", "b", "--threshold", "lots"],
            ),
            ("one run to compare", &["r", "bench", "compare", "a"]),
            (
                "unknown router mode",
                &["r", "bench", "--router-mode", "fastest"],
            ),
        ];
        for (name, args) in cases {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "case {name}");
        }
        let Command::Bench(flags) =
            parse(&["r", "bench", "compare", "a", "b", "--threshold", "5%"])
                .unwrap()
                .command
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
    }

    #[test]
    fn up_takes_the_drivers_names() {
        let Command::Up(flags) = Runner::try_parse_from([
            "r",
            "up",
            "--router-mode",
            "round-robin",
            "--discovery",
            "file",
            "--event-plane",
            "zmq",
        ])
        .unwrap()
        .command
        else {
            panic!("parsed another command")
        };
        assert_eq!(
            (flags.router_mode, flags.discovery, flags.event_plane),
            (
                RouterMode::RoundRobin,
                DiscoveryKind::File,
                EventPlaneKind::Zmq
            )
        );
    }
}
