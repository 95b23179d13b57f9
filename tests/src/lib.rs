//! Helpers the tier binaries share. Tests never spawn services or pick ports
//! themselves: they ask the drivers; what is here only glues test code.

use testbed_dynamo::TinyModel;

/// Tokens of `text` by the fixture's tokenizer (no special tokens added).
pub fn token_count(text: &str) -> usize {
    let tokenizer = TinyModel::ensure()
        .expect("the tiny model")
        .tokenizer()
        .expect("its tokenizer");
    tokenizer.encode(text, false).expect("encode").len()
}

/// A prompt of `words` generated words, distinct per `seed`.
pub fn prompt(seed: u64, words: usize) -> String {
    let syllables = [
        "ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "we", "zu", "pe", "do",
    ];
    let mut x = seed.wrapping_mul(0x9e3779b97f4a7c15) | 1;
    (0..words)
        .map(|_| {
            let mut w = String::new();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                w.push_str(syllables[(x % syllables.len() as u64) as usize]);
            }
            w
        })
        .collect::<Vec<_>>()
        .join(" ")
}
