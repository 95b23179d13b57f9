//! Loopback ports that no two users on this machine hold at once: across the
//! many test processes nextest runs in parallel and across concurrent runs
//! from different clones.
//!
//! A lease is recorded in a machine-wide registry guarded by a file lock,
//! checked by a real bind before it is handed out, and released when the
//! lease is dropped. A lease whose owner died, or that outlived its expiry,
//! is taken back by the next allocation.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Seek, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::procinfo;

/// How long a lease lives at most, even if its owner still runs: a safety
/// net for an owner whose pid check cannot tell (a long-lived shell, say).
const LEASE_EXPIRY: Duration = Duration::from_secs(6 * 60 * 60);

/// An inclusive range of TCP ports to allocate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port of the range.
    pub first: u16,
    /// Last port of the range (inclusive).
    pub last: u16,
}

impl PortRange {
    /// The default range, 20000–32767: below Linux's ephemeral range
    /// (32768–60999) so that outgoing connections never take a leased port,
    /// and at most 32767 because Dynamo parses its worker system port as a
    /// signed 16-bit integer.
    pub const DEFAULT: PortRange = PortRange {
        first: 20000,
        last: 32767,
    };

    /// Number of ports in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Whether the range is empty (never true for a parsed range).
    pub fn is_empty(&self) -> bool {
        self.last < self.first
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

impl FromStr for PortRange {
    type Err = String;

    /// Accepts `FIRST-LAST` with 1024 <= FIRST <= LAST <= 65535.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            format!("invalid port range {s:?}: expected FIRST-LAST with 1024 <= FIRST <= LAST <= 65535, e.g. 20000-32767")
        };
        let (a, b) = s.split_once('-').ok_or_else(err)?;
        let first: u16 = a.trim().parse().map_err(|_| err())?;
        let last: u16 = b.trim().parse().map_err(|_| err())?;
        if first < 1024 || first > last {
            return Err(err());
        }
        Ok(PortRange { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// One held port. Dropping it releases the port in the registry.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
    registry_dir: PathBuf,
}

/// One registry entry: who holds a port and until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LeaseRecord {
    /// Pid of the holder.
    owner_pid: u32,
    /// Start time of the holder, to tell it from a later process with its pid.
    owner_start_ticks: u64,
    /// Unix seconds after which the lease is void.
    expires_unix: u64,
}

impl PortLease {
    /// Leases a free port from [`PortRange::DEFAULT`].
    pub fn allocate() -> anyhow::Result<PortLease> {
        Self::allocate_in(PortRange::DEFAULT)
    }

    /// Leases a free port from `range`, using the machine-wide registry of
    /// the current [`crate::Layout`].
    pub fn allocate_in(range: PortRange) -> anyhow::Result<PortLease> {
        let dir = crate::Layout::from_env().state_dir.join("ports");
        Self::allocate_with_registry(range, &dir)
    }

    /// Leases a free port from `range`, recording it in the registry held in
    /// `registry_dir`.
    pub fn allocate_with_registry(
        range: PortRange,
        registry_dir: &Path,
    ) -> anyhow::Result<PortLease> {
        crate::Layout::ensure_dir(registry_dir)?;
        let me = procinfo::me();
        let now = unix_now();
        let offset = start_offset(range);
        with_registry(registry_dir, |leases| {
            leases.retain(|_, r| r.expires_unix > now && procinfo::is_same_process_alive(r.owner_pid, r.owner_start_ticks));
            for i in 0..range.len() {
                let port = (u32::from(range.first) + (offset + i) % range.len()) as u16;
                if leases.contains_key(&port) || !bindable(port) {
                    continue;
                }
                leases.insert(
                    port,
                    LeaseRecord {
                        owner_pid: me.pid,
                        owner_start_ticks: me.start_ticks,
                        expires_unix: now + LEASE_EXPIRY.as_secs(),
                    },
                );
                return Ok(Some(port));
            }
            Ok(None)
        })?
        .map(|port| PortLease { port, registry_dir: registry_dir.to_owned() })
        .with_context(|| format!("no free port left in range {range}: {} ports leased or bound; free some or pass a wider range", range.len()))
    }

    /// Leases a port from the default range for the process `name`, in the
    /// error type process start-up uses.
    #[cfg(feature = "runtime")]
    pub fn allocate_for(name: &str) -> Result<PortLease, crate::ProcessError> {
        Self::allocate().map_err(|e| crate::ProcessError::NoPort {
            name: name.to_owned(),
            reason: format!("{e:#}"),
        })
    }

    /// The leased port number.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let port = self.port;
        let _ = with_registry(&self.registry_dir, |leases| {
            leases.remove(&port);
            Ok(())
        });
    }
}

/// Runs `f` on the registry while holding its exclusive file lock, then
/// writes the registry back.
fn with_registry<T>(
    dir: &Path,
    f: impl FnOnce(&mut BTreeMap<u16, LeaseRecord>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let path = dir.join("leases.json");
    let mut lock = crate::file_lock::open(&path)?;
    let mut guard = lock
        .write()
        .with_context(|| format!("cannot lock the port registry {}", path.display()))?;
    let mut text = String::new();
    guard.read_to_string(&mut text)?;
    // A registry damaged by a crash mid-write is rebuilt: leases are
    // re-checked by a real bind anyway.
    let mut leases: BTreeMap<u16, LeaseRecord> = serde_json::from_str(&text).unwrap_or_default();
    let out = f(&mut leases)?;
    let json = serde_json::to_string(&leases)?;
    guard.set_len(0)?;
    guard.rewind()?;
    guard.write_all(json.as_bytes())?;
    guard.flush()?;
    Ok(out)
}

/// True if nobody listens on `port` on loopback or the wildcard address.
fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Where a scan starts, spread by pid and time so that parallel allocators
/// rarely contend for the same first candidate.
fn start_offset(range: PortRange) -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (std::process::id().wrapping_mul(7919) ^ nanos) % range.len()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Reads the registry without changing it: `(port, owner pid)` of every
/// live lease. For `doctor` and tests.
pub fn live_leases(registry_dir: &Path) -> anyhow::Result<Vec<(u16, u32)>> {
    let path = registry_dir.join("leases.json");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = fs::read_to_string(&path)?;
    let leases: BTreeMap<u16, LeaseRecord> = serde_json::from_str(&text).unwrap_or_default();
    let now = unix_now();
    Ok(leases
        .into_iter()
        .filter(|(_, r)| {
            r.expires_unix > now
                && procinfo::is_same_process_alive(r.owner_pid, r.owner_start_ticks)
        })
        .map(|(p, r)| (p, r.owner_pid))
        .collect())
}

/// Fails unless `port` is within `range`: drivers call this for ports with a
/// hard limit (Dynamo's worker system port).
pub fn ensure_in_range(port: u16, range: PortRange, what: &str) -> anyhow::Result<()> {
    if !range.contains(port) {
        bail!("{what} port {port} is outside {range}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_parse_cases() {
        let expected_err = |s: &str| {
            Err(format!("invalid port range {s:?}: expected FIRST-LAST with 1024 <= FIRST <= LAST <= 65535, e.g. 20000-32767"))
        };
        let cases: Vec<(&str, &str, Result<PortRange, String>)> = vec![
            ("default form", "20000-32767", Ok(PortRange::DEFAULT)),
            (
                "single port",
                "30000-30000",
                Ok(PortRange {
                    first: 30000,
                    last: 30000,
                }),
            ),
            (
                "spaces",
                " 2000 - 3000 ",
                Ok(PortRange {
                    first: 2000,
                    last: 3000,
                }),
            ),
            ("reversed", "3000-2000", expected_err("3000-2000")),
            ("privileged", "80-90", expected_err("80-90")),
            ("too high", "60000-70000", expected_err("60000-70000")),
            ("no dash", "20000", expected_err("20000")),
        ];
        for (name, input, expected) in cases {
            assert_eq!(input.parse::<PortRange>(), expected, "case {name}");
        }
    }

    #[test]
    fn leases_are_distinct_and_released() {
        let dir = tempdir();
        let range = PortRange {
            first: 31000,
            last: 31063,
        };
        let leases: Vec<PortLease> = (0..32)
            .map(|_| PortLease::allocate_with_registry(range, &dir).unwrap())
            .collect();
        let mut ports: Vec<u16> = leases.iter().map(|l| l.port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 32, "no port handed out twice");
        assert!(ports.iter().all(|p| range.contains(*p)));
        assert_eq!(live_leases(&dir).unwrap().len(), 32);
        drop(leases);
        assert_eq!(
            live_leases(&dir).unwrap().len(),
            0,
            "dropping a lease releases it"
        );
    }

    #[test]
    fn bound_port_is_skipped() {
        let dir = tempdir();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = listener.local_addr().unwrap().port();
        let range = PortRange {
            first: taken,
            last: taken,
        };
        let err = PortLease::allocate_with_registry(range, &dir).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no free port left in range {taken}-{taken}: 1 ports leased or bound; free some or pass a wider range")
        );
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "testbed-ports-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
