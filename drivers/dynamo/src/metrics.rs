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

    /// Parses exposition text.
    pub fn parse(text: &str) -> anyhow::Result<Metrics> {
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines).context("parse Prometheus text")?;
        Ok(Metrics { scrape })
    }

    /// Every metric name present.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .scrape
            .samples
            .iter()
            .map(|s| s.metric.clone())
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

    /// Label sets of the samples named `name`.
    pub fn label_sets(&self, name: &str) -> Vec<BTreeMap<String, String>> {
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
