//! The results of a run: `results.json` (the spec, every point, and where
//! the numbers came from: pins, topology, git revision, host),
//! `results.csv` (one row per point) and the charts, in one folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::engine::BenchSpec;
use crate::stats::PointResult;

/// The version of the `results.json` format.
pub const SCHEMA: u32 = 1;

/// The machine the run ran on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Logical CPUs available to the process.
    pub cores: usize,
    /// The CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Total memory in bytes (`/proc/meminfo`).
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
}

/// Where the numbers of a run came from, as its caller records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The testbed's git revision.
    pub git_revision: Option<String>,
    /// The pinned versions (`nix/pins.toml`), by name.
    pub pins: BTreeMap<String, String>,
    /// The machine.
    pub host: HostInfo,
}

/// One run: what was measured, where, and the points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResults {
    /// The format version, [`SCHEMA`].
    pub schema: u32,
    /// The run's id (its folder name).
    pub run_id: String,
    /// When it started, seconds since the Unix epoch.
    pub started_unix_s: u64,
    /// What was asked.
    pub spec: BenchSpec,
    /// The deployment measured, in words (`2 mockers, kv router, speedup
    /// 10`, or the URL of an existing one).
    pub topology: String,
    /// The testbed's git revision.
    pub git_revision: Option<String>,
    /// The pinned versions (`nix/pins.toml`).
    pub pins: BTreeMap<String, String>,
    /// The machine.
    pub host: HostInfo,
    /// One result per load (concurrency or rate), in sweep order.
    pub points: Vec<PointResult>,
}

impl BenchResults {
    /// Results of `points` measured by `spec` now, where `provenance` says.
    pub fn new(
        run_id: &str,
        spec: BenchSpec,
        topology: &str,
        points: Vec<PointResult>,
        provenance: Provenance,
    ) -> BenchResults {
        BenchResults {
            schema: SCHEMA,
            run_id: run_id.to_owned(),
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            spec,
            topology: topology.to_owned(),
            git_revision: provenance.git_revision,
            pins: provenance.pins,
            host: provenance.host,
            points,
        }
    }

    /// Writes `results.json`, `results.csv` and the charts into `dir`
    /// (created); returns every file written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        let json = dir.join("results.json");
        std::fs::write(&json, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write {}", json.display()))?;
        let csv = dir.join("results.csv");
        std::fs::write(&csv, self.csv()).with_context(|| format!("write {}", csv.display()))?;
        let mut files = vec![json, csv];
        files.extend(crate::charts::write_charts(
            std::slice::from_ref(self),
            dir,
        )?);
        Ok(files)
    }

    /// Reads `results.json`, given the file or its folder.
    pub fn read(path: &Path) -> anyhow::Result<BenchResults> {
        let file = if path.is_dir() {
            path.join("results.json")
        } else {
            path.to_owned()
        };
        let text =
            std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
        let results: BenchResults =
            serde_json::from_str(&text).with_context(|| format!("parse {}", file.display()))?;
        anyhow::ensure!(
            results.schema == SCHEMA,
            "{} has results format {}, this testbed reads {SCHEMA}",
            file.display(),
            results.schema
        );
        Ok(results)
    }

    /// One row per point; latencies in ms, rates per second.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "concurrency,offered_rate,requests,completed,failed,duration_s,request_rate,output_token_rate,input_tokens_mean",
        );
        for m in ["ttft", "itl", "e2e"] {
            for s in ["mean", "p50", "p90", "p99"] {
                let _ = write!(out, ",{m}_{s}_ms");
            }
        }
        out.push_str(",errors\n");
        for p in &self.points {
            let _ = write!(
                out,
                "{},{},{},{},{},{:.4},{:.3},{:.3},{:.1}",
                p.concurrency,
                p.offered_rate.map_or(String::new(), |r| r.to_string()),
                p.requests,
                p.completed,
                p.failed,
                p.duration_s,
                p.request_rate,
                p.output_token_rate,
                p.input_tokens_mean
            );
            for s in [&p.ttft_ms, &p.itl_ms, &p.e2e_ms] {
                let _ = write!(out, ",{:.3},{:.3},{:.3},{:.3}", s.mean, s.p50, s.p90, s.p99);
            }
            let errors: Vec<String> = p.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, ",{}", errors.join(";"));
        }
        out
    }

    /// A table of the points for a terminal.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:>12} {:>9} {:>9} {:>10} {:>10} {:>10} {:>9} {:>9} {:>10} {:>10}  errors\n",
            "load",
            "req/s",
            "tok/s",
            "TTFT p50",
            "TTFT p99",
            "ITL p50",
            "ITL p99",
            "e2e p50",
            "e2e p99",
            "ok/sent"
        );
        for p in &self.points {
            let _ = writeln!(
                out,
                "{:>12} {:>9.1} {:>9.0} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>7.2}ms {:>7.1}ms {:>8.1}ms {:>10}  {}",
                p.load(),
                p.request_rate,
                p.output_token_rate,
                p.ttft_ms.p50,
                p.ttft_ms.p99,
                p.itl_ms.p50,
                p.itl_ms.p99,
                p.e2e_ms.p50,
                p.e2e_ms.p99,
                format!("{}/{}", p.completed, p.requests),
                if p.errors.is_empty() { "-".to_owned() } else { format!("{:?}", p.errors) }
            );
        }
        out
    }
}
