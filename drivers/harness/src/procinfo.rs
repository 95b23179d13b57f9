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
    /// CPU time used so far (user + system), in clock ticks.
    pub cpu_ticks: u64,
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
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
    })
}

/// Clock ticks per second (the unit of [`ProcStat`]'s times).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
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

/// A TCP socket in LISTEN state and the process holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The process.
    pub pid: u32,
    /// Its command line.
    pub command: String,
    /// The local address.
    pub addr: std::net::SocketAddr,
}

/// Every TCP listener (IPv4 and IPv6) held by one of `pids`: read from
/// each process's own `/proc/<pid>/net/tcp*` (its network namespace's
/// table: a process on a test host has its own) and matched to the process
/// through its socket inodes.
pub fn listeners(pids: &[u32]) -> Vec<Listener> {
    let mut out = Vec::new();
    for &pid in pids {
        let mut by_inode = std::collections::HashMap::new();
        for file in ["tcp", "tcp6"] {
            let Ok(text) = fs::read_to_string(format!("/proc/{pid}/net/{file}")) else {
                continue;
            };
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() < 10 || f[3] != "0A" {
                    continue;
                }
                if let Some(addr) = parse_proc_addr(f[1]) {
                    by_inode.insert(f[9].to_owned(), addr);
                }
            }
        }
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.filter_map(|e| e.ok()) {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if let Some(inode) = target
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
            {
                if let Some(addr) = by_inode.get(inode) {
                    out.push(Listener {
                        pid,
                        command: cmdline(pid).unwrap_or_default(),
                        addr: *addr,
                    });
                }
            }
        }
    }
    out.sort_by_key(|l| (l.pid, l.addr));
    out.dedup();
    out
}

/// Parses `0100007F:1F90` (IPv4) or the 32-hex-digit IPv6 form.
fn parse_proc_addr(s: &str) -> Option<std::net::SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip: std::net::IpAddr = match ip.len() {
        8 => std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.swap_bytes()).into(),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16)
                    .ok()?
                    .swap_bytes();
                chunk.copy_from_slice(&word.to_be_bytes());
            }
            std::net::Ipv6Addr::from(bytes).into()
        }
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

#[cfg(test)]
mod listener_tests {
    use super::*;

    #[test]
    fn proc_addresses_parse() {
        let cases = [
            ("loopback v4", "0100007F:1F90", "127.0.0.1:8080"),
            ("wildcard v4", "00000000:0050", "0.0.0.0:80"),
            (
                "wildcard v6",
                "00000000000000000000000000000000:1F90",
                "[::]:8080",
            ),
            (
                "loopback v6",
                "00000000000000000000000001000000:0016",
                "[::1]:22",
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(
                parse_proc_addr(input).map(|a| a.to_string()).as_deref(),
                Some(expected),
                "case {name}"
            );
        }
    }

    #[test]
    fn own_listener_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let found = listeners(&[std::process::id()]);
        assert!(found.iter().any(|x| x.addr == addr), "{found:?}");
    }
}
