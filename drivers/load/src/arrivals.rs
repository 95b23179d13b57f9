//! Open-loop arrival times: a Poisson process at a request rate, as
//! aiperf's `--request-rate` and Dynamo's router benchmarks send. Arrivals
//! do not wait for answers, so a slow server builds a queue instead of
//! slowing the client down (what a closed loop hides).

use std::time::Duration;

use crate::rng::Rng;

/// `n` arrival times (from the load's start) of a Poisson process of
/// `rate_per_s` requests per second: exponential gaps of mean `1/rate`,
/// the same for the same seed.
pub fn poisson(rate_per_s: f64, n: usize, seed: u64) -> anyhow::Result<Vec<Duration>> {
    anyhow::ensure!(
        rate_per_s.is_finite() && rate_per_s > 0.0,
        "a request rate must be a positive number of requests per second, got {rate_per_s}"
    );
    let mut rng = Rng::new(seed);
    let mut at = 0.0f64;
    Ok((0..n)
        .map(|_| {
            at += -rng.unit().ln() / rate_per_s;
            Duration::from_secs_f64(at)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_average_one_over_the_rate_and_repeat_per_seed() {
        let times = poisson(200.0, 20_000, 7).unwrap();
        let mean_gap = times.last().unwrap().as_secs_f64() / times.len() as f64;
        assert!((mean_gap - 0.005).abs() < 0.0002, "mean gap {mean_gap}");
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "arrivals are ordered"
        );
        // Exponential gaps: about 1/e of them exceed the mean.
        let long = times
            .windows(2)
            .filter(|w| (w[1] - w[0]).as_secs_f64() > 0.005)
            .count();
        let share = long as f64 / (times.len() - 1) as f64;
        assert!(
            (share - (-1.0f64).exp()).abs() < 0.02,
            "share of long gaps {share}"
        );
        assert_eq!(poisson(200.0, 50, 7).unwrap(), times[..50]);
        assert_ne!(poisson(200.0, 50, 8).unwrap(), times[..50]);
    }

    #[test]
    fn rates_that_are_not_positive_are_refused() {
        for (rate, text) in [(0.0, "got 0"), (-1.0, "got -1"), (f64::NAN, "got NaN")] {
            let err = poisson(rate, 1, 0).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("a request rate must be a positive number of requests per second, {text}")
            );
        }
    }
}
