//! Disaggregated serving: a prefill and a decode mocker behind one frontend.

use std::time::Duration;

use testbed_dynamo::TopologyBuilder;

#[test]
fn prefill_and_decode_serve_end_to_end() {
    TopologyBuilder::disaggregated().test(|t, _| async move {
        let ready = t.client().get("/v1/models/tiny/ready").await?;
        let types = ready.json["namespaces"]["dynamo"]["worker_types"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert!(
            types.contains_key("prefill") && types.contains_key("decode"),
            "{}",
            ready.text
        );
        let answer = t.client().chat("tiny", &crate::prompt(3, 80), 8).await?;
        assert_eq!(answer.status, 200, "{}", answer.text);
        let ids = &answer.json["nvext"]["worker_id"];
        assert_ne!(
            ids["prefill_worker_id"], ids["decode_worker_id"],
            "two different workers served it: {ids}"
        );
        assert_eq!(answer.json["usage"]["completion_tokens"], 8);
        Ok(())
    });
}

#[test]
fn without_its_prefill_worker_the_model_is_not_served() {
    TopologyBuilder::disaggregated().test(|mut t, _| async move {
        t.workers[0].process().stop().await; // the prefill worker
        t.wait_for_worker_count(1, Duration::from_secs(15)).await?;
        let answer = t.client().chat("tiny", "hello", 4).await?;
        assert_eq!(answer.status, 503, "{}", answer.text);
        Ok(())
    });
}
