//! Tiers and what each needs from the machine before any of its tests can
//! run.

use std::fmt;

use crate::capability::Need;
use crate::flags::TierArg;

/// One tier: a nextest profile and a test binary of the same name. The
/// doc comments are `--tier`'s help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Tier {
    /// No external process.
    Unit,
    /// Real NATS and etcd.
    Integration,
    /// Real Dynamo (frontend, router, mocker workers) on CPU.
    E2e,
    /// Kills, stalls, restarts and cancellations under load.
    Fault,
    /// The real vLLM engine (CPU build) behind Dynamo.
    Backend,
    /// Real GPU backends; skipped with reasons where absent.
    Gpu,
    /// A short smoke of the benchmark path.
    Bench,
}

impl Tier {
    /// What `--tier all` runs, in order: every CPU tier.
    pub const ALL_CPU: [Tier; 6] = [
        Tier::Unit,
        Tier::Integration,
        Tier::E2e,
        Tier::Fault,
        Tier::Backend,
        Tier::Bench,
    ];

    /// The tiers a `--tier` value names.
    pub fn expand(arg: TierArg) -> Vec<Tier> {
        match arg {
            TierArg::One(tier) => vec![tier],
            TierArg::All => Tier::ALL_CPU.to_vec(),
        }
    }

    /// The nextest profile (and test binary) name.
    pub fn profile(self) -> &'static str {
        match self {
            Tier::Unit => "unit",
            Tier::Integration => "integration",
            Tier::E2e => "e2e",
            Tier::Fault => "fault",
            Tier::Backend => "backend",
            Tier::Gpu => "gpu",
            Tier::Bench => "bench",
        }
    }

    /// What must be provisioned before the tier runs at all; `setup`
    /// provides each of these.
    pub fn needs(self) -> &'static [Need] {
        match self {
            Tier::Unit | Tier::Gpu => &[],
            Tier::Integration => &[Need::NatsServer, Need::Etcd],
            Tier::E2e | Tier::Fault | Tier::Bench => {
                &[Need::NatsServer, Need::Etcd, Need::DynamoEnv]
            }
            Tier::Backend => &[Need::NatsServer, Need::Etcd, Need::DynamoEnv],
        }
    }

    /// Whether the run starts a shared NATS and etcd for the tier's tests.
    pub fn shares_services(self) -> bool {
        !matches!(self, Tier::Unit | Tier::Gpu)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.profile())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_every_cpu_tier_in_order() {
        let names: Vec<&str> = Tier::expand(TierArg::All)
            .iter()
            .map(|t| t.profile())
            .collect();
        assert_eq!(
            names,
            ["unit", "integration", "e2e", "fault", "backend", "bench"]
        );
    }

    #[test]
    fn every_tier_has_a_nextest_profile() {
        let config = std::fs::read_to_string(
            testbed_harness::Layout::from_env()
                .repo_root
                .join(".config/nextest.toml"),
        )
        .unwrap();
        for tier in [
            Tier::Unit,
            Tier::Integration,
            Tier::E2e,
            Tier::Fault,
            Tier::Backend,
            Tier::Gpu,
            Tier::Bench,
        ] {
            assert!(
                config.contains(&format!("[profile.{}]", tier.profile())),
                "no profile for {tier}"
            );
        }
    }
}
