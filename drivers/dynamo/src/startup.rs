//! How long a stack takes to come up and to go away, against the floor of
//! its critical path: each process started alone, with what it needs
//! already running, timed to its own readiness. NATS and etcd start
//! together, then the frontend and the workers together, so the floor of
//! a routed stack is `max(nats, etcd) + max(frontend, worker)` — unless
//! the CPU they need to get ready, alone, exceeds what the machine's cores
//! give in that time: no schedule beats the sum of that CPU time divided by
//! the cores. The floor is the larger of the two. The same code times
//! `cargo xtask up` and `cargo xtask bench startup`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use testbed_etcd::EtcdCluster;
use testbed_harness::{group, Check, Poll};
use testbed_nats::{NatsMode, NatsServer};

use crate::frontend::{Frontend, FrontendOptions};
use crate::planes::{Discovery, EventPlane, Planes, RequestPlane, Site};
use crate::topology::{ready_workers, Topology, TopologyBuilder};
use crate::{MockerOptions, TinyModel, Worker, WorkerSpec};

/// One process's start and stop, alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Alone {
    /// From spawn to its own readiness, in seconds.
    pub ready_s: f64,
    /// CPU time (user + system) its process group used to get ready.
    pub cpu_s: f64,
    /// From SIGTERM to the last member of its group gone, in seconds.
    pub stop_s: f64,
}

/// The floor: every process of a routed mocker stack, alone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Floor {
    /// The stack's workers (each costs a [`Floor::worker`]).
    pub workers: usize,
    /// CPU the processes already up spend on the first worker of a model
    /// (the frontend loads its model card and tokenizer, etcd serves the
    /// registration): paid once per model, not per worker.
    pub model_setup_cpu_s: f64,
    /// The machine's cores (available parallelism).
    pub cores: usize,
    /// `nats-server` (JetStream off) to its client port answering.
    pub nats: Alone,
    /// A one-member etcd to a client's status answer.
    pub etcd: Alone,
    /// `dynamo.frontend` (NATS and etcd up) to `/live`.
    pub frontend: Alone,
    /// A mocker (NATS, etcd and a live frontend up) to being counted by
    /// the frontend's `/v1/models/{model}/ready`.
    pub worker: Alone,
}

impl Floor {
    /// The floor to ready, in seconds: the larger of the critical path and
    /// the CPU bound.
    pub fn ready_s(&self) -> f64 {
        self.path_s().max(self.cpu_bound_s())
    }

    /// The critical path with every process alone.
    pub fn path_s(&self) -> f64 {
        self.nats.ready_s.max(self.etcd.ready_s) + self.frontend.ready_s.max(self.worker.ready_s)
    }

    /// The CPU every process needs to get ready, spread over the cores.
    pub fn cpu_bound_s(&self) -> f64 {
        let cpu = self.nats.cpu_s
            + self.etcd.cpu_s
            + self.frontend.cpu_s
            + self.model_setup_cpu_s
            + self.worker.cpu_s * self.workers as f64;
        cpu / self.cores.max(1) as f64
    }

    /// Stopping everything at once cannot beat its slowest process.
    pub fn stop_s(&self) -> f64 {
        [self.nats, self.etcd, self.frontend, self.worker]
            .iter()
            .map(|a| a.stop_s)
            .fold(0.0, f64::max)
    }
}

/// A whole stack's bring-up and teardown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct StackTimes {
    /// From the first spawn to the model ready with every worker.
    pub ready_s: f64,
    /// From the stop to every process gone.
    pub stop_s: f64,
}

/// The stack `cargo xtask up` starts by default and the bench measures:
/// NATS and etcd, a KV-routed frontend, `workers` mockers.
pub fn routed_stack(workers: usize) -> TopologyBuilder {
    TopologyBuilder::routed(workers, crate::RouterMode::Kv)
}

