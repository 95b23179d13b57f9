//! Many tests, each with its own NATS and etcd, in parallel: no port, key or
//! subject collides.

use std::time::Duration;

use futures::StreamExt;
use testbed_etcd::EtcdCluster;
use testbed_harness::{run_test, TestContext};
use testbed_nats::{NatsMode, NatsServer};

async fn isolated_pair(ctx: TestContext) -> anyhow::Result<()> {
    let nats = NatsServer::start(&ctx, NatsMode::JetStream).await?;
    let etcd = EtcdCluster::single(&ctx).await?;
    let me = ctx.namespace();
    let mut kv = etcd.client().await?;
    kv.put(format!("owner/{me}"), me.as_str(), None).await?;
    assert_eq!(
        etcd.keys("owner/").await?,
        vec![format!("owner/{me}")],
        "this etcd holds this test's key alone"
    );
    let client = nats.client().await?;
    let mut sub = client.subscribe("owner").await?;
    client.flush().await?;
    client.publish("owner", me.clone().into()).await?;
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await?
        .expect("message");
    assert_eq!(
        String::from_utf8_lossy(&msg.payload),
        me,
        "this server carried this test's message alone"
    );
    Ok(())
}

macro_rules! isolated_pairs {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            run_test(isolated_pair);
        }
    )*};
}

isolated_pairs!(
    pair_01, pair_02, pair_03, pair_04, pair_05, pair_06, pair_07, pair_08, pair_09, pair_10,
    pair_11, pair_12, pair_13, pair_14, pair_15, pair_16,
);
