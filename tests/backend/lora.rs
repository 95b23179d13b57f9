//! LoRA: adapters the testbed generates for its tiny model (seeded, PEFT
//! layout) are loaded through Dynamo's mechanism (`POST /v1/loras` on a
//! worker's system port), listed by the frontend, served by name, change
//! the greedy answer deterministically and identically on every worker
//! holding them, and leave with `DELETE`.
//!
//! Finding (Dynamo 1.6.1): the frontend routes an adapter's requests to
//! every worker of the endpoint, not only to those holding the adapter; a
//! worker without it answers 400 "Invalid request" (measured: 10 of 20
//! requests with the adapter on one worker of two).

use std::time::Duration;

use serde_json::{json, Value};
use testbed_dynamo::shared::WorkerInfo;
use testbed_dynamo::stacks::TINY;
use testbed_dynamo::OpenAiClient;
use testbed_dynamo::TinyModel;
use testbed_harness::poll::{check, Poll};
use testbed_harness::run_test;

use crate::{completion, instance_ids, ok, pinned, text_of, vllm, COMPLETIONS};

/// A greedy completion request of `model`.
fn greedy(model: &str) -> Value {
    let mut body = completion("once upon a time", 16);
    body["model"] = json!(model);
    body
}

/// Loads adapter `name` (the tiny model's adapter of `seed`) on `worker`.
async fn load(worker: &WorkerInfo, name: &str, seed: u64) -> anyhow::Result<()> {
    let dir = TinyModel::ensure()?.lora_adapter(seed)?;
    let answer: Value = manager()
        .post(format!("{}/v1/loras", worker.system_url))
        .json(&json!({"lora_name": name, "source": {"uri": format!("file://{}", dir.display())}}))
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(answer["status"] == "success", "loading {name}: {answer}");
    Ok(())
}

/// Waits until the frontend lists adapter `name` (or, with `present`
/// false, no longer does): a worker's adapters reach the frontend through
/// discovery, asynchronously.
async fn listed(client: &OpenAiClient, name: &str, present: bool) -> anyhow::Result<()> {
    Poll::new(format!("the frontend listing {name}: {present}"))
        .timeout(Duration::from_secs(20))
        .every(Duration::from_millis(100))
        .until(|| async {
            let models = client.models().await?;
            Ok(check(models.iter().any(|m| m == name) == present, || {
                format!("{models:?}")
            }))
        })
        .await
}

/// Unloads adapter `name` from `worker`, insisting on 200.
async fn unload(worker: &WorkerInfo, name: &str) -> anyhow::Result<()> {
    let gone = manager()
        .delete(format!("{}/v1/loras/{name}", worker.system_url))
        .send()
        .await?;
    anyhow::ensure!(gone.status() == 200, "unloading {name}: {}", gone.status());
    Ok(())
}

/// The HTTP client for workers' system ports.
fn manager() -> reqwest::Client {
    testbed_load::client::http_client(Default::default(), None)
}

