//! Prompts that share prefixes in groups, as Dynamo's router benchmarks
//! use: each group has one prefix of `prefix_tokens`; each request is its
//! group's prefix plus a suffix of its own. Which group a request belongs
//! to is drawn at random (seeded), so that no router can win by the order
//! alone (a strict rotation over an even number of groups would otherwise
//! send each group to one worker of two).

use crate::prompts::{exact_prompt, TokenCounter};
use crate::rng::Rng;
use crate::workload::Job;

/// The shape of a shared-prefix workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharedPrefix {
    /// Prefix groups.
    pub groups: usize,
    /// Tokens of each group's prefix.
    pub prefix_tokens: usize,
    /// Tokens of each request's own suffix.
    pub suffix_tokens: usize,
    /// Requests.
    pub requests: usize,
    /// The seed of the prefixes, suffixes and group draws.
    pub seed: u64,
}

impl SharedPrefix {
    /// The share of a request's tokens that its group shares.
    pub fn prefix_ratio(&self) -> f64 {
        self.prefix_tokens as f64 / (self.prefix_tokens + self.suffix_tokens).max(1) as f64
    }

    /// The jobs, with the group of each.
    pub fn jobs(&self, counter: &dyn TokenCounter) -> anyhow::Result<Vec<(usize, Job)>> {
        anyhow::ensure!(
            self.groups > 0,
            "a shared-prefix workload needs at least one group"
        );
        let prefixes = (0..self.groups)
            .map(|g| {
                exact_prompt(
                    counter,
                    self.prefix_tokens,
                    self.seed ^ (0x5eed << 20) ^ g as u64,
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut rng = Rng::new(self.seed);
        (0..self.requests)
            .map(|i| {
                let group = rng.below(self.groups);
                let suffix = exact_prompt(
                    counter,
                    self.suffix_tokens,
                    self.seed.wrapping_add(1 + i as u64),
                )?;
                Ok((group, Job::prompt(format!("{}\n{suffix}", prefixes[group]))))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompts::CountWith;

    fn words() -> CountWith<impl Fn(&str) -> usize> {
        CountWith(|s: &str| s.split_whitespace().count())
    }

    #[test]
    fn requests_of_a_group_share_its_prefix_and_groups_are_mixed() {
        let shape = SharedPrefix {
            groups: 4,
            prefix_tokens: 30,
            suffix_tokens: 5,
            requests: 200,
            seed: 3,
        };
        let jobs = shape.jobs(&words()).unwrap();
        assert_eq!(jobs.len(), 200);
        let prefix_of = |job: &Job| job.turns[0].split('\n').next().unwrap().to_owned();
        for (group, job) in &jobs {
            let same: Vec<&Job> = jobs
                .iter()
                .filter(|(g, _)| g == group)
                .map(|(_, j)| j)
                .collect();
            assert!(
                same.iter().all(|j| prefix_of(j) == prefix_of(job)),
                "group {group} shares one prefix"
            );
            assert_eq!(
                job.turns[0].split_whitespace().count(),
                35,
                "prefix + suffix tokens"
            );
        }
        let distinct: std::collections::HashSet<String> =
            jobs.iter().map(|(_, j)| prefix_of(j)).collect();
        assert_eq!(distinct.len(), 4, "one prefix per group");
        // Not a rotation: some request is in the same group as the one before.
        assert!(jobs.windows(2).any(|w| w[0].0 == w[1].0));
        for g in 0..4 {
            let n = jobs.iter().filter(|(x, _)| *x == g).count();
            assert!((30..=70).contains(&n), "group {g} has {n} of 200");
        }
        assert!((shape.prefix_ratio() - 30.0 / 35.0).abs() < 1e-9);
        assert_eq!(
            shape.jobs(&words()).unwrap(),
            jobs,
            "the same for the same seed"
        );
    }

    #[test]
    fn no_group_is_refused() {
        let shape = SharedPrefix {
            groups: 0,
            prefix_tokens: 1,
            suffix_tokens: 1,
            requests: 1,
            seed: 0,
        };
        assert_eq!(
            shape.jobs(&words()).unwrap_err().to_string(),
            "a shared-prefix workload needs at least one group"
        );
    }
}
