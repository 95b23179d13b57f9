//! `--partition`: which share of a tier this run takes, in nextest's own
//! terms (`hash:K/N` or `count:K/N`), so that N machines each running one
//! share run the whole tier once; `cargo xtask report merge` puts the
//! shares' results back together.

use std::fmt;
use std::str::FromStr;

/// How tests are dealt to shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// By a hash of the test's name: a test stays in its share when others
    /// are added or removed.
    Hash,
    /// Round-robin over the listed tests: even shares, but a new test
    /// moves others.
    Count,
}

/// Share `index` of `total` (both from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// How tests are dealt.
    pub scheme: Scheme,
    /// This share, 1 ≤ index ≤ total.
    pub index: u32,
    /// How many shares.
    pub total: u32,
}

/// The accepted forms, for errors.
const FORMS: &str = "the accepted forms are hash:K/N and count:K/N with 1 ≤ K ≤ N (e.g. hash:1/2)";

impl FromStr for Partition {
    type Err = String;

    fn from_str(s: &str) -> Result<Partition, String> {
        let bad = |why: &str| format!("invalid partition {s:?}: {why}; {FORMS}");
        let (scheme, share) = s.split_once(':').ok_or_else(|| bad("no scheme"))?;
        let scheme = match scheme {
            "hash" => Scheme::Hash,
            "count" => Scheme::Count,
            other => return Err(bad(&format!("unknown scheme {other:?}"))),
        };
        let (index, total) = share.split_once('/').ok_or_else(|| bad("no K/N"))?;
        let number = |n: &str| {
            n.parse::<u32>()
                .map_err(|_| bad(&format!("{n:?} is not a number")))
        };
        let (index, total) = (number(index)?, number(total)?);
        if index == 0 || index > total {
            return Err(bad("K must be between 1 and N"));
        }
        Ok(Partition {
            scheme,
            index,
            total,
        })
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Hash => "hash",
            Scheme::Count => "count",
        };
        write!(f, "{scheme}:{}/{}", self.index, self.total)
    }
}

impl Partition {
    /// nextest's arguments for this share.
    pub fn nextest_args(&self) -> [String; 2] {
        ["--partition".to_owned(), self.to_string()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case's expectation: the share, or the start of the error.
    type Expected = Result<(Scheme, u32, u32), &'static str>;

    #[test]
    fn parse_cases() {
        let cases: &[(&str, &str, Expected)] = &[
            ("hash share", "hash:1/2", Ok((Scheme::Hash, 1, 2))),
            ("count share", "count:3/3", Ok((Scheme::Count, 3, 3))),
            (
                "no scheme",
                "1/2",
                Err("invalid partition \"1/2\": no scheme; the accepted forms are hash:K/N and count:K/N with 1 ≤ K ≤ N (e.g. hash:1/2)"),
            ),
            (
                "unknown scheme",
                "slice:1/2",
                Err("invalid partition \"slice:1/2\": unknown scheme \"slice\";"),
            ),
            ("no total", "hash:1", Err("invalid partition \"hash:1\": no K/N;")),
            (
                "not a number",
                "hash:one/2",
                Err("invalid partition \"hash:one/2\": \"one\" is not a number;"),
            ),
            (
                "share zero",
                "hash:0/2",
                Err("invalid partition \"hash:0/2\": K must be between 1 and N;"),
            ),
            (
                "share past the total",
                "count:3/2",
                Err("invalid partition \"count:3/2\": K must be between 1 and N;"),
            ),
        ];
        for (name, text, expected) in cases {
            match (text.parse::<Partition>(), expected) {
                (Ok(p), Ok((scheme, index, total))) => {
                    assert_eq!(
                        (p.scheme, p.index, p.total),
                        (*scheme, *index, *total),
                        "{name}"
                    );
                    assert_eq!(p.to_string(), *text, "{name}: it prints as written");
                }
                (Err(e), Err(start)) => assert!(e.starts_with(start), "{name}: {e}"),
                (got, _) => panic!("{name}: got {got:?}"),
            }
        }
    }
}
