//! Multi-turn sessions: conversations whose every turn is sent with the
//! earlier turns and the answers they got, so that a session's prompt
//! grows turn by turn and shares its history with the session's earlier
//! requests (what KV routing and prefix caching are for in chat).

use crate::prompts::{exact_prompt, TokenCounter};
use crate::workload::Job;

/// The shape of a sessions workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sessions {
    /// Conversations.
    pub sessions: usize,
    /// User turns per conversation.
    pub turns: usize,
    /// Tokens of each user message.
    pub tokens_per_turn: usize,
    /// The seed of the messages.
    pub seed: u64,
}

impl Sessions {
    /// One job per session.
    pub fn jobs(&self, counter: &dyn TokenCounter) -> anyhow::Result<Vec<Job>> {
        anyhow::ensure!(self.turns > 0, "a session needs at least one turn");
        (0..self.sessions)
            .map(|s| {
                let turns = (0..self.turns)
                    .map(|t| {
                        let seed = self.seed.wrapping_add((s * self.turns + t) as u64);
                        exact_prompt(counter, self.tokens_per_turn, seed)
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                Ok(Job::conversation(turns))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompts::CountWith;

    #[test]
    fn each_session_has_its_turns_and_a_turn_carries_its_history() {
        let counter = CountWith(|s: &str| s.split_whitespace().count());
        let shape = Sessions {
            sessions: 3,
            turns: 4,
            tokens_per_turn: 6,
            seed: 1,
        };
        let jobs = shape.jobs(&counter).unwrap();
        assert_eq!(jobs.len(), 3);
        assert!(jobs.iter().all(|j| j.turns.len() == 4));
        assert_ne!(jobs[0].turns[0], jobs[1].turns[0], "sessions differ");
        let third = jobs[0].up_to(2, &["a1".to_owned(), "a2".to_owned()]);
        assert_eq!(
            third.turns,
            [
                jobs[0].turns[0].clone(),
                "a1".to_owned(),
                jobs[0].turns[1].clone(),
                "a2".to_owned(),
                jobs[0].turns[2].clone()
            ]
        );
    }
}
