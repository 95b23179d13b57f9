//! Structured output: `response_format` json_schema (unary and streamed
//! answers parse and validate), json_object, and the top-level guided
//! regex, choice and grammar, on chat and (regex) completions; a malformed
//! schema or regex is a 400, never a 500 or a hang. The stack's workers
//! run xgrammar without free whitespace, so that answers are compact JSON.

use serde_json::{json, Value};
use testbed_dynamo::stacks::TINY;
use testbed_harness::run_test;

use crate::{ok, text_of, vllm, CHAT, COMPLETIONS};

/// A person: a name of 1 to 12 lowercase letters or spaces, an age in
/// 0..=120, nothing else. (The name is ASCII because the tiny model's
/// byte-level vocabulary can spell a character as bytes that are not
/// UTF-8, which decode to several U+FFFD each.)
fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z ]{1,12}$"},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
        },
        "required": ["name", "age"],
        "additionalProperties": false,
    })
}

/// Checks `text` against [`person_schema`].
fn valid_person(text: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e}): {text:?}"))?;
    let obj = v.as_object().ok_or_else(|| format!("not an object: {v}"))?;
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    if keys != ["age", "name"] {
        return Err(format!("keys {keys:?}"));
    }
    let name = obj["name"].as_str().ok_or("name is not a string")?;
    if !(1..=12).contains(&name.len()) || !name.bytes().all(|b| b.is_ascii_lowercase() || b == b' ')
    {
        return Err(format!("name not 1 to 12 of [a-z ]: {name:?}"));
    }
    match obj["age"].as_i64() {
        Some(age) if (0..=120).contains(&age) => Ok(()),
        other => Err(format!("age {other:?}")),
    }
}

fn with(content: &str, max_tokens: u32, extra: Value) -> Value {
    let mut body = json!({"model": TINY, "messages": [{"role": "user", "content": content}],
                          "max_tokens": max_tokens, "temperature": 1.0});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    body
}

#[test]
fn json_schema_answers_parse_and_validate_unary_and_streamed() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let format = json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": "person", "strict": true, "schema": person_schema()}}});
        for seed in 0..4u64 {
            let mut body = with("a person", 120, format.clone());
            body["seed"] = json!(seed);
            let answer = ok(client, CHAT, &body).await?;
            assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
            valid_person(&text_of(&answer)).map_err(anyhow::Error::msg)?;
            let stream = client.stream(CHAT, body).await?;
            assert!(
                stream.done() && stream.error().is_none(),
                "{:?}",
                stream.events
            );
            valid_person(&stream.text()).map_err(anyhow::Error::msg)?;
            assert_eq!(
                stream.text(),
                text_of(&answer),
                "seed {seed}: stream and unary agree"
            );
        }
        let object = ok(
            client,
            CHAT,
            &with(
                "any JSON",
                60,
                json!({"response_format": {"type": "json_object"}}),
            ),
        )
        .await?;
        assert!(
            text_of(&object).starts_with('{'),
            "json_object starts an object: {object}"
        );
        Ok(())
    });
}

#[test]
fn guided_regex_choice_and_grammar_constrain_the_answer() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        for seed in 0..3u64 {
            let body = with(
                "r",
                20,
                json!({"guided_regex": "(yes|no)-[0-9]{3}", "seed": seed}),
            );
            let answer = text_of(&ok(client, CHAT, &body).await?);
            assert!(is_yes_no_code(&answer), "chat regex: {answer:?}");
            let body = json!({"model": TINY, "prompt": "r", "max_tokens": 20, "temperature": 1.0,
                              "seed": seed, "guided_regex": "(yes|no)-[0-9]{3}"});
            let answer = text_of(&ok(client, COMPLETIONS, &body).await?);
            assert!(is_yes_no_code(&answer), "completion regex: {answer:?}");
            let body = with(
                "c",
                20,
                json!({"guided_choice": ["alpha", "beta", "gamma"], "seed": seed}),
            );
            let answer = text_of(&ok(client, CHAT, &body).await?);
            assert!(
                ["alpha", "beta", "gamma"].contains(&answer.as_str()),
                "choice: {answer:?}"
            );
            let body = with(
                "g",
                20,
                json!({"guided_grammar": "start: \"ab\" | \"cd\"", "seed": seed}),
            );
            let answer = text_of(&ok(client, CHAT, &body).await?);
            assert!(
                ["ab", "cd"].contains(&answer.as_str()),
                "grammar: {answer:?}"
            );
        }
        Ok(())
    });
}

/// `(yes|no)-[0-9]{3}`, whole.
/// Whether `s` is in the language of `(yes|no)-[0-9]{3}`, checked by hand
/// so the test does not trust a regex engine to judge another one.
fn is_yes_no_code(s: &str) -> bool {
    let Some((word, digits)) = s.split_once('-') else {
        return false;
    };
    (word == "yes" || word == "no")
        && digits.len() == 3
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Malformed constraints are the client's error (400), answered at once.
/// Finding (Dynamo 1.6.1): the 400's message is only "Bad Request", not
/// what is wrong with the schema; and completions refuse
/// `response_format`.
#[test]
fn malformed_constraints_are_400s() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let cases = [
            (
                "a schema whose minimum is a string",
                CHAT,
                with(
                    "p",
                    20,
                    json!({"response_format": {"type": "json_schema", "json_schema": {"name": "p",
                    "schema": {"type": "object", "properties": {"age": {"type": "integer", "minimum": "zero"}}}}}}),
                ),
                "Bad Request",
            ),
            (
                "a schema of an unknown type",
                CHAT,
                with(
                    "p",
                    20,
                    json!({"response_format": {"type": "json_schema", "json_schema": {"name": "p",
                    "schema": {"type": "nonsense"}}}}),
                ),
                "Bad Request",
            ),
            (
                "an unclosed regex",
                CHAT,
                with("r", 20, json!({"guided_regex": "(unclosed"})),
                "Bad Request",
            ),
            (
                "response_format on completions",
                COMPLETIONS,
                json!({"model": TINY, "prompt": "p", "max_tokens": 5, "response_format": {"type": "json_object"}}),
                "Unsupported parameter(s): `response_format`",
            ),
        ];
        for (name, path, body, message) in cases {
            let started = std::time::Instant::now();
            let answer = client.post(path, &body).await?;
            assert_eq!(answer.status, 400, "{name}: {}", answer.text);
            assert!(
                answer.text.contains(message),
                "{name}: finding changed, the message is now {:?}",
                answer.text
            );
            assert!(started.elapsed().as_secs() < 10, "{name}: answered at once");
        }
        Ok(())
    });
}