/// Measures the floor of a stack of `workers` once, in `dir`.
pub async fn measure_floor(dir: &Path, workers: usize) -> anyhow::Result<Floor> {
    let started = Instant::now();
    let mut nats = NatsServer::start_with(dir, "nats", NatsMode::Core, None).await?;
    let nats_ready = started.elapsed();
    let mut groups = vec![nats.process().map(|p| p.group()).context("NATS runs")?];
    let nats_cpu = cpu(&groups);
    // Each phase's CPU is its own process's; what the processes already up
    // spend meanwhile is counted separately, once.
    let started = Instant::now();
    let mut etcd = EtcdCluster::start_with(dir, "etcd", 1, None).await?;
    let etcd_ready = started.elapsed();
    let etcd_group = etcd
        .member_process(0)
        .map(|p| p.group())
        .context("etcd runs")?;
    let etcd_cpu = etcd_group.cpu_seconds();
    groups.push(etcd_group);

    let planes = Planes {
        discovery: Discovery::Etcd(etcd.endpoints()),
        request: RequestPlane::Tcp,
        event: EventPlane::Nats(nats.url()),
    };
    let site = Site {
        dir,
        planes: &planes,
        shared_state: None,
        hosts: None,
    };
    let options = FrontendOptions {
        router_mode: crate::RouterMode::Kv,
        ..FrontendOptions::default()
    };
    let python = Frontend::python()?;
    let started = Instant::now();
    let mut frontend = Frontend::spawn(&site, "frontend", &options, &python)?;
    frontend.wait_live().await?;
    let frontend_ready = started.elapsed();
    let frontend_cpu = frontend.process().group().cpu_seconds();
    groups.push(frontend.process().group());

    let model = TinyModel::ensure()?;
    let spec = WorkerSpec::Mocker(MockerOptions::default());
    let started = Instant::now();
    let worker = std::cell::RefCell::new(Worker::spawn(&site, "worker", &model, "tiny", &spec)?);
    let client = frontend.client().clone();
    let before_worker = cpu(&groups);
    let (counted_after, worker_cpu, model_setup_cpu) =
        Poll::new("the mocker to be counted by the frontend")
            .timeout(Duration::from_secs(60))
            .every(Duration::from_millis(5))
            .until(|| async {
                {
                    let mut worker = worker.borrow_mut();
                    if let Some(status) = worker.process().exit_status() {
                        return Err(anyhow::Error::from(worker.process().exited_early(status)));
                    }
                }
                let count = ready_workers(&client, "tiny").await;
                if count.as_ref().is_ok_and(|n| *n == 1) {
                    return Ok(Check::Done((
                        started.elapsed(),
                        worker.borrow().process_ref().group().cpu_seconds(),
                        cpu(&groups) - before_worker,
                    )));
                }
                Ok(Check::NotYet(format!("{count:?}")))
            })
            .await
            .with_context(|| format!("logs in {}", dir.display()))?;
    let worker_ready = counted_after;
    let mut worker = worker.into_inner();

    // Each stops alone, dependents first.
    let stop =
        |g: testbed_harness::ProcessGroup| group::stop_all(&[g], Duration::from_secs(10)).took;
    let worker_stop = stop(worker.detach());
    let frontend_stop = stop(frontend.detach());
    let etcd_stop = stop_etcd(etcd);
    let nats_stop = stop_nats(nats);
    let alone = |ready: Duration, cpu_s: f64, stop: Duration| Alone {
        ready_s: ready.as_secs_f64(),
        cpu_s,
        stop_s: stop.as_secs_f64(),
    };
    Ok(Floor {
        workers,
        model_setup_cpu_s: model_setup_cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        nats: alone(nats_ready, nats_cpu, nats_stop),
        etcd: alone(etcd_ready, etcd_cpu, etcd_stop),
        frontend: alone(frontend_ready, frontend_cpu, frontend_stop),
        worker: alone(worker_ready, worker_cpu, worker_stop),
    })
}

/// CPU time the live members of `groups` have used, in seconds.
fn cpu(groups: &[testbed_harness::ProcessGroup]) -> f64 {
    groups.iter().map(|g| g.cpu_seconds()).sum()
}

fn stop_etcd(etcd: EtcdCluster) -> Duration {
    let started = Instant::now();
    drop(etcd);
    started.elapsed()
}

fn stop_nats(nats: NatsServer) -> Duration {
    let started = Instant::now();
    drop(nats);
    started.elapsed()
}

/// Starts `builder`'s stack in `dir` and stops it, timing both.
pub async fn measure_stack(builder: TopologyBuilder, dir: &Path) -> anyhow::Result<StackTimes> {
    let started = Instant::now();
    let topology = builder.start_in(dir.to_owned(), None).await?;
    let ready = started.elapsed();
    let stop = stop(topology);
    Ok(StackTimes {
        ready_s: ready.as_secs_f64(),
        stop_s: stop.as_secs_f64(),
    })
}

