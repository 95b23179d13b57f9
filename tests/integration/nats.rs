//! The real nats-server: core messaging, JetStream, restart and crash.

use std::time::Duration;

use futures::StreamExt;
use testbed_harness::run_test;
use testbed_nats::{NatsMode, NatsServer};

/// Runs a test against a core NATS server of its own (up until the body
/// returns), with a client.
fn on_core_nats(body: impl AsyncFnOnce(&NatsServer, async_nats::Client) -> anyhow::Result<()>) {
    run_test(|ctx| async move {
        let nats = NatsServer::start(&ctx, NatsMode::Core).await?;
        let client = nats.client().await?;
        body(&nats, client).await
    });
}

#[test]
fn publish_subscribe() {
    on_core_nats(async |_, client| {
        let mut sub = client.subscribe("greetings.>").await?;
        client.flush().await?;
        client.publish("greetings.en", "hello".into()).await?;
        client.flush().await?;
        let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await?
            .expect("a message");
        assert_eq!(msg.subject.as_str(), "greetings.en");
        assert_eq!(&msg.payload[..], b"hello");
        Ok(())
    });
}

#[test]
fn request_reply() {
    on_core_nats(async |nats, responder| {
        let mut requests = responder.subscribe("echo").await?;
        responder.flush().await?;
        tokio::spawn(async move {
            while let Some(req) = requests.next().await {
                let reply = req.reply.expect("a reply subject");
                let mut body = b"echo: ".to_vec();
                body.extend_from_slice(&req.payload);
                responder.publish(reply, body.into()).await.unwrap();
            }
        });
        let client = nats.client().await?;
        let answer = client.request("echo", "ping".into()).await?;
        assert_eq!(&answer.payload[..], b"echo: ping");
        Ok(())
    });
}

/// A file-backed stream `ORDERS` on `orders.>`.
async fn create_orders_stream(js: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    Ok(())
}

async fn publish_and_count(js: &async_nats::jetstream::Context, n: usize) -> anyhow::Result<()> {
    for i in 0..n {
        js.publish("orders.new", format!("order {i}").into())
            .await?
            .await?;
    }
    Ok(())
}

async fn consume_all(js: &async_nats::jetstream::Context) -> anyhow::Result<Vec<String>> {
    use async_nats::jetstream::consumer::pull;
    let stream = js.get_stream("ORDERS").await?;
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: None,
            ..Default::default()
        })
        .await?;
    let pending = stream.get_info().await?.state.messages as usize;
    let mut batch = consumer
        .fetch()
        .max_messages(pending)
        .expires(Duration::from_secs(2))
        .messages()
        .await?;
    let mut out = Vec::new();
    while let Some(msg) = batch.next().await {
        let msg = msg.map_err(|e| anyhow::anyhow!("{e}"))?;
        out.push(String::from_utf8_lossy(&msg.payload).into_owned());
    }
    Ok(out)
}

#[test]
fn jetstream_publish_then_consume() {
    run_test(|ctx| async move {
        let nats = NatsServer::start(&ctx, NatsMode::JetStream).await?;
        let js = nats.jetstream().await?;
        create_orders_stream(&js).await?;
        publish_and_count(&js, 5).await?;
        let got = consume_all(&js).await?;
        assert_eq!(
            got,
            (0..5).map(|i| format!("order {i}")).collect::<Vec<_>>()
        );
        Ok(())
    });
}

#[test]
fn jetstream_stream_survives_a_restart_on_the_same_port() {
    run_test(|ctx| async move {
        let mut nats = NatsServer::start(&ctx, NatsMode::JetStream).await?;
        let port = nats.port();
        {
            let js = nats.jetstream().await?;
            create_orders_stream(&js).await?;
            publish_and_count(&js, 3).await?;
        }
        nats.restart().await?;
        assert_eq!(nats.port(), port, "restarted on the same port");
        let js = nats.jetstream().await?;
        let got = consume_all(&js).await?;
        assert_eq!(
            got,
            vec!["order 0", "order 1", "order 2"],
            "the stream's messages were kept"
        );
        Ok(())
    });
}

#[test]
fn sigkill_then_start_again_serves() {
    run_test(|ctx| async move {
        let mut nats = NatsServer::start(&ctx, NatsMode::Core).await?;
        let pid = nats.process().expect("running").pid();
        nats.kill().await;
        assert!(
            testbed_harness::procinfo::stat(pid).is_none_or(|s| s.state == 'Z'),
            "the server is gone"
        );
        assert!(
            async_nats::connect(nats.url()).await.is_err(),
            "nobody serves after the kill"
        );
        nats.start_again().await?;
        let client = nats.client().await?;
        client.publish("after.crash", "ok".into()).await?;
        client.flush().await?;
        Ok(())
    });
}

#[test]
fn missing_binary_names_the_install_command() {
    run_test(|ctx| async move {
        // SAFETY: nextest runs each test in its own process; nothing else reads the environment concurrently.
        unsafe { std::env::set_var("TESTBED_NATS_SERVER", "/nonexistent/nats-server") };
        let err = NatsServer::start(&ctx, NatsMode::Core).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot start nats: TESTBED_NATS_SERVER=/nonexistent/nats-server does not name a file; unset it or point it at a nats-server 2.15.1"
        );
        unsafe { std::env::remove_var("TESTBED_NATS_SERVER") };
        Ok(())
    });
}

#[test]
fn a_server_that_exits_at_start_is_quoted() {
    run_test(|ctx| async move {
        // A wrapper that points nats-server at a configuration that is not there.
        let wrapper = ctx.dir().join("nats-server");
        let real = testbed_nats::locate()?.path;
        std::fs::write(&wrapper, format!("#!/bin/sh\nif [ \"$1\" = --version ]; then exec {} --version; fi\nexec {} -c /nonexistent/testbed.conf \"$@\"\n", real.display(), real.display()))?;
        std::fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        unsafe { std::env::set_var("TESTBED_NATS_SERVER", &wrapper) };
        let err = NatsServer::start(&ctx, NatsMode::Core).await.unwrap_err();
        testbed_tests::assert_early_exit(&err, "nats", 1, "/nonexistent/testbed.conf");
        Ok(())
    });
}
