//! Port leases across processes: many allocators at once, no duplicate.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use testbed_harness::{run_test, PortRange};

#[test]
fn two_hundred_leases_from_eight_processes_are_distinct() {
    run_test(|_ctx| async move {
        let mut children = Vec::new();
        for _ in 0..8 {
            children.push(
                Command::new(crate::fixture_child())
                    .args(["ports", "25"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .spawn()?,
            );
        }
        let mut ports = Vec::new();
        for child in &mut children {
            let mut line = String::new();
            BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
            let got: Vec<u16> = line
                .split_whitespace()
                .skip(1)
                .map(|p| p.parse())
                .collect::<Result<_, _>>()?;
            anyhow::ensure!(got.len() == 25, "a child printed {line:?}");
            ports.extend(got);
        }
        // All 200 leases are held at this point: the children wait on stdin.
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 200, "duplicates among {ports:?}");
        assert!(ports.iter().all(|p| PortRange::DEFAULT.contains(*p)));
        for mut child in children {
            drop(child.stdin.take());
            assert!(child.wait()?.success());
        }
        Ok(())
    });
}
