//! `cargo xtask`'s exit codes: distinct, so that a script (or CI) can tell
//! a failing test from a missing prerequisite.

/// What a command's exit code says. (`Usage` is clap's, `Regression` and
/// `RequestsFailed` testbed-runner's, which `up` and `bench` become: listed
/// here so that `--help` documents every code.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub enum Exit {
    /// Everything asked for passed.
    Success = 0,
    /// Tests failed (or processes leaked).
    TestsFailed = 1,
    /// The command line was wrong (clap's own code).
    Usage = 2,
    /// A prerequisite is missing and could not be provisioned.
    Missing = 3,
    /// `bench compare` found a regression.
    Regression = 4,
    /// A bench run had failed requests.
    RequestsFailed = 5,
    /// `--coverage-gate`: a component's coverage fell below its baseline.
    CoverageBelowBaseline = 6,
    /// Stopped by Ctrl-C or a termination signal.
    Interrupted = 130,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// The table `--help` ends with.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    everything asked for passed
  1    tests failed (or a test leaked processes)
  2    usage error
  3    a prerequisite is missing and could not be provisioned (see `cargo xtask doctor`)
  4    `bench compare` found a regression
  5    a bench run had failed requests
  6    `test --coverage-gate`: a Dynamo component's coverage is below its baseline
  130  interrupted (Ctrl-C)";

/// An error that carries its exit code.
#[derive(Debug)]
pub struct ExitError {
    /// The code.
    pub exit: Exit,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl std::fmt::Display for ExitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for ExitError {}

/// `error` as a missing prerequisite (exit 3).
pub fn missing(error: anyhow::Error) -> anyhow::Error {
    ExitError {
        exit: Exit::Missing,
        error,
    }
    .into()
}

/// `error` as a usage error (exit 2).
pub fn usage(error: anyhow::Error) -> anyhow::Error {
    ExitError {
        exit: Exit::Usage,
        error,
    }
    .into()
}

/// The exit code an error calls for: its own, else 1.
pub fn code_of(error: &anyhow::Error) -> i32 {
    error
        .downcast_ref::<ExitError>()
        .map_or(Exit::TestsFailed.code(), |e| e.exit.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let all = [
            Exit::Success,
            Exit::TestsFailed,
            Exit::Usage,
            Exit::Missing,
            Exit::Regression,
            Exit::RequestsFailed,
            Exit::Interrupted,
        ];
        let mut codes: Vec<i32> = all.iter().map(|e| e.code()).collect();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        for code in codes {
            assert!(
                EXIT_CODES_HELP.contains(&format!("\n  {code} ")),
                "{code} is in the help"
            );
        }
        let e = missing(anyhow::anyhow!("no etcd"));
        assert_eq!((code_of(&e), e.to_string()), (3, "no etcd".to_owned()));
        assert_eq!(code_of(&anyhow::anyhow!("other")), 1);
    }
}
