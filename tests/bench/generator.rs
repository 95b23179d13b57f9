//! The generator measured against the loopback SSE server: what it reports
//! matches the configured delays, and how many requests per second it
//! sustains on one core.

use std::sync::Arc;
use std::time::{Duration, Instant};

use testbed_harness::run_test;
use testbed_load::{
    run_point, BenchSpec, LoopbackSseServer, PromptSet, Quiet, SseServerConfig, Workload,
};

fn prompts() -> Workload {
    Workload::Prompts(Arc::new(PromptSet {
        tokens: 1,
        prompts: vec!["hello".into()],
    }))
}

/// A point of 40 streams of 16 tokens at concurrency 4 against a loopback
/// server with these delays.
async fn measure(ttft: Duration, itl: Duration) -> anyhow::Result<testbed_load::PointResult> {
    let server = LoopbackSseServer::start(SseServerConfig {
        ttft,
        itl,
        ..SseServerConfig::default()
    })?;
    let spec = BenchSpec {
        output_tokens: 16,
        requests_per_point: 40,
        concurrencies: vec![4],
        ..BenchSpec::new(&server.url(), "loopback")
    };
    let (point, _) = run_point(&spec, &prompts(), 4, 0, Arc::new(Quiet)).await;
    anyhow::ensure!(point.completed == 40, "{:?}", point.errors);
    Ok(point)
}

/// The server starts its TTFT delay once it has read the request: what the
/// client measures beyond it is a fresh connection and a request's round
/// trip, measured first with no delay; the configured delays come on top
/// within 1 ms.
#[test]
fn measured_ttft_and_itl_match_the_configured_delays_within_1ms() {
    run_test(|_ctx| async move {
        let base = measure(Duration::ZERO, Duration::from_millis(5)).await?;
        let point = measure(Duration::from_millis(20), Duration::from_millis(5)).await?;
        let overhead = base.ttft_ms.p50;
        println!(
            "generator accuracy (configured TTFT 20 ms, ITL 5 ms; {overhead:.3} ms of connection and round trip measured with no delay): TTFT p50 {:.3} ms p99 {:.3} ms, ITL p50 {:.3} ms p99 {:.3} ms",
            point.ttft_ms.p50, point.ttft_ms.p99, point.itl_ms.p50, point.itl_ms.p99
        );
        assert!(
            (point.ttft_ms.p50 - (20.0 + overhead)).abs() <= 1.0,
            "TTFT p50 {:.3} ms, configured 20 ms + {overhead:.3} ms",
            point.ttft_ms.p50
        );
        assert!(
            (point.itl_ms.p50 - 5.0).abs() <= 1.0,
            "ITL p50 {:.3} ms, configured 5 ms",
            point.itl_ms.p50
        );
        assert_eq!(point.itl_ms.count, 40 * 15);
        Ok(())
    });
}

#[test]
fn max_request_rate_of_the_generator_on_one_core() {
    run_test(|_ctx| async move {
        let server = LoopbackSseServer::start(SseServerConfig::default())?;
        let spec = BenchSpec {
            output_tokens: 16,
            requests_per_point: 2000,
            concurrencies: vec![16],
            ..BenchSpec::new(&server.url(), "loopback")
        };
        let started = Instant::now();
        let (point, _) = run_point(&spec, &prompts(), 16, 0, Arc::new(Quiet)).await;
        println!(
            "generator max rate (zero-delay loopback server, 16-token streams, concurrency 16, one runtime thread): {:.0} req/s, {:.0} chunks/s, {} requests in {:.2} s",
            point.request_rate,
            point.output_token_rate,
            point.completed,
            started.elapsed().as_secs_f64()
        );
        assert_eq!(point.completed, 2000, "{:?}", point.errors);
        assert!(
            point.request_rate > 100.0,
            "the generator sustains only {:.0} req/s",
            point.request_rate
        );
        Ok(())
    });
}
