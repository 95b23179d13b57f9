//! One vLLM worker through the frontend: chat, completions and streaming
//! (with usage) agree with each other and with the tokenizer; greedy
//! decoding repeats token for token; the sampling parameters do what they
//! say (`max_tokens`, `min_tokens` with `ignore_eos`, stop strings, seeded
//! sampling).

use serde_json::json;
use testbed_dynamo::{OpenAiClient, RouterMode};
use testbed_harness::run_test;

use crate::{
    chat, chat_with_logprobs, completion, completion_tokens, ok, text_of, token_count, tokens_of,
    vllm_topology, MODEL,
};

const CHAT: &str = "/v1/chat/completions";
const COMPLETIONS: &str = "/v1/completions";

#[test]
fn one_worker_serves_the_openai_api_and_honours_sampling_parameters() {
    run_test(|ctx| async move {
        let t = vllm_topology(1, RouterMode::RoundRobin, 512)
            .start(&ctx)
            .await?;
        let client = t.client();
        api_surface(&client).await?;
        greedy_repeats_token_for_token(&client).await?;
        length_parameters(&client).await?;
        stop_string_truncates(&client).await?;
        seeded_sampling(&client).await?;
        Ok(())
    });
}

/// Chat and completions, unary and streaming; usage is consistent.
async fn api_surface(client: &OpenAiClient) -> anyhow::Result<()> {
    let content = "tell me about the tiny model";
    let answer = ok(client, CHAT, &chat(content, 8)).await?;
    assert_eq!(answer["object"], "chat.completion");
    let choice = &answer["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(
        choice["message"]["content"].is_string(),
        "chat content is text: {answer}"
    );
    assert_eq!(choice["finish_reason"], "length", "{answer}");
    assert_eq!(completion_tokens(&answer), 8, "{answer}");
    // The chat template renders `<bos><user>{content}\n<assistant>`.
    let rendered = format!("{}<user>{content}\n<assistant>", testbed_dynamo::model::BOS);
    assert_eq!(
        answer["usage"]["prompt_tokens"].as_u64(),
        Some(token_count(&rendered) as u64),
        "chat prompt tokens as the tokenizer counts them: {answer}"
    );
    assert_eq!(
        answer["usage"]["total_tokens"].as_u64(),
        Some(answer["usage"]["prompt_tokens"].as_u64().unwrap_or(0) + 8)
    );
    let chat_text = text_of(&answer);

    let stream = client.stream(CHAT, chat(content, 8)).await?;
    assert_eq!(stream.status, 200);
    assert!(stream.error().is_none(), "{:?}", stream.error());
    assert!(stream.done(), "the chat stream ends with [DONE]");
    assert_eq!(
        stream.usage().map(|u| u["completion_tokens"].clone()),
        Some(8.into()),
        "the chat stream's usage"
    );
    assert_eq!(
        stream.text(),
        chat_text,
        "greedy streaming and unary chat give the same text"
    );

    let prompt = "once upon a time in a tiny model";
    let answer = ok(client, COMPLETIONS, &completion(prompt, 12)).await?;
    assert_eq!(answer["object"], "text_completion");
    assert_eq!(answer["choices"][0]["finish_reason"], "length", "{answer}");
    assert_eq!(completion_tokens(&answer), 12, "{answer}");
    assert_eq!(
        answer["usage"]["prompt_tokens"].as_u64(),
        Some(token_count(prompt) as u64),
        "completion prompt tokens as the tokenizer counts them: {answer}"
    );
    let stream = client.stream(COMPLETIONS, completion(prompt, 12)).await?;
    assert_eq!(stream.status, 200);
    assert!(stream.error().is_none(), "{:?}", stream.error());
    assert!(stream.done(), "the completion stream ends with [DONE]");
    let usage = stream.usage().expect("the completion stream's usage");
    assert_eq!(usage["completion_tokens"], 12, "{usage}");
    assert_eq!(
        usage["prompt_tokens"].as_u64(),
        Some(token_count(prompt) as u64)
    );
    assert_eq!(
        stream.text(),
        text_of(&answer),
        "greedy streaming and unary completions give the same text"
    );
    println!("chat {chat_text:?}; completion {:?}", text_of(&answer));
    Ok(())
}