#[test]
fn adapters_load_serve_on_every_holder_and_unload() {
    run_test(|ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let workers = stack.workers_of(TINY);
        let ids = instance_ids(&stack, TINY).await?;
        let names = [
            format!("{}-a", ctx.namespace()),
            format!("{}-b", ctx.namespace()),
        ];
        let base = text_of(&ok(client, COMPLETIONS, &greedy(TINY)).await?);

        for (seed, name) in (1..).zip(&names) {
            for worker in &workers {
                load(worker, name, seed).await?;
            }
            listed(client, name, true).await?;
        }
        let models = client.models().await?;
        assert!(
            names.iter().all(|n| models.contains(n)),
            "both adapters are listed: {models:?}"
        );

        // Each adapter, pinned to each worker: one answer per adapter.
        let mut answers = Vec::new();
        for name in &names {
            let mut texts = Vec::new();
            for id in &ids {
                texts.push(text_of(
                    &ok(client, COMPLETIONS, &pinned(greedy(name), *id)).await?,
                ));
            }
            assert!(
                texts.windows(2).all(|w| w[0] == w[1]),
                "{name}: the same on every worker: {texts:?}"
            );
            answers.push(texts.remove(0));
        }
        assert_ne!(answers[0], base, "adapter a changes the greedy answer");
        assert_ne!(answers[1], base, "adapter b changes the greedy answer");
        assert_ne!(answers[0], answers[1], "the two adapters differ");
        let unpinned = text_of(&ok(client, COMPLETIONS, &greedy(&names[0])).await?);
        assert_eq!(unpinned, answers[0], "routed by name, the adapter's answer");
        assert_eq!(
            text_of(&ok(client, COMPLETIONS, &greedy(TINY)).await?),
            base,
            "the base model is unchanged"
        );
        load(workers[0], &names[0], 1)
            .await
            .map_err(|e| e.context("loading it again is harmless"))?;

        for name in &names {
            for worker in &workers {
                unload(worker, name).await?;
            }
            listed(client, name, false).await?;
        }
        let answer = client.post(COMPLETIONS, &greedy(&names[0])).await?;
        assert_eq!(
            answer.status, 404,
            "an unloaded adapter is gone: {}",
            answer.text
        );
        let models = client.models().await?;
        assert!(
            names.iter().all(|n| !models.contains(n)),
            "and no longer listed: {models:?}"
        );
        Ok(())
    });
}

/// The finding of the module doc: pinned to the worker without the
/// adapter, a request is a 400; left to the router, some of 20 distinct
/// prompts land there too (if the router chose at random, the chance that
/// none did would be 2^-20).
#[test]
fn an_adapter_on_one_worker_is_still_routed_to_the_other_finding() {
    run_test(|ctx| async move {
        let stack = vllm().await?;
        let client = stack.client();
        let workers = stack.workers_of(TINY);
        let ids = instance_ids(&stack, TINY).await?;
        let name = ctx.namespace();
        load(workers[0], &name, 3).await?;
        let result = async {
            listed(client, &name, true).await?;
            ok(client, COMPLETIONS, &pinned(greedy(&name), ids[0])).await?;
            let other = client
                .post(COMPLETIONS, &pinned(greedy(&name), ids[1]))
                .await?;
            assert_eq!(
                other.status, 400,
                "the worker without the adapter: {}",
                other.text
            );
            let mut statuses = Vec::new();
            for i in 0..20 {
                let mut body = greedy(&name);
                body["prompt"] = json!(testbed_tests::prompt(600 + i, 12));
                statuses.push(client.post(COMPLETIONS, &body).await?.status);
            }
            let misrouted = statuses.iter().filter(|s| **s == 400).count();
            println!("{misrouted} of 20 requests reached the worker without the adapter");
            assert!(
                statuses.iter().all(|s| *s == 200 || *s == 400),
                "only served or misrouted: {statuses:?}"
            );
            assert!(
                misrouted > 0,
                "finding changed: the router now keeps an adapter's requests on its holders"
            );
            anyhow::Ok(())
        }
        .await;
        unload(workers[0], &name).await?;
        result
    });
}

/// Finding (Dynamo 1.6.1): an adapter folder that does not exist is a 500
/// (a server error) naming the path, not a 4xx.
#[test]
fn a_missing_adapter_is_a_500_finding() {
    run_test(|ctx| async move {
        let stack = vllm().await?;
        let worker = &stack.workers_of(TINY)[0];
        let answer = manager()
            .post(format!("{}/v1/loras", worker.system_url))
            .json(&json!({"lora_name": ctx.namespace(), "source": {"uri": "file:///nonexistent/adapter"}}))
            .send()
            .await?;
        let status = answer.status().as_u16();
        let text = answer.text().await?;
        assert_eq!(status, 500, "finding changed: {status} {text}");
        assert!(
            text.contains("/nonexistent/adapter"),
            "the path is named: {text}"
        );
        Ok(())
    });
}
