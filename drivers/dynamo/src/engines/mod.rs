//! One module per engine: its [`crate::engine::Engine`] row and its typed
//! settings, which become the engine's command-line arguments.

pub mod mocker;
pub mod sglang;
pub mod trtllm;
pub mod vllm;

/// `[flag, value]` when `value` is set.
fn optional(flag: &str, value: Option<impl ToString>) -> Vec<String> {
    value
        .map(|v| vec![flag.to_owned(), v.to_string()])
        .unwrap_or_default()
}

/// `[flag]` when `on`.
fn switch(flag: &str, on: bool) -> Vec<String> {
    if on {
        vec![flag.to_owned()]
    } else {
        Vec::new()
    }
}

/// `--flag value` pairs as words.
fn pairs(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(flag, value)| [(*flag).to_owned(), value.clone()])
        .collect()
}
