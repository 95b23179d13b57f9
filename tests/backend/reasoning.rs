//! Reasoning: `tiny-think`'s worker names the deepseek_r1 reasoning parser;
//! answers forced to `plan</think>answer` come back split into
//! `reasoning_content` and `content`, unary and streamed, with the
//! reasoning tokens counted. Findings of Dynamo 1.6.1: an answer that opens
//! with `<think>` is not split at all; a tool call after the reasoning is
//! parsed (the worker also names the hermes tool-call parser).

use serde_json::{json, Value};
use testbed_dynamo::stacks::TINY_THINK;
use testbed_harness::run_test;

use crate::{ok, vllm, CHAT};

/// A request whose answer is forced to `regex`, greedily: a regex admits
/// several tokenisations of one text, and only greedy decoding picks the
/// same one every time (so that token counts compare).
fn forced(regex: &str) -> Value {
    json!({"model": TINY_THINK, "messages": [{"role": "user", "content": "think first"}],
           "max_tokens": 200, "temperature": 0.0, "guided_regex": regex})
}

#[test]
fn reasoning_and_answer_are_split_unary_and_streamed() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let body = forced("plan a</think>answer b");
        let answer = ok(client, CHAT, &body).await?;
        let message = &answer["choices"][0]["message"];
        assert_eq!(message["reasoning_content"], "plan a", "{answer}");
        assert_eq!(message["content"], "answer b", "{answer}");
        let reasoning_tokens = answer["usage"]["completion_tokens_details"]["reasoning_tokens"]
            .as_u64()
            .unwrap_or(0);
        let total = answer["usage"]["completion_tokens"].as_u64().unwrap_or(0);
        assert!(
            reasoning_tokens > 0 && reasoning_tokens < total,
            "reasoning tokens {reasoning_tokens} of {total}: {answer}"
        );

        let stream = client.stream(CHAT, body).await?;
        assert!(stream.done() && stream.error().is_none());
        let (mut reasoning, mut content) = (String::new(), String::new());
        for chunk in stream.chunks() {
            let delta = &chunk["choices"][0]["delta"];
            reasoning.push_str(delta["reasoning_content"].as_str().unwrap_or(""));
            content.push_str(delta["content"].as_str().unwrap_or(""));
        }
        assert_eq!(
            (reasoning.as_str(), content.as_str()),
            ("plan a", "answer b")
        );
        assert_eq!(
            stream
                .usage()
                .and_then(|u| u["completion_tokens_details"]["reasoning_tokens"].as_u64()),
            Some(reasoning_tokens),
            "the stream counts the same reasoning tokens"
        );
        Ok(())
    });
}

/// Finding (Dynamo 1.6.1, deepseek_r1): once the answer opens with
/// `<think>`, the end tag is not found: everything is reasoning.
#[test]
fn an_opening_think_tag_is_not_split_finding() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let answer = ok(
            stack.client(),
            CHAT,
            &forced("<think>plan a</think>answer b"),
        )
        .await?;
        let message = &answer["choices"][0]["message"];
        assert_eq!(
            (
                message["reasoning_content"].as_str(),
                message["content"].as_str()
            ),
            (Some("plan a</think>answer b"), None),
            "finding changed: <think>…</think> is now split: {answer}"
        );
        Ok(())
    });
}

/// Reasoning, then a tool call: the call is parsed out of the answer part.
#[test]
fn a_tool_call_after_the_reasoning_is_parsed() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let mut body = forced(
            r#"plan a</think><tool_call>\n\{"name": "get_weather", "arguments": \{"city": "Paris"\}\}\n</tool_call>"#,
        );
        body["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
        let answer = ok(stack.client(), CHAT, &body).await?;
        let message = &answer["choices"][0]["message"];
        assert_eq!(message["reasoning_content"], "plan a", "{answer}");
        let call = &message["tool_calls"][0]["function"];
        assert_eq!(call["name"], "get_weather", "{answer}");
        assert_eq!(
            serde_json::from_str::<Value>(call["arguments"].as_str().unwrap_or(""))?,
            json!({"city": "Paris"})
        );
        assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
        Ok(())
    });
}
