//! A stand-in test process for the harness's own tests. It starts a process
//! tree through the harness (a shell leader and a `sleep` grandchild), prints
//! `pids <leader> <grandchild>`, then does what its mode says:
//!
//! - `hang`: waits to be killed (SIGKILL or SIGTERM from the test);
//! - `panic`: panics, as a failing test would;
//! - `ports N`: leases N ports, prints `ports p1 p2 …`, and holds them until
//!   its standard input closes;
//! - `stack` / `stack-on-hosts`: starts a whole Dynamo topology (NATS,
//!   etcd, frontend, two mockers; each on a host of its own), prints
//!   `pids …` of every process of it (and `hosts <bridge> <veths…>
//!   <namespaces…>`), and waits to be killed;
//! - `hosts-hang` / `hosts-panic`: creates two test hosts (`a`, `b`) with a
//!   `sleep` on `a`, prints `hosts <bridge> <netns a> <netns b> <sleep pid>`,
//!   then waits to be killed or panics;
//! - `connect ADDR:PORT MS`: one TCP connect with a timeout (run on a host
//!   with `ip netns exec`), printing `connected`, `refused`, `timed out` or
//!   the error, and exiting 0 only when connected.

use std::io::{BufRead, Write};
use std::time::Duration;

use testbed_harness::{ManagedProcess, PortLease, ProcessSpec};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ports") => {
            let n: usize = args
                .get(1)
                .and_then(|n| n.parse().ok())
                .expect("usage: ports N");
            let leases: Vec<PortLease> = (0..n)
                .map(|_| PortLease::allocate().expect("lease a port"))
                .collect();
            let list: Vec<String> = leases.iter().map(|l| l.port().to_string()).collect();
            println!("ports {}", list.join(" "));
            std::io::stdout().flush().unwrap();
            let _ = std::io::stdin().lock().lines().next();
        }
        Some(mode @ ("hang" | "panic")) => {
            let log_dir = std::env::var("FIXTURE_LOG_DIR").expect("FIXTURE_LOG_DIR");
            let tree = ManagedProcess::spawn(ProcessSpec::shell(
                "tree",
                "sleep 600 & echo grandchild $!; wait",
                &log_dir,
            ))
            .expect("spawn the tree");
            let grandchild = testbed_tests::grandchild_of(tree.log_path())
                .await
                .expect("the tree announces its grandchild");
            println!("pids {} {grandchild}", tree.pid());
            std::io::stdout().flush().unwrap();
            if mode == "panic" {
                panic!("fixture child panics with its tree running");
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        Some(mode @ ("stack" | "stack-on-hosts")) => {
            let ctx = testbed_harness::TestContext::new("fixture-stack").expect("artifact folder");
            let mut builder =
                testbed_dynamo::TopologyBuilder::routed(2, testbed_dynamo::RouterMode::Kv);
            if mode == "stack-on-hosts" {
                builder = builder.on_hosts();
            }
            let mut topology = builder.start(&ctx).await.expect("start the stack");
            let pids: Vec<String> = topology.pids().iter().map(u32::to_string).collect();
            println!("pids {}", pids.join(" "));
            if let Ok(hosts) = topology.hosts() {
                let record = hosts.record();
                println!(
                    "hosts {} {}",
                    record.bridge,
                    [record.links.clone(), record.netns.clone()]
                        .concat()
                        .join(" ")
                );
            }
            std::io::stdout().flush().unwrap();
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        Some(mode @ ("hosts-hang" | "hosts-panic")) => {
            let log_dir = std::env::var("FIXTURE_LOG_DIR").expect("FIXTURE_LOG_DIR");
            let network = testbed_harness::hosts::HostNetwork::create(
                std::path::Path::new(&log_dir),
                &["a", "b"],
            )
            .expect("create the hosts");
            let a = network.host("a").expect("host a").placement.clone();
            let sleeper = ManagedProcess::spawn(
                ProcessSpec::new("sleeper", "sleep", &log_dir)
                    .arg("600")
                    .placed(&a),
            )
            .expect("spawn the sleeper");
            let record = network.record();
            println!(
                "hosts {} {} {} {}",
                record.bridge,
                record.netns[0],
                record.netns[1],
                sleeper.pid()
            );
            std::io::stdout().flush().unwrap();
            if mode == "hosts-panic" {
                panic!("fixture child panics with its hosts up");
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        Some("connect") => {
            let (Some(addr), Some(ms)) = (
                args.get(1)
                    .and_then(|a| a.parse::<std::net::SocketAddr>().ok()),
                args.get(2).and_then(|m| m.parse::<u64>().ok()),
            ) else {
                eprintln!("usage: connect ADDR:PORT MILLISECONDS");
                std::process::exit(2);
            };
            match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(ms)) {
                Ok(_) => println!("connected"),
                Err(e) => {
                    println!(
                        "{}",
                        match e.kind() {
                            std::io::ErrorKind::ConnectionRefused => "refused".to_owned(),
                            std::io::ErrorKind::TimedOut => "timed out".to_owned(),
                            _ => e.to_string(),
                        }
                    );
                    std::process::exit(1);
                }
            }
        }
        _ => {
            eprintln!("usage: testbed-fixture-child hang|panic|ports N|stack|stack-on-hosts|hosts-hang|hosts-panic|connect ADDR:PORT MS");
            std::process::exit(2);
        }
    }
}