/// Stops `topology`, returning how long that took.
pub fn stop(topology: Topology) -> Duration {
    let started = Instant::now();
    drop(topology);
    started.elapsed()
}

/// Where the latest `bench startup` keeps its medians, for `up` to compare
/// against.
pub fn latest_path() -> std::path::PathBuf {
    testbed_harness::Layout::from_env()
        .target_dir
        .join("testbed")
        .join("bench")
        .join("startup-latest.json")
}

/// The medians of a `bench startup` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Medians {
    /// The floor, component by component.
    pub floor: Floor,
    /// The stack.
    pub stack: StackTimes,
    /// Rounds measured.
    pub rounds: usize,
}

impl Medians {
    /// The medians of `samples` (floor, stack) pairs.
    pub fn of(samples: &[(Floor, StackTimes)]) -> Medians {
        let median = |f: &dyn Fn(&(Floor, StackTimes)) -> f64| {
            let mut v: Vec<f64> = samples.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            match v.len() {
                0 => 0.0,
                n if n % 2 == 1 => v[n / 2],
                n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
            }
        };
        let alone = |pick: fn(&Floor) -> Alone| Alone {
            ready_s: median(&|s| pick(&s.0).ready_s),
            cpu_s: median(&|s| pick(&s.0).cpu_s),
            stop_s: median(&|s| pick(&s.0).stop_s),
        };
        let first = samples.first().map(|s| s.0).unwrap_or_default();
        Medians {
            floor: Floor {
                workers: first.workers,
                model_setup_cpu_s: median(&|s| s.0.model_setup_cpu_s),
                cores: first.cores,
                nats: alone(|f| f.nats),
                etcd: alone(|f| f.etcd),
                frontend: alone(|f| f.frontend),
                worker: alone(|f| f.worker),
            },
            stack: StackTimes {
                ready_s: median(&|s| s.1.ready_s),
                stop_s: median(&|s| s.1.stop_s),
            },
            rounds: samples.len(),
        }
    }

    /// Keeps these as the latest (see [`latest_path`]); returns where.
    pub fn keep(&self) -> anyhow::Result<std::path::PathBuf> {
        let path = latest_path();
        testbed_harness::Layout::ensure_dir(path.parent().expect("a folder"))?;
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)?;
        Ok(path)
    }

    /// The latest saved medians, if any.
    pub fn latest() -> Option<Medians> {
        serde_json::from_slice(&std::fs::read(latest_path()).ok()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alone(ready_s: f64, cpu_s: f64, stop_s: f64) -> Alone {
        Alone {
            ready_s,
            cpu_s,
            stop_s,
        }
    }

    fn floor(cores: usize) -> Floor {
        Floor {
            workers: 2,
            model_setup_cpu_s: 0.1,
            cores,
            nats: alone(0.01, 0.01, 0.02),
            etcd: alone(0.08, 0.1, 0.05),
            frontend: alone(0.28, 0.3, 0.3),
            worker: alone(0.39, 0.4, 0.2),
        }
    }

    #[test]
    fn the_floor_is_the_critical_path_on_many_cores() {
        let floor = floor(16);
        assert!((floor.path_s() - 0.47).abs() < 1e-9);
        assert!((floor.ready_s() - 0.47).abs() < 1e-9);
        assert!((floor.stop_s() - 0.3).abs() < 1e-9);
    }

    #[test]
    fn the_floor_is_the_cpu_bound_on_few_cores() {
        // 0.01 + 0.1 + 0.3 + 0.1 + 2 × 0.4 = 1.31 CPU-s on 2 cores.
        let floor = floor(2);
        assert!((floor.cpu_bound_s() - 0.655).abs() < 1e-9);
        assert!((floor.ready_s() - 0.655).abs() < 1e-9);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        let sample = |r: f64| {
            (
                Floor::default(),
                StackTimes {
                    ready_s: r,
                    stop_s: 2.0 * r,
                },
            )
        };
        let odd = Medians::of(&[sample(3.0), sample(1.0), sample(2.0)]);
        assert_eq!(
            (odd.stack.ready_s, odd.stack.stop_s, odd.rounds),
            (2.0, 4.0, 3)
        );
        let even = Medians::of(&[sample(1.0), sample(4.0), sample(2.0), sample(3.0)]);
        assert_eq!(even.stack.ready_s, 2.5);
    }
}
