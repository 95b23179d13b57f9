//! The identity of one run, shared by every process it starts, so that the
//! reaper can find everything a run left behind.

use std::fmt;

/// One run's identity: `cargo xtask test` sets `TESTBED_RUN_ID`; a plain
/// `cargo nextest run` gives its own `NEXTEST_RUN_ID`; anything else gets an
/// ad-hoc id from its pid and start time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RunId(String);

impl RunId {
    /// The run id of this process, from the environment.
    pub fn current() -> RunId {
        for var in ["TESTBED_RUN_ID", "NEXTEST_RUN_ID"] {
            if let Ok(id) = std::env::var(var) {
                if let Ok(id) = RunId::parse(&id) {
                    return id;
                }
            }
        }
        RunId::fresh("adhoc")
    }

    /// A new id: `<prefix>-<utc seconds>-<pid>`, sortable by start time.
    pub fn fresh(prefix: &str) -> RunId {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        RunId(format!("{prefix}-{secs}-{}", std::process::id()))
    }

    /// Accepts ids made of ASCII letters, digits, `-` and `_` (they name
    /// folders), 1 to 64 characters.
    pub fn parse(id: &str) -> Result<RunId, String> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(RunId(id.to_owned()))
        } else {
            Err(format!(
                "invalid run id {id:?}: expected 1 to 64 of ASCII letters, digits, '-' and '_'"
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cases() {
        let cases: &[(&str, &str, Result<(), &str>)] = &[
            ("nextest uuid", "3f2a9c1e-0b6d-4e7a-9a55-0c7e1d2b3a4f", Ok(())),
            ("xtask id", "xtask-1764070000-4242", Ok(())),
            ("empty", "", Err("invalid run id \"\": expected 1 to 64 of ASCII letters, digits, '-' and '_'")),
            ("slash", "a/b", Err("invalid run id \"a/b\": expected 1 to 64 of ASCII letters, digits, '-' and '_'")),
        ];
        for (name, input, expected) in cases {
            let got = RunId::parse(input).map(|_| ());
            assert_eq!(got, expected.map_err(|e| e.to_owned()), "case {name}");
        }
    }

    #[test]
    fn fresh_ids_parse() {
        let id = RunId::fresh("xtask");
        assert_eq!(RunId::parse(id.as_str()), Ok(id));
    }
}
