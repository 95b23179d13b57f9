//! The one way the testbed waits for something it can observe: ask again
//! and again, at a fixed interval, until the answer is there or a deadline
//! passes; the error says what was awaited and the last thing seen.

use std::future::Future;
use std::time::{Duration, Instant};

/// One look at the awaited condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check<T> {
    /// It holds; this is what the wait returns.
    Done(T),
    /// Not yet; what was seen, for the error if it never holds.
    NotYet(String),
}

/// A wait: what for, how long at most, how often to look.
#[derive(Debug, Clone)]
pub struct Poll {
    what: String,
    timeout: Duration,
    every: Duration,
}

impl Poll {
    /// Waits for `what` (said in the error), 10 s at most, looking every
    /// 20 ms.
    pub fn new(what: impl Into<String>) -> Poll {
        Poll {
            what: what.into(),
            timeout: Duration::from_secs(10),
            every: Duration::from_millis(20),
        }
    }

    /// Gives up after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Poll {
        self.timeout = timeout;
        self
    }

    /// Looks every `every`.
    pub fn every(mut self, every: Duration) -> Poll {
        self.every = every;
        self
    }

    /// Calls `check` until it is [`Check::Done`]; an `Err` from `check`
    /// ends the wait at once with that error.
    pub async fn until<T, F, Fut>(self, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Check<T>>>,
    {
        let started = Instant::now();
        loop {
            let last = match check().await? {
                Check::Done(value) => return Ok(value),
                Check::NotYet(seen) => seen,
            };
            if started.elapsed() >= self.timeout {
                anyhow::bail!(
                    "{} did not happen within {:?}; last seen: {last}",
                    self.what,
                    self.timeout
                );
            }
            tokio::time::sleep(self.every).await;
        }
    }

    /// Like [`Poll::until`], returning how long it took as well.
    pub async fn until_timed<T, F, Fut>(self, check: F) -> anyhow::Result<(T, Duration)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<Check<T>>>,
    {
        let started = Instant::now();
        let value = self.until(check).await?;
        Ok((value, started.elapsed()))
    }
}

/// [`Check::Done`] with `()` when `cond`, else [`Check::NotYet`] with
/// `seen` (made only then).
pub fn check(cond: bool, seen: impl FnOnce() -> String) -> Check<()> {
    if cond {
        Check::Done(())
    } else {
        Check::NotYet(seen())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_what_the_check_found() {
        let mut n = 0;
        let got = Poll::new("the third look")
            .every(Duration::from_millis(1))
            .until(|| {
                n += 1;
                let n = n;
                async move {
                    Ok(if n == 3 {
                        Check::Done(n * 10)
                    } else {
                        Check::NotYet(format!("look {n}"))
                    })
                }
            })
            .await
            .unwrap();
        assert_eq!(got, 30);
    }

    #[tokio::test]
    async fn timeout_names_the_wait_and_the_last_state() {
        let err = Poll::new("the sky to fall")
            .timeout(Duration::from_millis(30))
            .every(Duration::from_millis(5))
            .until(|| async { Ok(check(false, || "blue sky".into())) })
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the sky to fall did not happen within 30ms; last seen: blue sky"
        );
    }

    #[tokio::test]
    async fn an_error_ends_the_wait_at_once() {
        let started = Instant::now();
        let err = Poll::new("x")
            .timeout(Duration::from_secs(5))
            .until(|| async { Err::<Check<()>, _>(anyhow::anyhow!("the process died")) })
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "the process died");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
