//! Teardown when the test process is told to stop (nextest's timeout sends
//! SIGTERM, Ctrl-C sends SIGINT): destructors do not run then, so the groups
//! this process started are tracked here and terminated by a signal thread.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::{procinfo, reaper};

/// Live groups of this process: pgid -> (leader start ticks, record path).
static LIVE: Mutex<BTreeMap<u32, (u64, PathBuf)>> = Mutex::new(BTreeMap::new());
static HANDLER: OnceLock<()> = OnceLock::new();
static MANUAL: AtomicBool = AtomicBool::new(false);

/// Declares that this process handles termination signals itself (xtask
/// waits for nextest, then stops its services): no handler is installed.
pub fn handle_signals_manually() {
    MANUAL.store(true, Ordering::SeqCst);
}

pub(crate) fn track(pgid: u32, leader_start_ticks: u64, record: PathBuf) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pgid, (leader_start_ticks, record));
    if !MANUAL.load(Ordering::SeqCst) {
        HANDLER.get_or_init(install);
    }
}

pub(crate) fn untrack(pgid: u32) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).remove(&pgid);
}

fn install() {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) else {
        return;
    };
    std::thread::Builder::new()
        .name("testbed-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                eprintln!(
                    "testbed: received signal {sig}; stopping every process this test started"
                );
                terminate_all(Duration::from_secs(3));
                std::process::exit(128 + sig);
            }
        })
        .expect("spawn the signal thread");
}

/// SIGTERM to every tracked group, then SIGKILL to what is left after
/// `grace`; records are removed.
pub fn terminate_all(grace: Duration) {
    let live: Vec<(u32, (u64, PathBuf))> =
        std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .collect();
    for (pgid, _) in &live {
        crate::process::signal_group(*pgid, libc::SIGTERM);
        crate::process::signal_group(*pgid, libc::SIGCONT);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline
        && live
            .iter()
            .any(|(pgid, (start, _))| !procinfo::group_members(*pgid, *start).is_empty())
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (pgid, (start, record)) in &live {
        for member in procinfo::group_members(*pgid, *start) {
            // SAFETY: plain kill of a matched pid.
            unsafe { libc::kill(member.pid as i32, libc::SIGKILL) };
        }
        reaper::unregister(record);
    }
}