/// The same greedy request twice: the same tokens, with the same
/// log-probabilities; streamed, the same text.
async fn greedy_repeats_token_for_token(client: &OpenAiClient) -> anyhow::Result<()> {
    let body = chat_with_logprobs("the same request twice", 24);
    let a = ok(client, CHAT, &body).await?;
    let b = ok(client, CHAT, &body).await?;
    let ((ids_a, lp_a), (ids_b, lp_b)) = (tokens_of(&a), tokens_of(&b));
    assert_eq!(ids_a.len(), 24, "every token has its id and logprob: {a}");
    assert_eq!(ids_a, ids_b, "greedy decoding repeats token for token");
    let drift = lp_a
        .iter()
        .zip(&lp_b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(drift < 1e-3, "log-probabilities differ by {drift}");
    let body = completion("the same request twice", 24);
    let sa = client.stream(COMPLETIONS, body.clone()).await?;
    let sb = client.stream(COMPLETIONS, body).await?;
    assert!(sa.done() && sb.done(), "both streams finished");
    assert!(!sa.text().is_empty(), "the stream carried text");
    assert_eq!(sa.text(), sb.text(), "greedy streams repeat");
    Ok(())
}

/// `max_tokens` caps the answer; `min_tokens` with `ignore_eos` forces its
/// length.
async fn length_parameters(client: &OpenAiClient) -> anyhow::Result<()> {
    let body =
        json!({"model": MODEL, "prompt": "a short answer", "max_tokens": 5, "temperature": 0.0});
    let answer = ok(client, COMPLETIONS, &body).await?;
    let n = completion_tokens(&answer);
    assert!(
        (1..=5).contains(&n),
        "max_tokens 5 gave {n} tokens: {answer}"
    );
    let body = json!({
        "model": MODEL, "prompt": "a forced length", "max_tokens": 40, "min_tokens": 40,
        "ignore_eos": true, "temperature": 0.0,
    });
    let answer = ok(client, COMPLETIONS, &body).await?;
    assert_eq!(completion_tokens(&answer), 40, "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "length", "{answer}");
    Ok(())
}

/// A stop string cuts the greedy answer just before its first occurrence.
/// With `ignore_eos` Dynamo 1.6.1 ignores stop strings too (checked, so
/// that a release that changes it is noticed).
async fn stop_string_truncates(client: &OpenAiClient) -> anyhow::Result<()> {
    let prompt = "where does it stop";
    let greedy = |stop: Option<&str>, ignore_eos: bool| {
        let mut body =
            json!({"model": MODEL, "prompt": prompt, "max_tokens": 32, "temperature": 0.0});
        if let Some(stop) = stop {
            body["stop"] = json!([stop]);
        }
        if ignore_eos {
            body["ignore_eos"] = json!(true);
        }
        body
    };
    let full = text_of(&ok(client, COMPLETIONS, &greedy(None, false)).await?);
    // A stop string taken from the middle of the greedy answer (up to three
    // ASCII letters or digits), and where it first occurs.
    let chars: Vec<(usize, char)> = full.char_indices().collect();
    let start = chars
        .iter()
        .skip(chars.len() / 2)
        .position(|(_, c)| c.is_ascii_alphanumeric())
        .map(|i| i + chars.len() / 2)
        .expect("an ASCII letter in the second half of the answer");
    let stop: String = full[chars[start].0..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .take(3)
        .collect();
    let expected = &full[..full.find(&stop).expect("the stop string is in the answer")];
    let answer = ok(client, COMPLETIONS, &greedy(Some(&stop), false)).await?;
    assert_eq!(
        text_of(&answer),
        expected,
        "the answer stops before {stop:?} (full answer {full:?})"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    let answer = ok(client, COMPLETIONS, &greedy(Some(&stop), true)).await?;
    println!(
        "finding: with ignore_eos the stop string {stop:?} is ignored (finish_reason {})",
        answer["choices"][0]["finish_reason"]
    );
    assert_eq!(
        text_of(&answer),
        full,
        "Dynamo 1.6.1 ignores stop strings when ignore_eos is set; this release does not"
    );
    Ok(())
}

/// Sampling with a seed repeats; other seeds give other answers.
async fn seeded_sampling(client: &OpenAiClient) -> anyhow::Result<()> {
    let body = |seed: u64| {
        json!({
            "model": MODEL, "prompt": "a random walk", "max_tokens": 16, "ignore_eos": true,
            "temperature": 1.0, "seed": seed,
        })
    };
    let first = text_of(&ok(client, COMPLETIONS, &body(42)).await?);
    let again = text_of(&ok(client, COMPLETIONS, &body(42)).await?);
    assert_eq!(first, again, "the same seed gives the same sample");
    let mut others = Vec::new();
    for seed in [43, 44, 45] {
        others.push(text_of(&ok(client, COMPLETIONS, &body(seed)).await?));
    }
    println!("seed 42: {first:?}; seeds 43-45: {others:?}");
    assert!(
        others.iter().any(|o| *o != first),
        "three other seeds all gave the seed-42 sample {first:?}"
    );
    Ok(())
}
