//! Sampling: greedy decoding repeats token for token, on one worker and on
//! the other; a seed repeats; top_k 1, a tiny top_p and min_p 1 are
//! greedy; penalties change the answer deterministically; logprobs and
//! top_logprobs are counted, ordered and consistent with greedy choice; a
//! logit bias is ignored by Dynamo 1.6.1 (a finding).

use serde_json::{json, Value};
use testbed_dynamo::stacks::TINY;
use testbed_harness::run_test;
use testbed_load::OpenAiClient;

use crate::{chat, drift, instance_ids, ok, pinned, text_of, tokens_of, vllm, CHAT, COMPLETIONS};

/// A completion of 16 tokens of "a random walk" with `extra` parameters.
fn sample(extra: Value) -> Value {
    let mut body =
        json!({"model": TINY, "prompt": "a random walk", "max_tokens": 16, "ignore_eos": true});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    body
}

async fn text(client: &OpenAiClient, body: &Value) -> anyhow::Result<String> {
    Ok(text_of(&ok(client, COMPLETIONS, body).await?))
}

/// The same greedy request twice on each worker (pinned): the same tokens
/// with the same log-probabilities, on both workers alike.
#[test]
fn greedy_decoding_repeats_token_for_token_on_either_worker() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let ids = instance_ids(&stack, TINY).await?;
        assert_eq!(ids.len(), 2, "two workers of tiny: {ids:?}");
        let mut body = chat("the same tokens on every worker", 24);
        body["logprobs"] = json!(true);
        let mut runs = Vec::new();
        for id in &ids {
            for _ in 0..2 {
                let answer = ok(client, CHAT, &pinned(body.clone(), *id)).await?;
                assert_eq!(
                    answer["nvext"]["worker_id"]["decode_worker_id"].as_u64(),
                    Some(*id),
                    "pinned to {id}"
                );
                runs.push(tokens_of(&answer));
            }
        }
        let (ids0, lp0) = &runs[0];
        assert_eq!(ids0.len(), 24, "every token has its id and logprob");
        for (i, (ids_i, lp_i)) in runs.iter().enumerate() {
            assert_eq!(ids_i, ids0, "run {i} repeats the tokens");
            let d = drift(lp0, lp_i);
            assert!(d < 1e-3, "run {i}: log-probabilities differ by {d}");
        }
        Ok(())
    });
}

#[test]
fn seeds_repeat_and_greedy_equivalents_are_greedy() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let greedy = text(client, &sample(json!({"temperature": 0.0}))).await?;
        let seeded = |seed: u64| sample(json!({"temperature": 1.0, "seed": seed}));
        let first = text(client, &seeded(42)).await?;
        assert_eq!(
            first,
            text(client, &seeded(42)).await?,
            "the same seed repeats"
        );
        let mut others = Vec::new();
        for seed in [43, 44, 45] {
            others.push(text(client, &seeded(seed)).await?);
        }
        assert!(
            others.iter().any(|o| *o != first),
            "other seeds sample otherwise: {others:?}"
        );
        assert_ne!(first, greedy, "sampling at temperature 1 is not greedy");
        let cases = [
            (
                "top_k 1",
                json!({"temperature": 1.0, "top_k": 1, "seed": 7}),
            ),
            (
                "a tiny top_p",
                json!({"temperature": 1.0, "top_p": 1e-6, "seed": 7}),
            ),
            (
                "min_p 1",
                json!({"temperature": 1.0, "min_p": 1.0, "seed": 7}),
            ),
        ];
        for (name, extra) in cases {
            assert_eq!(
                text(client, &sample(extra)).await?,
                greedy,
                "{name} samples greedily"
            );
        }
        Ok(())
    });
}

#[test]
fn penalties_change_the_answer_deterministically() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let greedy = text(
            client,
            &sample(json!({"temperature": 0.0, "max_tokens": 48})),
        )
        .await?;
        let cases = [
            ("repetition_penalty 2", json!({"repetition_penalty": 2.0})),
            ("presence_penalty 2", json!({"presence_penalty": 2.0})),
            ("frequency_penalty 2", json!({"frequency_penalty": 2.0})),
        ];
        for (name, extra) in cases {
            let mut body = sample(json!({"temperature": 0.0, "max_tokens": 48}));
            for (k, v) in extra.as_object().into_iter().flatten() {
                body[k] = v.clone();
            }
            let a = text(client, &body).await?;
            assert_eq!(a, text(client, &body).await?, "{name} is deterministic");
            assert_ne!(a, greedy, "{name} changes the greedy answer");
        }
        Ok(())
    });
}

/// Greedy decoding with `top_logprobs`: each position lists that many
/// alternatives, best first, and the chosen token is the best one.
#[test]
fn logprobs_are_counted_ordered_and_consistent_with_greedy() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let mut body = chat("show me the odds", 6);
        body["logprobs"] = json!(true);
        body["top_logprobs"] = json!(3);
        let answer = ok(client, CHAT, &body).await?;
        let content = answer["choices"][0]["logprobs"]["content"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(content.len(), 6, "{answer}");
        for (i, position) in content.iter().enumerate() {
            let top = position["top_logprobs"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert_eq!(top.len(), 3, "position {i}: {position}");
            let lps: Vec<f64> = top.iter().filter_map(|t| t["logprob"].as_f64()).collect();
            assert!(
                lps.windows(2).all(|w| w[0] >= w[1]),
                "position {i} ordered: {lps:?}"
            );
            assert_eq!(
                position["token"], top[0]["token"],
                "position {i}: greedy took the best"
            );
            let chosen = position["logprob"].as_f64().unwrap_or(f64::NAN);
            assert!(
                (chosen - lps[0]).abs() < 1e-6,
                "position {i}: {chosen} vs {lps:?}"
            );
            assert!(lps.iter().all(|l| *l <= 0.0), "log-probabilities are ≤ 0");
        }
        let text = content
            .iter()
            .filter_map(|p| p["token"].as_str())
            .collect::<String>();
        assert_eq!(text, text_of(&answer), "the tokens spell the answer");

        let legacy = json!({"model": TINY, "prompt": "show me the odds", "max_tokens": 4,
                            "temperature": 0.0, "logprobs": 2, "ignore_eos": true});
        let answer = ok(client, COMPLETIONS, &legacy).await?;
        let lp = &answer["choices"][0]["logprobs"];
        assert_eq!(lp["tokens"].as_array().map(Vec::len), Some(4), "{answer}");
        assert_eq!(lp["token_logprobs"].as_array().map(Vec::len), Some(4));
        assert!(
            lp["top_logprobs"].as_array().is_some_and(|t| t
                .iter()
                .all(|m| m.as_object().is_some_and(|m| m.len() == 2))),
            "two alternatives per position: {lp}"
        );
        Ok(())
    });
}

/// Finding (Dynamo 1.6.1): `logit_bias` is accepted and ignored — a bias of
/// +100 on one token leaves the greedy answer unchanged. The test fails
/// when a release starts honouring it.
#[test]
fn logit_bias_is_ignored_finding() {
    run_test(|_ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let greedy = sample(json!({"temperature": 0.0}));
        let mut biased = greedy.clone();
        biased["logit_bias"] = json!({"1500": 100});
        let answer = client.post(COMPLETIONS, &biased).await?;
        assert_eq!(answer.status, 200, "accepted: {}", answer.text);
        assert_eq!(
            text_of(&answer.json),
            text(client, &greedy).await?,
            "finding changed: logit_bias now changes the answer"
        );
        Ok(())
    });
}
