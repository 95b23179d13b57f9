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
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
    /// Dynamo's headline router result, on mockers: a prefix-heavy
    /// workload (groups of prompts sharing long prefixes, more than one
    /// worker's KV cache holds) against KV routing, round-robin and random
    /// in turn; TTFT and throughput charts overlaid; exit 4 unless KV
    /// routing's TTFT p50 beats the best other router by the margin at
    /// every point.
    Routers(RoutersFlags),
}

/// `bench routers`.
#[derive(Debug, clap::Args)]
pub struct RoutersFlags {
    /// The routers, comma-separated (kv among them).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "kv,round-robin,random"
    )]
    pub modes: Vec<RouterMode>,
    /// Concurrencies, comma-separated. Measured on 4 mockers: KV routing
    /// leads while fewer requests than workers are in flight, and not once
    /// every worker is busy (its load term then outweighs a cache hit).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub concurrency: Vec<usize>,
    /// Requests per point.
    #[arg(long, default_value_t = 120)]
    pub requests: usize,
    /// Mocker workers.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Prefix groups: more than the workers' caches hold together with
    /// room to spare, so that only a router that keeps each group on one
    /// worker hits the cache.
    #[arg(long, default_value_t = 32)]
    pub prefix_groups: usize,
    /// Prompt tokens.
    #[arg(long, default_value_t = 1024)]
    pub isl: usize,
    /// The share of a prompt its group shares.
    #[arg(long, default_value_t = 0.9)]
    pub prefix_ratio: f64,
    /// Output tokens.
    #[arg(long, default_value_t = 4)]
    pub osl: u32,
    /// The mockers' speedup ratio (1: a cache miss costs ~2x a hit's TTFT).
    #[arg(long, default_value_t = 1.0)]
    pub speedup_ratio: f64,
    /// KV blocks per mocker (16 tokens each): room for ~9 of the 32
    /// groups' prefixes, a little more than a worker's share of 8.
    #[arg(long, default_value_t = 580)]
    pub mocker_kv_blocks: u32,
    /// How much lower KV routing's TTFT p50 must be than the best other
    /// router's, in percent (`20%` or `20`).
    #[arg(long, default_value = "20", value_parser = testbed_load::compare::parse_threshold)]
    pub margin: f64,
    /// An argument for every router's frontend, verbatim (repeatable), e.g.
    /// `--frontend-arg=--router-kv-overlap-score-credit=0` (a planted
    /// regression: KV routing then ignores the cache).
    #[arg(long = "frontend-arg", allow_hyphen_values = true)]
    pub frontend_args: Vec<String>,
    /// Write the results here instead of target/testbed/bench/<run-id>/.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
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

/// What a bench sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    /// Distinct prompts of exactly `--isl` tokens.
    Uniform,
    /// Prompts of `--isl` tokens sharing a prefix of `--prefix-ratio` of
    /// them with the rest of their group (`--prefix-groups` groups, drawn
    /// at random).
    SharedPrefix,
    /// Conversations of `--turns` user turns of `--isl` tokens, each turn
    /// sent with the history so far.
    Sessions,
    /// A Mooncake JSONL trace (`--trace`), replayed at its own times.
    Trace,
}

/// The workload's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkloadFlags {
    /// The kind of workload.
    #[arg(long = "workload", value_enum, default_value = "uniform")]
    pub kind: WorkloadKind,
    /// Shared-prefix groups.
    #[arg(long, default_value_t = 8)]
    pub prefix_groups: usize,
    /// The share of a shared-prefix prompt that its group shares (0–1).
    #[arg(long, default_value_t = 0.9)]
    pub prefix_ratio: f64,
    /// User turns per session.
    #[arg(long, default_value_t = 4)]
    pub turns: usize,
    /// The Mooncake trace to replay (with `--workload trace`).
    #[arg(long)]
    pub trace: Option<std::path::PathBuf>,
    /// Tokens per trace block in the replay (Mooncake's are 512; 16 scales
    /// every length by 16/512, down to the tiny model's context).
    #[arg(long, default_value_t = 512)]
    pub trace_block_tokens: usize,
    /// Replay speed: 2 sends the trace twice as fast.
    #[arg(long, default_value_t = 1.0)]
    pub trace_speed: f64,
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
    /// KV blocks per mocker (its simulated cache; 16 tokens a block).
    #[arg(long)]
    pub mocker_kv_blocks: Option<u32>,
    /// An argument for the started frontend, verbatim (repeatable), e.g.
    /// `--frontend-arg=--router-kv-overlap-score-credit=0`.
    #[arg(long = "frontend-arg", allow_hyphen_values = true)]
    pub frontend_args: Vec<String>,
    /// The concurrencies to sweep, comma-separated (closed loop: each
    /// client sends its next request when the last one is answered).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8,16,32,64")]
    pub concurrency: Vec<usize>,
    /// Sweep request rates instead, comma-separated requests/s (open loop:
    /// Poisson arrivals, sent however many are in flight).
    #[arg(long, value_delimiter = ',', conflicts_with = "trace")]
    pub rate: Vec<f64>,
    /// What the prompts are.
    #[command(flatten)]
    pub workload: WorkloadFlags,
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
