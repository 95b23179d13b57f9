//! Tool calling: the stack's `tiny` workers name the hermes parser, which
//! the frontend applies to answers of requests that declare tools. The
//! random model is forced into the parser's format with a guided regex;
//! the answer carries `tool_calls` (name, JSON arguments) and
//! `finish_reason` `tool_calls`, unary and streamed alike. Findings of
//! Dynamo 1.6.1 are asserted as such: a truncated call is silently dropped,
//! an undeclared tool name is still returned as a call.

use serde_json::{json, Value};
use testbed_dynamo::stacks::TINY;
use testbed_harness::run_test;

use crate::{ok, vllm, CHAT};

fn tools() -> Value {
    json!([{"type": "function", "function": {"name": "get_weather", "description": "the weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
}

/// The regex of hermes calls of `(name, city)`, in order.
fn calls_regex(calls: &[(&str, &str)]) -> String {
    calls
        .iter()
        .map(|(name, city)| {
            format!(r#"<tool_call>\n\{{"name": "{name}", "arguments": \{{"city": "{city}"\}}\}}\n</tool_call>"#)
        })
        .collect()
}

/// A request declaring `get_weather`, its answer forced to `regex`.
fn forced(regex: &str, with_tools: bool) -> Value {
    let mut body = json!({"model": TINY, "messages": [{"role": "user", "content": "the weather?"}],
                          "max_tokens": 400, "guided_regex": regex});
    if with_tools {
        body["tools"] = tools();
        body["tool_choice"] = json!("auto");
    }
    body
}

/// `(name, arguments as JSON)` of each tool call of a message.
fn calls_of(message: &Value) -> Vec<(String, Value)> {
    message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let args = c["function"]["arguments"].as_str().unwrap_or("");
            (
                c["function"]["name"].as_str().unwrap_or("").to_owned(),
                serde_json::from_str(args).unwrap_or(Value::Null),
            )
        })
        .collect()
}

#[test]
fn a_forced_call_is_parsed_unary_and_streamed() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let body = forced(&calls_regex(&[("get_weather", "Paris")]), true);
        let answer = ok(client, CHAT, &body).await?;
        let choice = &answer["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls", "{answer}");
        assert!(
            choice["message"]["content"].is_null(),
            "no text beside the call: {answer}"
        );
        assert_eq!(
            calls_of(&choice["message"]),
            [("get_weather".to_owned(), json!({"city": "Paris"}))]
        );
        assert!(
            choice["message"]["tool_calls"][0]["id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "the call has an id"
        );

        let stream = client.stream(CHAT, body).await?;
        assert!(
            stream.done() && stream.error().is_none(),
            "{:?}",
            stream.events
        );
        // Deltas reassemble: the name once, the arguments in pieces.
        let (mut name, mut args) = (String::new(), String::new());
        let mut finish = Vec::new();
        for chunk in stream.chunks() {
            let choice = &chunk["choices"][0];
            for call in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                name.push_str(call["function"]["name"].as_str().unwrap_or(""));
                args.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            }
            if let Some(f) = choice["finish_reason"].as_str() {
                finish.push(f.to_owned());
            }
        }
        assert_eq!(name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&args)?,
            json!({"city": "Paris"})
        );
        assert_eq!(finish, ["tool_calls"]);
        Ok(())
    });
}

#[test]
fn several_calls_and_text_before_a_call() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let two = forced(
            &calls_regex(&[("get_weather", "Paris"), ("get_weather", "Rome")]),
            true,
        );
        let answer = ok(client, CHAT, &two).await?;
        let cities: Vec<Value> = calls_of(&answer["choices"][0]["message"])
            .into_iter()
            .map(|(_, args)| args["city"].clone())
            .collect();
        assert_eq!(cities, [json!("Paris"), json!("Rome")], "{answer}");
        let regex = format!(
            "Let me check\\. {}",
            calls_regex(&[("get_weather", "Oslo")])
        );
        let answer = ok(client, CHAT, &forced(&regex, true)).await?;
        let message = &answer["choices"][0]["message"];
        assert_eq!(
            message["content"].as_str().map(str::trim),
            Some("Let me check."),
            "{answer}"
        );
        assert_eq!(calls_of(message).len(), 1, "{answer}");
        Ok(())
    });
}

/// Without tools in the request the same text stays text; with
/// `tool_choice` `none` too.
#[test]
fn the_parser_acts_only_when_tools_are_declared() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let regex = calls_regex(&[("get_weather", "Paris")]);
        let answer = ok(client, CHAT, &forced(&regex, false)).await?;
        let message = &answer["choices"][0]["message"];
        assert!(
            message["tool_calls"].is_null() || message["tool_calls"] == json!([]),
            "{answer}"
        );
        assert!(
            message["content"]
                .as_str()
                .is_some_and(|c| c.contains("<tool_call>")),
            "the text stays: {answer}"
        );
        let mut none = forced(&regex, true);
        none["tool_choice"] = json!("none");
        let answer = ok(client, CHAT, &none).await?;
        assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
        Ok(())
    });
}

/// `required` and a named function: the frontend forces a call of
/// get_weather itself.
#[test]
fn required_and_named_tool_choice_force_a_call() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        for choice in [
            json!("required"),
            json!({"type": "function", "function": {"name": "get_weather"}}),
        ] {
            let body = json!({"model": TINY, "messages": [{"role": "user", "content": "weather?"}],
                              "max_tokens": 120, "tools": tools(), "tool_choice": choice, "seed": 1});
            let answer = ok(client, CHAT, &body).await?;
            let calls = answer["choices"][0]["message"]["tool_calls"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(!calls.is_empty(), "tool_choice {choice}: a call: {answer}");
            assert!(
                calls.iter().all(|c| c["function"]["name"] == "get_weather"),
                "tool_choice {choice}: {answer}"
            );
        }
        // A conversation that carries a call and its result is accepted.
        let history = json!({"model": TINY, "max_tokens": 4, "tools": tools(), "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call-1", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call-1", "content": "sunny"}]});
        ok(client, CHAT, &history).await?;
        Ok(())
    });
}

/// Findings of Dynamo 1.6.1, exact: a call cut before its end is repaired
/// — its half-written arguments closed into valid JSON and the answer
/// reported as finished by a tool call, so a client cannot tell it was
/// cut; a call of a tool the request did not declare is still returned as
/// a call.
#[test]
fn truncated_and_undeclared_calls_findings() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let cut = r#"<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "Par"#;
        let answer = ok(client, CHAT, &forced(cut, true)).await?;
        assert_eq!(
            (
                calls_of(&answer["choices"][0]["message"]),
                &answer["choices"][0]["finish_reason"]
            ),
            (
                vec![("get_weather".to_owned(), json!({"city": "Par"}))],
                &json!("tool_calls")
            ),
            "finding changed: a truncated call is no longer repaired silently: {answer}"
        );
        let other = calls_regex(&[("launch_rocket", "Paris")]);
        let answer = ok(client, CHAT, &forced(&other, true)).await?;
        assert_eq!(
            calls_of(&answer["choices"][0]["message"])
                .first()
                .map(|(n, _)| n.as_str()),
            Some("launch_rocket"),
            "finding changed: an undeclared tool's call is no longer returned: {answer}"
        );
        Ok(())
    });
}
