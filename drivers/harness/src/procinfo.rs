//! Facts about processes read from `/proc`, so that a recorded pid is only
//! trusted while it still names the same process (pids are reused).

use std::fs;

/// A process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The process id.
    pub pid: u32,
    /// The parent's process id.
    pub ppid: u32,
    /// The process group id.
    pub pgid: u32,
    /// Start time in clock ticks after boot: with `pid`, a unique identity.
    pub start_ticks: u64,
    /// `Z` for a zombie, which holds no resources and cannot be killed.
    pub state: char,
}

/// Reads `/proc/<pid>/stat`; `None` when the process no longer exists.
pub fn stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after
    // the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// True while `pid` is alive and is the process that started at
/// `start_ticks` (not a later process that reused the pid).
pub fn is_same_process_alive(pid: u32, start_ticks: u64) -> bool {
    matches!(stat(pid), Some(s) if s.start_ticks == start_ticks && s.state != 'Z')
}

/// Every live (non-zombie) process on the machine.
pub fn all() -> Vec<ProcStat> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .filter(|s| s.state != 'Z')
        .collect()
}

/// Live members of process group `pgid` that started no earlier than
/// `not_before_ticks`: a group id reused by an unrelated, older process group
/// is never matched.
pub fn group_members(pgid: u32, not_before_ticks: u64) -> Vec<ProcStat> {
    all()
        .into_iter()
        .filter(|s| s.pgid == pgid && s.start_ticks >= not_before_ticks)
        .collect()
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let parts: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    Some(parts.join(" "))
}

/// This process's own identity.
pub fn me() -> ProcStat {
    stat(std::process::id()).expect("/proc/self/stat is readable")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_identified() {
        let me = me();
        assert_eq!(me.pid, std::process::id());
        assert!(is_same_process_alive(me.pid, me.start_ticks));
        assert!(
            !is_same_process_alive(me.pid, me.start_ticks + 1),
            "a different start time is a different process"
        );
    }
}
