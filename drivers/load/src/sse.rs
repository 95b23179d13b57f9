//! The one server-sent-events parser: bytes in, complete events out. An
//! event ends at a blank line (`\n\n` or `\r\n\r\n`); its `data:` lines are
//! joined with `\n`. Text is decoded only once an event is complete, so a
//! UTF-8 character split across network reads arrives whole.

/// An incremental parser of one stream.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
}

impl SseParser {
    /// A parser with nothing buffered.
    pub fn new() -> SseParser {
        SseParser::default()
    }

    /// Adds the next bytes of the stream; returns the `data` of every event
    /// they complete, in order (events without data are skipped).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = event_end(&self.buffer) {
            let event: Vec<u8> = self.buffer.drain(..end).collect();
            let data: Vec<&[u8]> = event
                .split(|&b| b == b'\n')
                .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                .filter_map(|line| line.strip_prefix(b"data:"))
                .map(|data| data.strip_prefix(b" ").unwrap_or(data))
                .collect();
            if !data.is_empty() {
                events.push(String::from_utf8_lossy(&data.join(&b'\n')).into_owned());
            }
        }
        events
    }

    /// Whether bytes of an unfinished event are buffered.
    pub fn has_partial(&self) -> bool {
        self.buffer.iter().any(|b| !b.is_ascii_whitespace())
    }
}

/// The end (exclusive, separator included) of the first complete event.
fn event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The events a whole stream gives when fed in pieces of `step` bytes.
    fn parse_in_pieces(stream: &[u8], step: usize) -> Vec<String> {
        let mut parser = SseParser::new();
        stream
            .chunks(step)
            .flat_map(|piece| parser.push(piece))
            .collect()
    }

    #[test]
    fn events_whatever_the_network_reads() {
        let cases: [(&str, &[u8], &[&str]); 6] = [
            ("two events", b"data: a\n\ndata: b\n\n", &["a", "b"]),
            ("crlf", b"data: a\r\n\r\ndata: b\r\n\r\n", &["a", "b"]),
            ("no space after the colon", b"data:[DONE]\n\n", &["[DONE]"]),
            ("multi-line data", b"data: x\ndata: y\n\n", &["x\ny"]),
            (
                "comments and event names skipped",
                b": ping\n\nevent: message_start\ndata: {}\n\n",
                &["{}"],
            ),
            ("unfinished event held back", b"data: a\n\ndata: b", &["a"]),
        ];
        for (name, stream, expected) in cases {
            for step in [1, 2, 3, 7, stream.len()] {
                assert_eq!(
                    parse_in_pieces(stream, step),
                    expected,
                    "case {name}, pieces of {step}"
                );
            }
        }
    }

    #[test]
    fn a_character_split_across_reads_arrives_whole() {
        // "é" is two bytes; "日本" six: every split point must be harmless.
        let stream = "data: {\"content\":\"café 日本\"}\n\n".as_bytes();
        for split in 1..stream.len() {
            let mut parser = SseParser::new();
            let mut events = parser.push(&stream[..split]);
            events.extend(parser.push(&stream[split..]));
            assert_eq!(events, ["{\"content\":\"café 日本\"}"], "split at {split}");
        }
    }
}
