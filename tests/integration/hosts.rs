//! Test hosts (network namespaces on a bridge): a service placed on one is
//! reached at its address and nowhere else, a cut drops traffic silently
//! and heals, and the namespaces and bridge go away with their test — on
//! drop, panic and SIGTERM, and through the reaper after a SIGKILL.

use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use testbed_harness::hosts::{Direction, HostNetwork};
use testbed_harness::{procinfo, reaper, run_test, Layout, PortLease, RunId};
use testbed_nats::{NatsMode, NatsServer};
use testbed_tests::{connect_from, link_exists, netns_list};

/// How long a connect may take before a cut link counts as dropping it.
const CUT_TIMEOUT: Duration = Duration::from_millis(1500);

/// A NATS server on host `on` of `network`, and its address.
async fn nats_on(
    ctx: &testbed_harness::TestContext,
    network: &HostNetwork,
    on: &str,
) -> anyhow::Result<(NatsServer, SocketAddr)> {
    let placement = network.host(on)?.placement.clone();
    let port = PortLease::allocate_for("nats")?;
    let server = NatsServer::start_on(
        ctx.dir(),
        "nats",
        NatsMode::Core,
        None,
        port,
        placement.clone(),
    )
    .await?;
    let addr = SocketAddr::from((placement.addr, server.port()));
    Ok((server, addr))
}

fn netns_of<'a>(network: &'a HostNetwork, name: &str) -> &'a str {
    network
        .host(name)
        .unwrap()
        .placement
        .netns
        .as_deref()
        .unwrap()
}

#[test]
fn a_service_on_a_host_is_reached_at_its_address_and_not_on_loopback() {
    run_test(|ctx| async move {
        let network = HostNetwork::create(ctx.dir(), &["server", "client"])?;
        let (mut server, addr) = nats_on(&ctx, &network, "server").await?;
        assert!(
            server.url().starts_with(&format!("nats://{}:", addr.ip())),
            "the URL names the host's address: {}",
            server.url()
        );
        server.client().await?; // from the test's namespace, over the bridge
        let client_ns = netns_of(&network, "client");
        let fixture = crate::fixture_child();
        assert_eq!(
            connect_from(&fixture, client_ns, addr, CUT_TIMEOUT)?,
            "connected"
        );
        let loopback = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        assert_eq!(
            connect_from(&fixture, client_ns, loopback, CUT_TIMEOUT)?,
            "refused",
            "another host's loopback is its own"
        );
        assert!(
            std::net::TcpStream::connect_timeout(&loopback, CUT_TIMEOUT).is_err(),
            "nothing listens on the test's loopback"
        );
        let pid = server.process().expect("running").pid();
        let listening: Vec<String> = procinfo::listeners(&[pid])
            .iter()
            .map(|l| l.addr.ip().to_string())
            .collect();
        assert_eq!(
            listening,
            vec![addr.ip().to_string()],
            "nats-server listens on its host's address only"
        );
        Ok(())
    });
}

#[test]
fn a_cut_drops_traffic_silently_both_ways_and_heal_restores_it() {
    run_test(|ctx| async move {
        let network = HostNetwork::create(ctx.dir(), &["server", "client"])?;
        let (server, addr) = nats_on(&ctx, &network, "server").await?;
        let server_ns = netns_of(&network, "server").to_owned();
        let client_ns = netns_of(&network, "client").to_owned();
        let fixture = crate::fixture_child();
        let (_client_server, client_addr) = nats_on(&ctx, &network, "client").await?;

        network.partition(&["client"], &["server"], Direction::Both)?;
        assert_eq!(network.cuts(), vec!["client -> server", "server -> client"]);
        assert_eq!(
            connect_from(&fixture, &client_ns, addr, CUT_TIMEOUT)?,
            "timed out",
            "a cut drops silently: no refusal, no unreachable"
        );
        assert_eq!(
            connect_from(&fixture, &server_ns, client_addr, CUT_TIMEOUT)?,
            "timed out"
        );
        server.client().await?; // the test's own side is not cut

        network.heal()?;
        assert!(network.cuts().is_empty());
        assert_eq!(
            connect_from(&fixture, &client_ns, addr, CUT_TIMEOUT)?,
            "connected"
        );

        network.partition(&["client"], &["server"], Direction::OneWay)?;
        assert_eq!(network.cuts(), vec!["client -> server"]);
        assert_eq!(
            connect_from(&fixture, &client_ns, addr, CUT_TIMEOUT)?,
            "timed out"
        );
        network.heal()?;

        let log = std::fs::read_to_string(network.log_path())?;
        let events: Vec<&str> = log
            .lines()
            .filter_map(|l| {
                let (at, what) = l.split_once(' ')?;
                at.parse::<f64>().ok()?;
                Some(what)
            })
            .filter(|w| w.starts_with("cut") || w.starts_with("heal"))
            .collect();
        assert_eq!(
            events,
            vec![
                "cut client -> server",
                "cut server -> client",
                "heal client -> server, server -> client",
                "cut client -> server",
                "heal client -> server",
            ],
            "every cut and heal is logged with its time:\n{log}"
        );
        Ok(())
    });
}

