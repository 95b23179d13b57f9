//! Helpers the tier binaries share. Tests never spawn services or pick ports
//! themselves: they ask the drivers; what is here only glues test code.

use testbed_dynamo::client::Stream;
use testbed_dynamo::{metrics, Metrics, TinyModel};

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

/// Asserts that a stream whose worker was killed mid-way was migrated
/// transparently: status 200, no error event, `[DONE]`, every one of
/// `max_tokens` tokens, and the frontend's migration counter rose since
/// `before`.
pub async fn assert_migrated(
    stream: &Stream,
    max_tokens: u32,
    frontend_metrics_url: &str,
    before: &Metrics,
) -> anyhow::Result<()> {
    assert_eq!(stream.status, 200);
    assert!(
        stream.error().is_none(),
        "migration hid the failure: {:?}",
        stream.error()
    );
    assert!(stream.done(), "the migrated stream finished");
    assert_eq!(
        stream.usage().map(|u| u["completion_tokens"].clone()),
        Some(max_tokens.into()),
        "every token arrived"
    );
    let after = Metrics::scrape(frontend_metrics_url).await?;
    let migrations = metrics::delta(before, &after, "dynamo_frontend_model_migration_total", &[]);
    assert!(
        migrations >= 1.0,
        "the migration metric rose ({migrations})"
    );
    Ok(())
}
