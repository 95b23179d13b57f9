//! The workload a bench's flags ask for, made with the tiny model's
//! tokenizer.

use std::sync::Arc;

use testbed_load::mooncake::{self, Replay};
use testbed_load::{Job, PromptSet, Sessions, SharedPrefix, TokenCounter, Workload};

use crate::flags::{BenchRunFlags, WorkloadKind};

/// What a run sends: a workload for the sweep's points, or a trace's jobs
/// (each at its own time), and the workload in words.
pub enum Made {
    /// Jobs for a sweep (closed loop or Poisson rates).
    Sweep(Workload, String),
    /// A trace replay: one point.
    Trace(Vec<Job>, String),
}

/// Makes the workload of `flags` for `jobs` requests.
pub fn make(
    flags: &BenchRunFlags,
    counter: &dyn TokenCounter,
    jobs: usize,
) -> anyhow::Result<Made> {
    let w = &flags.workload;
    Ok(match w.kind {
        WorkloadKind::Uniform => {
            println!(
                "bench: making {jobs} prompts of exactly {} tokens …",
                flags.isl
            );
            Made::Sweep(
                Workload::Prompts(Arc::new(PromptSet::generate(counter, flags.isl, jobs, 1)?)),
                format!("uniform {} tokens", flags.isl),
            )
        }
        WorkloadKind::SharedPrefix => {
            anyhow::ensure!(
                (0.0..=1.0).contains(&w.prefix_ratio),
                "--prefix-ratio is a share between 0 and 1, got {}",
                w.prefix_ratio
            );
            let prefix = (flags.isl as f64 * w.prefix_ratio).round() as usize;
            let shape = SharedPrefix {
                groups: w.prefix_groups,
                prefix_tokens: prefix,
                suffix_tokens: flags.isl - prefix,
                requests: jobs,
                seed: 1,
            };
            println!(
                "bench: making {jobs} prompts in {} groups sharing {prefix} of {} tokens …",
                shape.groups, flags.isl
            );
            let made = shape
                .jobs(counter)?
                .into_iter()
                .map(|(_, job)| job)
                .collect();
            Made::Sweep(
                Workload::Jobs(Arc::new(made)),
                format!(
                    "shared prefix: {} groups, {prefix} of {} tokens shared",
                    shape.groups, flags.isl
                ),
            )
        }
        WorkloadKind::Sessions => {
            let sessions = jobs.div_ceil(w.turns.max(1));
            println!(
                "bench: making {sessions} sessions of {} turns of {} tokens …",
                w.turns, flags.isl
            );
            let shape = Sessions {
                sessions,
                turns: w.turns,
                tokens_per_turn: flags.isl,
                seed: 1,
            };
            Made::Sweep(
                Workload::Jobs(Arc::new(shape.jobs(counter)?)),
                format!("sessions: {} turns of {} tokens", w.turns, flags.isl),
            )
        }
        WorkloadKind::Trace => {
            let path = w.trace.as_ref().ok_or_else(|| {
                anyhow::anyhow!("--workload trace needs --trace FILE (Mooncake JSONL)")
            })?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read the trace {}: {e}", path.display()))?;
            let entries = mooncake::parse(&text)?;
            let replay = Replay {
                trace_block_tokens: mooncake::MOONCAKE_BLOCK_TOKENS,
                block_tokens: w.trace_block_tokens,
                speed: w.trace_speed,
            };
            println!(
                "bench: making {} requests of the trace {} ({} tokens a block, speed {}) …",
                entries.len(),
                path.display(),
                replay.block_tokens,
                replay.speed
            );
            Made::Trace(
                replay.jobs(&entries, counter)?,
                format!("trace {} at speed {}", path.display(), replay.speed),
            )
        }
    })
}
