//! Trace replay in the Mooncake format (one JSON object per line:
//! `timestamp` in ms, `input_length` and `output_length` in tokens, and
//! `hash_ids`, the ids of the prompt's blocks: two requests that share a
//! leading run of ids share that prefix). Each id becomes a fixed text of
//! `block_tokens` tokens, so a replay has the trace's arrivals, lengths and
//! prefix sharing with the testbed's tokenizer. Mooncake's blocks are 512
//! tokens; a smaller `block_tokens` scales a trace down to a tiny model's
//! context.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

use crate::prompts::{exact_prompt, TokenCounter};
use crate::workload::Job;

/// One request of a trace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TraceEntry {
    /// Arrival, in milliseconds from the trace's start.
    pub timestamp: u64,
    /// Prompt tokens.
    pub input_length: usize,
    /// Answer tokens.
    pub output_length: u32,
    /// The ids of the prompt's blocks, in order.
    pub hash_ids: Vec<u64>,
}

/// The entries of a Mooncake JSONL trace; blank lines are skipped.
pub fn parse(text: &str) -> anyhow::Result<Vec<TraceEntry>> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| {
                anyhow::anyhow!(
                    "trace line {}: {e}; each line is a JSON object like {{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 20, \"hash_ids\": [0, 1]}}",
                    i + 1
                )
            })
        })
        .collect()
}

/// The block size of Mooncake's traces, in tokens.
pub const MOONCAKE_BLOCK_TOKENS: usize = 512;

/// How a trace is replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Replay {
    /// The trace's own tokens per hash id ([`MOONCAKE_BLOCK_TOKENS`]).
    pub trace_block_tokens: usize,
    /// Tokens per hash id in the replay: lengths scale by
    /// `block_tokens / trace_block_tokens` (rounded up).
    pub block_tokens: usize,
    /// Time compression: 2 replays twice as fast.
    pub speed: f64,
}

impl Replay {
    /// One open-loop job per entry: arrival `timestamp / speed`, the
    /// prompt made of its blocks' texts cut to its scaled `input_length`
    /// (the last block is partial when the length says so),
    /// `output_length` answer tokens.
    pub fn jobs(
        &self,
        entries: &[TraceEntry],
        counter: &dyn TokenCounter,
    ) -> anyhow::Result<Vec<Job>> {
        anyhow::ensure!(
            self.block_tokens > 0 && self.trace_block_tokens > 0,
            "--trace-block-tokens must be positive"
        );
        anyhow::ensure!(
            self.speed.is_finite() && self.speed > 0.0,
            "--trace-speed must be a positive number, got {}",
            self.speed
        );
        let mut blocks: HashMap<u64, String> = HashMap::new();
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let input = (e.input_length * self.block_tokens).div_ceil(self.trace_block_tokens);
                let full = input / self.block_tokens;
                let rest = input % self.block_tokens;
                let needed = full + usize::from(rest > 0);
                anyhow::ensure!(
                    e.hash_ids.len() >= needed,
                    "trace entry {}: {} input tokens need {needed} blocks of {}, but it names {} hash ids",
                    i + 1,
                    e.input_length,
                    self.trace_block_tokens,
                    e.hash_ids.len()
                );
                let mut parts = Vec::with_capacity(needed);
                for id in &e.hash_ids[..full] {
                    if !blocks.contains_key(id) {
                        blocks.insert(*id, exact_prompt(counter, self.block_tokens, block_seed(*id))?);
                    }
                    parts.push(blocks[id].clone());
                }
                if rest > 0 {
                    // Only whole blocks are cached and shared; a partial one
                    // is the request's own.
                    parts.push(exact_prompt(counter, rest, block_seed(e.hash_ids[full]) ^ rest as u64)?);
                }
                Ok(Job {
                    turns: vec![parts.join("\n")],
                    output_tokens: Some(e.output_length),
                    at: Some(Duration::from_secs_f64(e.timestamp as f64 / 1e3 / self.speed)),
                })
            })
            .collect()
    }
}

fn block_seed(id: u64) -> u64 {
    0x6d6f_6f6e ^ id.wrapping_mul(0x9e37_79b9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompts::CountWith;

    const TRACE: &str = r#"{"timestamp": 0, "input_length": 10, "output_length": 3, "hash_ids": [7, 8, 9]}

{"timestamp": 500, "input_length": 8, "output_length": 5, "hash_ids": [7, 8]}
{"timestamp": 1000, "input_length": 4, "output_length": 2, "hash_ids": [1]}
"#;

    fn words() -> CountWith<impl Fn(&str) -> usize> {
        CountWith(|s: &str| s.split_whitespace().count())
    }

    /// The trace's jobs, its blocks of 4 tokens replayed as blocks of
    /// `block_tokens`, `speed` times faster.
    fn replayed(entries: &[TraceEntry], block_tokens: usize, speed: f64) -> Vec<Job> {
        let replay = Replay {
            trace_block_tokens: 4,
            block_tokens,
            speed,
        };
        replay.jobs(entries, &words()).unwrap()
    }

    #[test]
    fn entries_become_jobs_that_share_their_common_blocks() {
        let entries = parse(TRACE).unwrap();
        assert_eq!(entries.len(), 3);
        let jobs = replayed(&entries, 4, 2.0);
        let text = |i: usize| jobs[i].turns[0].clone();
        assert_eq!(text(0).split_whitespace().count(), 10);
        assert_eq!(text(1).split_whitespace().count(), 8);
        let blocks = |i: usize| text(i).split('\n').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            blocks(0)[..2],
            blocks(1)[..2],
            "ids 7 and 8 are the same text"
        );
        assert_ne!(blocks(2)[0], blocks(0)[0], "id 1 is another text");
        assert_eq!(
            jobs[1].at,
            Some(Duration::from_millis(250)),
            "500 ms at speed 2"
        );
        assert_eq!(jobs[1].output_tokens, Some(5));
        // Blocks of 4 replayed as blocks of 2: every length halves.
        let halved = replayed(&entries, 2, 1.0);
        let counts: Vec<usize> = halved
            .iter()
            .map(|j| j.turns[0].split_whitespace().count())
            .collect();
        assert_eq!(counts, [5, 4, 2]);
    }

    #[test]
    fn malformed_traces_name_the_line_and_the_form() {
        let err = parse("{\"timestamp\": 0}\n").unwrap_err().to_string();
        assert!(
            err.starts_with("trace line 1: missing field `input_length`"),
            "{err}"
        );
        assert!(err.contains("each line is a JSON object like"), "{err}");
        let short =
            parse(r#"{"timestamp": 0, "input_length": 9, "output_length": 1, "hash_ids": [1]}"#)
                .unwrap();
        let err = Replay {
            trace_block_tokens: 4,
            block_tokens: 4,
            speed: 1.0,
        }
        .jobs(&short, &words())
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "trace entry 1: 9 input tokens need 3 blocks of 4, but it names 1 hash ids"
        );
    }
}
