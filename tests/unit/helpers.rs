//! The answer readers the tiers' assertions rely on.

use serde_json::json;
use testbed_tests::{completion_tokens, text_of};

#[test]
fn text_of_reads_chat_and_completion_answers() {
    let cases = [
        (
            "chat",
            json!({"choices": [{"message": {"content": "hi"}}]}),
            "hi",
        ),
        (
            "completion",
            json!({"choices": [{"text": "there"}]}),
            "there",
        ),
        (
            "tool call, no content",
            json!({"choices": [{"message": {"content": null}}]}),
            "",
        ),
        ("no choices", json!({"choices": []}), ""),
    ];
    for (name, answer, expected) in cases {
        assert_eq!(text_of(&answer), expected, "case {name}");
    }
}

#[test]
fn completion_tokens_reads_usage() {
    assert_eq!(
        completion_tokens(&json!({"usage": {"completion_tokens": 7}})),
        7
    );
    assert_eq!(completion_tokens(&json!({})), 0);
}

#[test]
fn prompts_are_the_load_generators() {
    assert_eq!(
        testbed_tests::prompt(3, 5),
        testbed_load::prompts::words(3, 5)
    );
}
