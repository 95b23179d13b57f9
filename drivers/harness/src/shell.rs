//! Command lines as a person would type them: for logs, error messages and
//! the scripts the testbed writes.

/// `s` quoted for a POSIX shell when it needs it.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The words joined into one command line, each quoted when it needs it.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words
        .into_iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_cases() {
        let cases = [
            ("plain", "nats-server", "nats-server"),
            ("url", "http://127.0.0.1:2379", "http://127.0.0.1:2379"),
            ("empty", "", "''"),
            ("space", "a b", "'a b'"),
            ("quote", "it's", "'it'\\''s'"),
            ("json", "{\"a\":1}", "'{\"a\":1}'"),
        ];
        for (name, input, expected) in cases {
            assert_eq!(quote(input), expected, "case {name}");
        }
        assert_eq!(join(["sh", "-c", "echo hi"]), "sh -c 'echo hi'");
    }
}
