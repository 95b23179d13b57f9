//! Prometheus text-format scraping, and deltas between two scrapes: tests
//! assert that a counter or histogram moved by exactly what they caused.

use std::collections::BTreeMap;

use anyhow::Context;

/// One scrape of a `/metrics` endpoint.
#[derive(Debug, Clone)]
pub struct Metrics {
    scrape: prometheus_parse::Scrape,
}

impl Metrics {
    /// Scrapes `url`.
    pub async fn scrape(url: &str) -> anyhow::Result<Metrics> {
        let text = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .text()
            .await?;
        Self::parse(&text)
    }

    /// Parses exposition text. Names with colons (vLLM's `vllm:…`, legal
    /// in Prometheus) are kept: the parser underneath drops them otherwise.
    pub fn parse(text: &str) -> anyhow::Result<Metrics> {
        let lines = text.lines().map(|l| Ok(encode_line(l)));
        let scrape = prometheus_parse::Scrape::parse(lines).context("parse Prometheus text")?;
        Ok(Metrics { scrape })
    }

    /// Every metric name present.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .scrape
            .samples
            .iter()
            .map(|s| decode_name(&s.metric))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The sum of counter/gauge samples named `name` whose labels include
    /// every `(key, value)` of `labels`; histograms and summaries give their
    /// observation count. 0 when absent (Dynamo creates some series on
    /// first use).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let name = encode_name(name);
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => 0.0,
            })
            .sum()
    }

    /// Every value the label `label` takes, over all samples, sorted.
    pub fn label_values(&self, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .scrape
            .samples
            .iter()
            .filter_map(|s| s.labels.get(label).map(str::to_owned))
            .collect();
        values.sort();
        values.dedup();
        values
    }

    /// Label sets of the samples named `name`.
    pub fn label_sets(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        let name = encode_name(name);
        self.scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| {
                s.labels
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .collect()
    }
}

/// What a colon in a metric name becomes for the parser (whose names are
/// `\w+`).
const COLON: &str = "__colon__";

fn encode_name(name: &str) -> String {
    name.replace(':', COLON)
}

fn decode_name(name: &str) -> String {
    name.replace(COLON, ":")
}

/// The line with the colons of its metric name (a sample's, or a `# HELP` /
/// `# TYPE` line's) encoded.
fn encode_line(line: &str) -> String {
    for prefix in ["# HELP ", "# TYPE "] {
        if let Some(rest) = line.strip_prefix(prefix) {
            let (name, tail) = rest.split_at(rest.find(' ').unwrap_or(rest.len()));
            return format!("{prefix}{}{tail}", encode_name(name));
        }
    }
    if line.starts_with('#') {
        return line.to_owned();
    }
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    format!("{}{}", encode_name(&line[..end]), &line[end..])
}

/// Waits until [`Metrics::value`] of `name` with `labels` at `url` rises
/// above `above`; returns the value it reached.
pub async fn wait_above(
    url: &str,
    name: &str,
    labels: &[(&str, &str)],
    above: f64,
    timeout: std::time::Duration,
) -> anyhow::Result<f64> {
    use testbed_harness::poll::{Check, Poll};
    Poll::new(format!("{name} at {url} rising above {above}"))
        .timeout(timeout)
        .every(std::time::Duration::from_millis(5))
        .until(|| async {
            let value = Metrics::scrape(url).await?.value(name, labels);
            Ok(if value > above {
                Check::Done(value)
            } else {
                Check::NotYet(format!("{value}"))
            })
        })
        .await
}

/// The router's count of KV cache events it applied to its index (blocks
/// stored), on the frontend's `/metrics`: a request's blocks are routable
/// once this rises after it ([`kv_indexed_since`]).
pub const KV_STORED_EVENTS: (&str, &[(&str, &str)]) = (
    "dynamo_component_kv_cache_events_applied",
    &[("event_type", "stored"), ("status", "ok")],
);

/// The frontend's count of applied "stored" KV events now (see
/// [`KV_STORED_EVENTS`]).
pub async fn kv_index_mark(frontend_metrics_url: &str) -> anyhow::Result<f64> {
    let (name, labels) = KV_STORED_EVENTS;
    Ok(Metrics::scrape(frontend_metrics_url)
        .await?
        .value(name, labels))
}

/// Waits until the KV router has indexed blocks stored since `mark`:
/// KV events travel asynchronously (engine, event plane, router), so a
/// request right after another may not yet be routed by its prefix.
pub async fn kv_indexed_since(frontend_metrics_url: &str, mark: f64) -> anyhow::Result<()> {
    let (name, labels) = KV_STORED_EVENTS;
    wait_above(
        frontend_metrics_url,
        name,
        labels,
        mark,
        std::time::Duration::from_secs(30),
    )
    .await
    .map(drop)
}

/// `after - before` of [`Metrics::value`].
pub fn delta(before: &Metrics, after: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(name, labels) - before.value(name, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE dynamo_frontend_requests_total counter
dynamo_frontend_requests_total{model=\"tiny\",status=\"success\",request_type=\"stream\"} 3
dynamo_frontend_requests_total{model=\"tiny\",status=\"error\",request_type=\"unary\"} 1
# TYPE dynamo_frontend_time_to_first_token_seconds histogram
dynamo_frontend_time_to_first_token_seconds_bucket{model=\"tiny\",le=\"0.1\"} 2
dynamo_frontend_time_to_first_token_seconds_bucket{model=\"tiny\",le=\"+Inf\"} 3
dynamo_frontend_time_to_first_token_seconds_sum{model=\"tiny\"} 0.2
dynamo_frontend_time_to_first_token_seconds_count{model=\"tiny\"} 3
";

    #[test]
    fn names_with_colons_are_parsed() {
        let m = Metrics::parse(
            "# HELP vllm:num_requests_running Running requests.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine=\"0\",model=\"tiny\"} 2.0
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine=\"0\"} 124.0
",
        )
        .unwrap();
        assert_eq!(
            m.value("vllm:num_requests_running", &[("model", "tiny")]),
            2.0
        );
        assert_eq!(m.value("vllm:generation_tokens_total", &[]), 124.0);
        assert_eq!(
            m.names(),
            ["vllm:generation_tokens_total", "vllm:num_requests_running"]
        );
        assert_eq!(m.label_sets("vllm:generation_tokens_total").len(), 1);
    }

    #[test]
    fn counters_sum_over_matching_labels_and_histograms_count() {
        let m = Metrics::parse(TEXT).unwrap();
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);
        let cases: &[Case] = &[
            ("dynamo_frontend_requests_total", &[], 4.0),
            (
                "dynamo_frontend_requests_total",
                &[("status", "success")],
                3.0,
            ),
            (
                "dynamo_frontend_requests_total",
                &[("status", "error"), ("request_type", "unary")],
                1.0,
            ),
            (
                "dynamo_frontend_time_to_first_token_seconds",
                &[("model", "tiny")],
                3.0,
            ),
            ("dynamo_frontend_model_rejection_total", &[], 0.0),
        ];
        for (name, labels, expected) in cases {
            assert_eq!(m.value(name, labels), *expected, "{name} {labels:?}");
        }
    }
}