#[test]
fn a_dropped_network_leaves_no_namespace_or_link() {
    run_test(|ctx| async move {
        let network = HostNetwork::create(ctx.dir(), &["a", "b", "c"])?;
        let record = network.record().clone();
        assert!(record.netns.iter().all(|ns| netns_list().contains(ns)));
        assert!(link_exists(&record.bridge));
        assert!(record.links.iter().all(|l| link_exists(l)));
        drop(network);
        assert!(
            !link_exists(&record.bridge),
            "bridge {} removed",
            record.bridge
        );
        for link in &record.links {
            assert!(!link_exists(link), "veth {link} removed");
        }
        let left: Vec<String> = netns_list()
            .into_iter()
            .filter(|ns| record.netns.contains(ns))
            .collect();
        assert!(left.is_empty(), "namespaces left: {left:?}");
        Ok(())
    });
}

/// Starts the fixture child in `mode` (`hosts-hang`, `hosts-panic`) in run
/// `run`: its bridge, namespaces and the sleeper's pid.
fn fixture(
    ctx: &testbed_harness::TestContext,
    mode: &str,
    run: &RunId,
) -> anyhow::Result<(Child, String, Vec<String>, u32)> {
    let (child, mut out) =
        testbed_tests::start_fixture(&crate::fixture_child(), mode, run, ctx.dir())?;
    let line = out.next().transpose()?.unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["hosts", bridge, a, b, pid] => Ok((
            child,
            (*bridge).to_owned(),
            vec![(*a).to_owned(), (*b).to_owned()],
            pid.parse()?,
        )),
        _ => anyhow::bail!("fixture child printed {line:?}"),
    }
}

fn assert_gone(bridge: &str, netns: &[String]) {
    assert!(!link_exists(bridge), "bridge {bridge} left");
    for i in 0..netns.len() {
        let veth = format!("{bridge}h{i}");
        assert!(!link_exists(&veth), "veth {veth} left");
    }
    let listed = netns_list();
    let left: Vec<&String> = netns.iter().filter(|ns| listed.contains(ns)).collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
}

#[test]
fn panic_or_sigterm_of_the_test_process_removes_its_hosts() {
    run_test(|ctx| async move {
        let run = RunId::fresh("hosts-panic");
        let (mut child, bridge, netns, sleeper) = fixture(&ctx, "hosts-panic", &run)?;
        assert_eq!(child.wait()?.code(), Some(101), "the fixture panicked");
        testbed_tests::all_dead(&[sleeper], Duration::from_secs(2)).await?;
        assert_gone(&bridge, &netns);

        let run = RunId::fresh("hosts-sigterm");
        let (mut child, bridge, netns, sleeper) = fixture(&ctx, "hosts-hang", &run)?;
        assert!(link_exists(&bridge));
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert_eq!(child.wait()?.code(), Some(128 + libc::SIGTERM));
        testbed_tests::all_dead(&[sleeper], Duration::from_secs(2)).await?;
        assert_gone(&bridge, &netns);
        testbed_tests::assert_nothing_left_for_the_reaper(&run);
        Ok(())
    });
}

#[test]
fn hosts_of_a_sigkilled_test_process_are_removed_by_the_reaper() {
    run_test(|ctx| async move {
        let layout = Layout::from_env();
        let run = RunId::fresh("hosts-sigkill");
        let (mut child, bridge, netns, sleeper) = fixture(&ctx, "hosts-hang", &run)?;
        // SAFETY: plain kill of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait()?;
        testbed_tests::all_dead(&[sleeper], Duration::from_secs(2)).await?;
        assert!(
            link_exists(&bridge) && netns.iter().all(|ns| netns_list().contains(ns)),
            "checked from outside: the killed test's hosts outlived it"
        );
        reaper::reap_orphans(&layout);
        assert_gone(&bridge, &netns);
        testbed_tests::assert_nothing_left_for_the_reaper(&run);
        Ok(())
    });
}
