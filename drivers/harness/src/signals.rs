//! Teardown when the test process is told to stop (nextest's timeout sends
//! SIGTERM, Ctrl-C sends SIGINT): destructors do not run then, so the groups
//! this process started are tracked here and stopped by a signal thread.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::group::{self, ProcessGroup};
use crate::reaper;

/// Live groups of this process: pgid -> (group, record path).
static LIVE: Mutex<BTreeMap<u32, (ProcessGroup, PathBuf)>> = Mutex::new(BTreeMap::new());
static HANDLER: OnceLock<()> = OnceLock::new();
static MANUAL: AtomicBool = AtomicBool::new(false);

/// Declares that this process handles termination signals itself: no
/// handler is installed.
pub fn handle_signals_manually() {
    MANUAL.store(true, Ordering::SeqCst);
}

pub(crate) fn track(group: ProcessGroup, record: PathBuf) {
    LIVE.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(group.pgid, (group, record));
    install_handler();
}

/// Installs the signal thread (once), unless this process handles signals
/// itself: for anything of this process that must not outlive it.
pub(crate) fn install_handler() {
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
                crate::hosts::remove_live();
                std::process::exit(128 + sig);
            }
        })
        .expect("spawn the signal thread");
}

/// Stops every tracked group at once (see [`group::stop_all`]) and removes
/// their records.
pub fn terminate_all(grace: Duration) {
    let live: Vec<(ProcessGroup, PathBuf)> =
        std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()))
            .into_values()
            .collect();
    let groups: Vec<ProcessGroup> = live.iter().map(|(g, _)| *g).collect();
    group::stop_all(&groups, grace);
    for (_, record) in live {
        reaper::unregister(&record);
    }
}
