//! Services shared by a run's tests: started once, joined by later users,
//! stopped by the last one.

use futures::StreamExt;
use testbed_etcd::SharedEtcd;
use testbed_harness::run_test;
use testbed_nats::SharedNats;

#[test]
fn shared_services_are_joined_and_namespaced() {
    run_test(|ctx| async move {
        let etcd = SharedEtcd::acquire().await?;
        let again = SharedEtcd::acquire().await?;
        assert_eq!(
            etcd.endpoints(),
            again.endpoints(),
            "a second user joins the same etcd"
        );
        let nats = SharedNats::acquire().await?;
        let ns = ctx.namespace();
        let mut kv = etcd.client().await?;
        kv.put(format!("{ns}/k"), "v", None).await?;
        let keys = testbed_etcd::keys_under(&mut kv, &format!("{ns}/")).await?;
        assert_eq!(keys, vec![format!("{ns}/k")]);
        // A second user of the shared NATS hears what the first publishes
        // on the test's namespace, and nothing of another namespace.
        let listener = SharedNats::acquire().await?.client().await?;
        let mut mine = listener.subscribe(format!("{ns}.>")).await?;
        listener.flush().await?;
        let talker = nats.client().await?;
        talker
            .publish(format!("{ns}-other.hello"), "not mine".into())
            .await?;
        talker.publish(format!("{ns}.hello"), "x".into()).await?;
        talker.flush().await?;
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), mine.next())
            .await?
            .expect("the subscription stays open");
        assert_eq!(
            (got.subject.as_str(), &got.payload[..]),
            (format!("{ns}.hello").as_str(), &b"x"[..])
        );
        Ok(())
    });
}

#[test]
fn last_user_stops_a_service_it_started() {
    run_test(|_ctx| async move {
        if std::env::var_os("ETCD_ENDPOINTS").is_some() {
            // Under `cargo xtask test` the run's etcd belongs to xtask, which
            // stops it after nextest; this test checks the xtask-less path
            // in its own run.
            unsafe { std::env::remove_var("ETCD_ENDPOINTS") };
        }
        unsafe {
            std::env::set_var(
                "TESTBED_RUN_ID",
                testbed_harness::RunId::fresh("shared").as_str(),
            )
        };
        let etcd = SharedEtcd::acquire().await?;
        let url = etcd.endpoints()[0].clone();
        let port: u16 = url.rsplit(':').next().unwrap().parse()?;
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "the shared etcd serves"
        );
        drop(etcd);
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "the last user stopped it"
        );
        Ok(())
    });
}
