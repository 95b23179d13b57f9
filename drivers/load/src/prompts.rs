//! The one prompt generator: made-up words from a seed ([`words`]), and
//! prompts of an exact input token count as the caller's tokenizer counts
//! them ([`exact_prompt`]): words cut by binary search and padded one letter
//! at a time until the count is exact. Deterministic per seed, distinct per
//! seed, so that prefix caches see no shared prefix beyond chance.

use crate::rng::Rng;

/// Counts the tokens of a text (no special tokens added).
pub trait TokenCounter {
    /// The number of tokens of `text`.
    fn count(&self, text: &str) -> anyhow::Result<usize>;
}

impl TokenCounter for tokenizers::Tokenizer {
    fn count(&self, text: &str) -> anyhow::Result<usize> {
        Ok(self
            .encode(text, false)
            .map_err(|e| anyhow::anyhow!("tokenize: {e}"))?
            .len())
    }
}

/// A [`TokenCounter`] from a closure (for tests and other tokenizers).
pub struct CountWith<F>(pub F);

impl<F: Fn(&str) -> usize> TokenCounter for CountWith<F> {
    fn count(&self, text: &str) -> anyhow::Result<usize> {
        Ok((self.0)(text))
    }
}

/// A set of prompts of one exact token count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSet {
    /// The token count of every prompt.
    pub tokens: usize,
    /// The prompts.
    pub prompts: Vec<String>,
}

impl PromptSet {
    /// `count` distinct prompts of exactly `tokens` tokens each, the
    /// `i`-th made from seed `seed + i`.
    pub fn generate(
        counter: &dyn TokenCounter,
        tokens: usize,
        count: usize,
        seed: u64,
    ) -> anyhow::Result<PromptSet> {
        let prompts = (0..count as u64)
            .map(|i| exact_prompt(counter, tokens, seed.wrapping_add(i)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(PromptSet { tokens, prompts })
    }

    /// The `i`-th prompt, cycling.
    pub fn get(&self, i: usize) -> &str {
        &self.prompts[i % self.prompts.len()]
    }
}

/// A made-up word of 2 to 4 syllables.
fn word(rng: &mut Rng) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "we", "zu", "pe", "do", "bri", "sto",
        "gla", "fen",
    ];
    let mut w = String::new();
    for _ in 0..(2 + rng.next() % 3) {
        w.push_str(SYLLABLES[(rng.next() % SYLLABLES.len() as u64) as usize]);
    }
    w
}

/// `n` made-up words from `seed`, separated by spaces.
pub fn words(seed: u64, n: usize) -> String {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| word(&mut rng)).collect::<Vec<_>>().join(" ")
}

/// One prompt of exactly `target` tokens.
pub fn exact_prompt(
    counter: &dyn TokenCounter,
    target: usize,
    seed: u64,
) -> anyhow::Result<String> {
    if target == 0 {
        return Ok(String::new());
    }
    for attempt in 0..16u64 {
        let mut rng = Rng::new(seed.wrapping_add(attempt.wrapping_mul(0x1000_0000)));
        // Enough words to exceed the target (a word is at least one token).
        let pool: Vec<String> = (0..target + 1).map(|_| word(&mut rng)).collect();
        let text = |k: usize| pool[..k].join(" ");
        // The longest prefix of words that stays within the target.
        let (mut lo, mut hi) = (0usize, pool.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if counter.count(&text(mid))? <= target {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let mut prompt = text(lo);
        let mut count = counter.count(&prompt)?;
        let mut misses = 0;
        while count < target && misses < 64 {
            let piece = if !prompt.is_empty() && rng.next().is_multiple_of(2) {
                format!(" {}", rng.letter())
            } else {
                rng.letter().to_string()
            };
            let candidate = format!("{prompt}{piece}");
            let n = counter.count(&candidate)?;
            if n <= target && n >= count {
                prompt = candidate;
                count = n;
            } else {
                misses += 1;
            }
        }
        if count == target {
            return Ok(prompt);
        }
    }
    anyhow::bail!("no prompt of exactly {target} tokens found in 16 attempts (seed {seed})")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts characters: every length is reachable.
    fn chars() -> CountWith<impl Fn(&str) -> usize> {
        CountWith(|s: &str| s.chars().count())
    }

    /// Counts whitespace-separated words plus one per 3 letters.
    fn lumpy() -> CountWith<impl Fn(&str) -> usize> {
        CountWith(|s: &str| {
            s.split_whitespace()
                .map(|w| w.len().div_ceil(3))
                .sum::<usize>()
        })
    }

    #[test]
    fn prompts_have_exact_counts_and_differ() {
        for target in [1, 7, 64, 300] {
            let set = PromptSet::generate(&lumpy(), target, 5, 42).unwrap();
            for p in &set.prompts {
                assert_eq!(lumpy().count(p).unwrap(), target, "{p:?}");
            }
            let distinct: std::collections::BTreeSet<_> = set.prompts.iter().collect();
            assert_eq!(distinct.len(), 5);
        }
        let set = PromptSet::generate(&chars(), 33, 3, 1).unwrap();
        assert!(set.prompts.iter().all(|p| p.chars().count() == 33));
        assert_eq!(set.get(4), set.prompts[1]);
    }

    #[test]
    fn words_are_deterministic_per_seed_and_differ_between_seeds() {
        assert_eq!(words(7, 20), words(7, 20));
        assert_ne!(words(7, 20), words(8, 20));
        assert_eq!(words(7, 20).split(' ').count(), 20);
        assert!(
            words(7, 30).starts_with(&words(7, 20)),
            "more words extend the same text"
        );
    }

    #[test]
    fn generation_is_deterministic() {
        let a = PromptSet::generate(&lumpy(), 50, 3, 9).unwrap();
        let b = PromptSet::generate(&lumpy(), 50, 3, 9).unwrap();
        assert_eq!(a, b);
    }
}
