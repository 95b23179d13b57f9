//! The tiers, declared once: each is a nextest profile and a test binary
//! of the same name (`Tier::name`), says whether `--tier all` runs it and
//! what must be provisioned before any of its tests can run. Everything
//! else (`--tier`'s values, `all`, the profile names) is derived, and the
//! tidy tests check the files that name tiers (`.config/nextest.toml`,
//! `tests/Cargo.toml`, README.md) against this list.

use std::fmt;

use clap::ValueEnum;

use crate::capability::Need;

/// One tier. The doc comments are `--tier`'s help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
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
    /// Every tier, in the order `--tier all` runs them.
    pub fn all() -> &'static [Tier] {
        Tier::value_variants()
    }

    /// The nextest profile, test binary and folder name.
    pub fn name(self) -> &'static str {
        // clap derives the names (kebab-case of the variants); each is
        // made 'static once.
        static NAMES: std::sync::OnceLock<Vec<(Tier, &'static str)>> = std::sync::OnceLock::new();
        NAMES
            .get_or_init(|| {
                Tier::value_variants()
                    .iter()
                    .map(|t| {
                        let value = t.to_possible_value().expect("every tier has a name");
                        let name: &'static str = value.get_name().to_owned().leak();
                        (*t, name)
                    })
                    .collect()
            })
            .iter()
            .find(|(t, _)| *t == self)
            .map(|(_, n)| *n)
            .expect("every tier is listed")
    }

    /// Whether `--tier all` (the README's test command, CI) runs it: every
    /// tier a CPU machine can run.
    pub fn in_all(self) -> bool {
        self != Tier::Gpu
    }

    /// What must be provisioned before the tier runs at all.
    pub fn needs(self) -> Vec<Need> {
        let dynamo = || Need::Env("dynamo".into());
        match self {
            Tier::Unit | Tier::Gpu => vec![],
            Tier::Integration => vec![Need::NatsServer, Need::Etcd],
            Tier::E2e | Tier::Fault | Tier::Backend | Tier::Bench => {
                vec![Need::NatsServer, Need::Etcd, dynamo()]
            }
        }
    }

    /// Whether its tests share the run's NATS and etcd.
    pub fn shares_services(self) -> bool {
        !matches!(self, Tier::Unit | Tier::Gpu)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `--tier` names: one tier, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierArg {
    /// One tier.
    One(Tier),
    /// Every CPU tier in order, stopping at the first failing one.
    All,
}

impl TierArg {
    /// The tiers it names, in order.
    pub fn tiers(self) -> Vec<Tier> {
        match self {
            TierArg::One(tier) => vec![tier],
            TierArg::All => Tier::all().iter().copied().filter(|t| t.in_all()).collect(),
        }
    }
}

impl ValueEnum for TierArg {
    fn value_variants<'a>() -> &'a [Self] {
        static ALL: std::sync::OnceLock<Vec<TierArg>> = std::sync::OnceLock::new();
        ALL.get_or_init(|| {
            Tier::all()
                .iter()
                .map(|t| TierArg::One(*t))
                .chain([TierArg::All])
                .collect()
        })
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            TierArg::One(tier) => tier.to_possible_value(),
            TierArg::All => {
                let names: Vec<&str> = TierArg::All.tiers().iter().map(|t| t.name()).collect();
                Some(clap::builder::PossibleValue::new("all").help(format!(
                    "{}, stopping at the first failing tier",
                    names.join(" → ")
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_every_cpu_tier_in_order() {
        let names: Vec<&str> = TierArg::All.tiers().iter().map(|t| t.name()).collect();
        assert_eq!(
            names,
            ["unit", "integration", "e2e", "fault", "backend", "bench"]
        );
    }
}
