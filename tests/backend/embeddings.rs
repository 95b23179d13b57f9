//! Embeddings: a vLLM embedding worker of the tiny model (pooling runner)
//! behind a frontend of its own: `/v1/embeddings` gives one normalised
//! 64-dimensional vector per input, the same each time, for text, batches
//! and token ids, in float or base64, with the prompt tokens counted; too
//! long an input is refused. Finding (Dynamo 1.6.1): `dimensions` on a
//! model without Matryoshka support is a 500, not a 400.

use serde_json::{json, Value};
use testbed_dynamo::stacks::{self, TINY_EMBED};
use testbed_harness::run_test;

use crate::ok;

const EMBEDDINGS: &str = "/v1/embeddings";

fn vectors(answer: &Value) -> Vec<Vec<f64>> {
    answer["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            d["embedding"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_f64)
                .collect()
        })
        .collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

#[test]
fn embeddings_are_normalised_deterministic_and_batched() {
    run_test(|_ctx| async move {
        let stack = stacks::VLLM_EMBEDDINGS.acquire().await?;
        let client = stack.client();
        let one = json!({"model": TINY_EMBED, "input": "hello world"});
        let a = ok(client, EMBEDDINGS, &one).await?;
        let va = vectors(&a);
        assert_eq!(va.len(), 1, "{a}");
        assert_eq!(va[0].len(), 64, "the model's hidden size");
        assert!(
            (norm(&va[0]) - 1.0).abs() < 1e-3,
            "L2-normalised: {}",
            norm(&va[0])
        );
        assert_eq!(
            vectors(&ok(client, EMBEDDINGS, &one).await?),
            va,
            "deterministic"
        );
        assert_eq!(
            a["usage"]["prompt_tokens"].as_u64(),
            Some(testbed_tests::token_count("hello world") as u64),
            "prompt tokens as the tokenizer counts them: {a}"
        );

        let batch =
            json!({"model": TINY_EMBED, "input": ["hello world", "another text", "a third"]});
        let b = ok(client, EMBEDDINGS, &batch).await?;
        let vb = vectors(&b);
        assert_eq!(vb.len(), 3);
        let indexes: Vec<u64> = b["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["index"].as_u64())
            .collect();
        assert_eq!(indexes, [0, 1, 2]);
        let close = |x: &[f64], y: &[f64]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-4);
        assert!(
            close(&vb[0], &va[0]),
            "in a batch, the same text, the same vector"
        );
        assert!(!close(&vb[1], &va[0]), "another text, another vector");

        let ids = json!({"model": TINY_EMBED, "input": [[1000, 1001, 1002]]});
        assert_eq!(
            vectors(&ok(client, EMBEDDINGS, &ids).await?).len(),
            1,
            "token ids are an input too"
        );

        let b64 = json!({"model": TINY_EMBED, "input": "hello world", "encoding_format": "base64"});
        let answer = ok(client, EMBEDDINGS, &b64).await?;
        let encoded = answer["data"][0]["embedding"].as_str().unwrap_or("");
        let floats = decode_f32_base64(encoded)?;
        assert_eq!(floats.len(), 64, "{answer}");
        assert!(close(&floats, &va[0]), "base64 carries the same floats");
        Ok(())
    });
}

/// Errors. Findings of Dynamo 1.6.1: an input longer than the context
/// window and the unsupported `dimensions` are both 500s (server errors)
/// with a generic message, not 400s; an embedding model asked to chat is
/// a 404.
#[test]
fn embedding_errors_findings() {
    run_test(|_ctx| async move {
        let stack = stacks::VLLM_EMBEDDINGS.acquire().await?;
        let client = stack.client();
        let within = testbed_tests::prompt_of_tokens(9, 2000);
        ok(
            client,
            EMBEDDINGS,
            &json!({"model": TINY_EMBED, "input": within}),
        )
        .await?;
        let long = testbed_tests::prompt_of_tokens(9, 2100);
        let answer = client
            .post(EMBEDDINGS, &json!({"model": TINY_EMBED, "input": long}))
            .await?;
        assert_eq!(
            answer.status, 500,
            "finding changed: an input beyond the 2048-token window is now {} {}",
            answer.status, answer.text
        );
        let answer = client
            .post(
                EMBEDDINGS,
                &json!({"model": TINY_EMBED, "input": "x", "dimensions": 8}),
            )
            .await?;
        assert_eq!(
            answer.status, 500,
            "finding changed: `dimensions` is now {} {}",
            answer.status, answer.text
        );
        let chat = json!({"model": TINY_EMBED, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
        let answer = client.post("/v1/chat/completions", &chat).await?;
        assert_eq!(
            answer.status, 404,
            "an embedding model does not chat: {}",
            answer.text
        );
        Ok(())
    });
}

/// Little-endian float32s from standard base64.
fn decode_f32_base64(text: &str) -> anyhow::Result<Vec<f64>> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(text)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect())
}
