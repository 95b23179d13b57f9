//! What a load sends: jobs (a prompt, or a conversation's turns), each
//! with its output length and, for open-loop loads, its arrival time.
//! Workloads make them: distinct prompts of an exact length, prompts that
//! share prefixes in groups (as Dynamo's router benchmarks use), a
//! Mooncake trace replayed, multi-turn sessions; arrivals can follow a
//! Poisson process at a request rate.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::prompts::PromptSet;

/// One unit of work: a single request, or a conversation whose turns are
/// sent in order, each with the earlier turns and answers as history.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The user messages, one per turn.
    pub turns: Vec<String>,
    /// Output tokens per request; the spec's when `None`.
    pub output_tokens: Option<u32>,
    /// When to send it, after the load starts (open-loop dispatch only).
    pub at: Option<Duration>,
}

impl Job {
    /// A single request with `prompt`.
    pub fn prompt(prompt: impl Into<String>) -> Job {
        Job {
            turns: vec![prompt.into()],
            output_tokens: None,
            at: None,
        }
    }

    /// A conversation of `turns`.
    pub fn conversation(turns: Vec<String>) -> Job {
        Job {
            turns,
            output_tokens: None,
            at: None,
        }
    }

    /// The request of turn `turn`: every earlier turn with its answer from
    /// `answers`, then turn `turn` (a job of one turn, whose messages are
    /// the chat body's).
    pub fn up_to(&self, turn: usize, answers: &[String]) -> Job {
        let mut history = Vec::new();
        for (i, user) in self.turns.iter().take(turn + 1).enumerate() {
            history.push(user.clone());
            if i < turn {
                history.push(answers.get(i).cloned().unwrap_or_default());
            }
        }
        Job {
            turns: history,
            ..self.clone()
        }
    }

    /// The chat messages: turns alternate user / assistant (a job made by
    /// [`Job::up_to`] ends with the user's turn).
    pub fn messages(&self) -> Value {
        let messages: Vec<Value> = self
            .turns
            .iter()
            .enumerate()
            .map(|(i, content)| {
                let role = if i % 2 == 0 { "user" } else { "assistant" };
                json!({"role": role, "content": content})
            })
            .collect();
        Value::Array(messages)
    }

    /// The completion prompt: the turns run together.
    pub fn prompt_text(&self) -> String {
        self.turns.concat()
    }
}

/// A source of jobs.
#[derive(Debug, Clone)]
pub enum Workload {
    /// Each job one prompt of the set, in order (cycling).
    Prompts(Arc<PromptSet>),
    /// Jobs made up front (shared-prefix groups, traces, sessions).
    Jobs(Arc<Vec<Job>>),
}

impl Workload {
    /// `n` jobs from position `offset` on.
    pub fn jobs(&self, offset: usize, n: usize) -> Vec<Job> {
        match self {
            Workload::Prompts(set) => (offset..offset + n)
                .map(|i| Job::prompt(set.get(i)))
                .collect(),
            Workload::Jobs(jobs) => (offset..offset + n)
                .map(|i| jobs[i % jobs.len()].clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_carries_its_history() {
        let job = Job::conversation(vec!["one".into(), "two".into(), "three".into()]);
        let answers = ["ONE".to_owned(), "TWO".to_owned()];
        assert_eq!(job.up_to(0, &answers).turns, ["one"]);
        assert_eq!(
            job.up_to(2, &answers).turns,
            ["one", "ONE", "two", "TWO", "three"]
        );
        assert_eq!(job.up_to(1, &answers).prompt_text(), "oneONEtwo");
    }

    #[test]
    fn prompt_workloads_cycle_from_the_offset() {
        let set = Arc::new(PromptSet {
            tokens: 1,
            prompts: vec!["a".into(), "b".into(), "c".into()],
        });
        let jobs = Workload::Prompts(set).jobs(2, 3);
        let firsts: Vec<&str> = jobs.iter().map(|j| j.turns[0].as_str()).collect();
        assert_eq!(firsts, ["c", "a", "b"]);
    }
}
