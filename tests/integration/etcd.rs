//! The real etcd: keys, watches, leases, a 3-member cluster under member
//! loss, and start-up failures.

use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use testbed_etcd::{EtcdCluster, KeyEvent, KeyWatch};
use testbed_harness::run_test;

/// Runs a test against a single etcd node of its own (up until the body
/// returns), with a client.
fn on_single_etcd(body: impl AsyncFnOnce(&EtcdCluster, etcd_client::Client) -> anyhow::Result<()>) {
    run_test(|ctx| async move {
        let etcd = EtcdCluster::single(&ctx).await?;
        let client = etcd.client().await?;
        body(&etcd, client).await
    });
}

#[test]
fn put_get_and_list() {
    on_single_etcd(async |etcd, mut client| {
        client.put("v1/a/1", "one", None).await?;
        client.put("v1/a/2", "two", None).await?;
        client.put("v1/b/1", "other", None).await?;
        let resp = client.get("v1/a/1", None).await?;
        assert_eq!(resp.kvs()[0].value_str()?, "one");
        assert_eq!(etcd.keys("v1/a/").await?, vec!["v1/a/1", "v1/a/2"]);
        Ok(())
    });
}

#[test]
fn watch_sees_put_and_delete() {
    on_single_etcd(async |etcd, mut client| {
        let mut watch = KeyWatch::new(&mut client, "svc/").await?;
        let mut writer = etcd.client().await?;
        writer.put("svc/worker-1", "up", None).await?;
        assert_eq!(
            watch.next(Duration::from_secs(5)).await?,
            KeyEvent::Put("svc/worker-1".into())
        );
        writer.delete("svc/worker-1", None).await?;
        assert_eq!(
            watch.next(Duration::from_secs(5)).await?,
            KeyEvent::Delete("svc/worker-1".into())
        );
        Ok(())
    });
}

#[test]
fn lease_expiry_removes_the_key() {
    on_single_etcd(async |etcd, mut client| {
        let lease = client.lease_grant(1, None).await?;
        let mut watch = KeyWatch::new(&mut client, "leased/").await?;
        client
            .put(
                "leased/k",
                "v",
                Some(etcd_client::PutOptions::new().with_lease(lease.id())),
            )
            .await?;
        assert_eq!(
            watch.next(Duration::from_secs(5)).await?,
            KeyEvent::Put("leased/k".into())
        );
        // Not kept alive: etcd deletes it once the 1 s TTL runs out.
        assert_eq!(
            watch.next(Duration::from_secs(10)).await?,
            KeyEvent::Delete("leased/k".into())
        );
        assert!(etcd.keys("leased/").await?.is_empty());
        Ok(())
    });
}

#[test]
fn three_member_cluster_serves_with_one_member_down_and_it_rejoins() {
    run_test(|ctx| async move {
        let mut etcd = EtcdCluster::cluster(&ctx, 3).await?;
        let mut client = etcd.client().await?;
        client.put("ha/before", "1", None).await?;
        for down in 0..3 {
            etcd.kill_member(down).await;
            let up = (down + 1) % 3;
            let mut survivor = etcd.member_client(up).await?;
            let key = format!("ha/while-{down}-down");
            // A proposal in flight to a killed leader times out: clients
            // retry, and once the survivors elect a leader (about one
            // election timeout) writes succeed again.
            let put = || {
                let mut c = survivor.clone();
                let key = key.clone();
                async move { c.put(key, "ok", None).await }
            };
            put.retry(
                ConstantBuilder::default()
                    .with_delay(Duration::from_millis(200))
                    .with_max_times(50),
            )
            .await?;
            assert_eq!(survivor.get(key.as_str(), None).await?.kvs().len(), 1);
            etcd.start_member(down).await?;
            let mut rejoined = etcd.member_client(down).await?;
            // Linearizable read through the rejoined member: it has caught up.
            let got =
                tokio::time::timeout(Duration::from_secs(10), rejoined.get(key.as_str(), None))
                    .await??;
            assert_eq!(
                got.kvs().len(),
                1,
                "member {down} rejoined and sees the write made while it was down"
            );
        }
        assert_eq!(etcd.keys("ha/").await?.len(), 4);
        Ok(())
    });
}

#[test]
fn unusable_data_dir_is_quoted_and_left_alone() {
    run_test(|ctx| async move {
        // A file where the member's data folder should be.
        let blocker = ctx.dir().join("etcd-data");
        std::fs::write(&blocker, "precious")?;
        let err = EtcdCluster::single(&ctx).await.unwrap_err();
        testbed_tests::assert_early_exit(&err, "etcd", 1, "etcd-data");
        assert_eq!(
            std::fs::read_to_string(&blocker)?,
            "precious",
            "nothing else was removed"
        );
        Ok(())
    });
}

/// A new cluster in a directory an earlier one used (a rerun under the same
/// run id, a retried bring-up) starts empty: the earlier cluster's keys, and
/// with them its workers' leased registrations, do not come back.
#[test]
fn a_new_cluster_in_a_used_directory_starts_empty() {
    run_test(|ctx| async move {
        let dir = ctx.subdir("etcd")?;
        {
            let mut first = EtcdCluster::start_with(&dir, "etcd", 1, None).await?;
            first
                .client()
                .await?
                .put("v1/instances/stale", "x", None)
                .await?;
            first.stop_member(0).await;
        }
        assert!(
            dir.join("etcd-data").exists(),
            "the first cluster left its data"
        );
        let second = EtcdCluster::start_with(&dir, "etcd", 1, None).await?;
        assert_eq!(second.keys("v1/").await?, Vec::<String>::new());
        Ok(())
    });
}
