//! Progress lines of a benchmark on stderr: a ticking count on a terminal,
//! a line every 10 s otherwise, and each point's summary when it ends.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use testbed_load::{Observer, PointResult};

/// Prints progress as the engine reports it.
pub struct Printer {
    started: Instant,
    /// Milliseconds after `started` of the last line printed.
    last_ms: AtomicU64,
    tty: bool,
}

impl Printer {
    /// A printer for this terminal (or log).
    pub fn new() -> Printer {
        Printer {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            tty: std::io::stderr().is_terminal(),
        }
    }
}

impl Observer for Printer {
    fn finished(&self, done: usize, total: Option<usize>) {
        let now = self.started.elapsed().as_millis() as u64;
        let every = if self.tty { 1_000 } else { 10_000 };
        let last = self.last_ms.load(Ordering::Relaxed);
        if now < last + every
            || self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let total = total.map_or(String::new(), |t| format!("/{t}"));
        if self.tty {
            eprint!("\rbench: {done}{total} requests …");
        } else {
            eprintln!("bench: {done}{total} requests …");
        }
    }

    fn point(&self, p: &PointResult) {
        let clear = if self.tty { "\r\x1b[2K" } else { "" };
        eprintln!(
            "{clear}bench: {}: {}/{} ok in {:.2} s, {:.1} req/s, {:.0} tok/s, TTFT p50 {:.2} ms, ITL p50 {:.2} ms{}",
            p.load(),
            p.completed,
            p.requests,
            p.duration_s,
            p.request_rate,
            p.output_token_rate,
            p.ttft_ms.p50,
            p.itl_ms.p50,
            if p.errors.is_empty() { String::new() } else { format!(", errors {:?}", p.errors) }
        );
    }

    fn round(&self, round: usize, rounds: usize) {
        eprintln!("bench: round {round}/{rounds}");
    }
}
