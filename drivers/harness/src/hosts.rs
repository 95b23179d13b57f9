//! Hosts: Linux network namespaces on one private bridge, so that the
//! processes of a topology talk over their own addresses instead of one
//! loopback, and the links between them can be cut ([`HostNetwork::partition`])
//! and healed.
//!
//! A [`HostNetwork`] belongs to its run like a process group does: it is
//! recorded under `<state>/runs/<run-id>/hosts/` while it lives, removed
//! when it drops (a panic included) or when the test process is told to
//! stop, and removed by the reaper when its owner died without either
//! (SIGKILL). Creating one needs `CAP_NET_ADMIN` and iproute2's `ip`
//! ([`can_create`] says why not).
//!
//! A cut does not remove a link: the cut side's neighbour entry for the
//! other side is pinned to a MAC address no host has, so its frames are
//! flooded by the bridge and dropped by every host — silently, like a
//! partition in a real network (senders time out; nothing answers
//! "unreachable"). The kernel here has no `netem`, so slow or lossy links
//! are not offered.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use crate::{procinfo, Layout, RunId};

/// The private range hosts get addresses in: `10.213.X.0/24`, one `X` per
/// live network.
const FIRST_OCTETS: [u8; 2] = [10, 213];

/// The MAC address a cut pins the other side's address to: locally
/// administered, owned by no interface.
const NOWHERE_MAC: &str = "02:00:00:00:00:00";

/// Where a process lives and listens: an address, and the network
/// namespace that owns it (none: the test's own namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The address it binds and others reach it on.
    pub addr: Ipv4Addr,
    /// The namespace it runs in (`ip netns exec`), if not the test's own.
    pub netns: Option<String>,
}

impl Placement {
    /// The test's own loopback: where every process lives unless a
    /// topology places it on a host.
    pub fn loopback() -> Placement {
        Placement {
            addr: Ipv4Addr::LOCALHOST,
            netns: None,
        }
    }

    /// The address as text, for URLs and flags.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl Default for Placement {
    fn default() -> Self {
        Placement::loopback()
    }
}

/// One host of a [`HostNetwork`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Its name in the topology (`nats`, `etcd-0`, `frontend`, `worker-1`).
    pub name: String,
    /// Its address and namespace.
    pub placement: Placement,
}

/// Which ways a cut drops traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Nothing gets from either side to the other.
    Both,
    /// Nothing gets from the first side to the second; the second still
    /// reaches the first (so a TCP connection opened either way fails: its
    /// answers are dropped).
    OneWay,
}

/// A cut, as the network log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cut {
    /// The host whose frames are dropped.
    from: String,
    /// The host they were addressed to.
    to: String,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}", self.from, self.to)
    }
}

/// What the registry knows of a live network, to remove it when its owner
/// is gone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NetworkRecord {
    /// The bridge in the test's namespace.
    pub bridge: String,
    /// Every host's namespace.
    pub netns: Vec<String>,
    /// The test-side end of every host's veth pair.
    pub links: Vec<String>,
    /// The process that created it.
    pub owner_pid: u32,
    /// The owner's start time, to tell it from a later process with its pid.
    pub owner_start_ticks: u64,
}

impl NetworkRecord {
    /// Deletes the veth pairs, the namespaces and the bridge; what is
    /// already gone is not an error. (A namespace's veth would go with it
    /// only once the namespace is freed, which its sockets still closing —
    /// FIN or TIME_WAIT towards a peer that is gone — delay by minutes.)
    fn remove(&self) -> Vec<String> {
        let mut removed = Vec::new();
        for link in &self.links {
            if ip(&["link", "delete", link]).is_ok() {
                removed.push(format!("veth {link}"));
            }
        }
        for ns in &self.netns {
            if ip(&["netns", "delete", ns]).is_ok() {
                removed.push(format!("netns {ns}"));
            }
        }
        if ip(&["link", "delete", &self.bridge]).is_ok() {
            removed.push(format!("bridge {}", self.bridge));
        }
        removed
    }
}

/// Networks of this process, removed by the signal thread on SIGTERM /
/// SIGINT (destructors do not run then).
static LIVE: Mutex<Vec<(NetworkRecord, PathBuf)>> = Mutex::new(Vec::new());

/// N hosts on a private bridge. The test's own namespace is on the bridge
/// too, at [`HostNetwork::gateway`], so the test reaches every host.
#[derive(Debug)]
pub struct HostNetwork {
    id: String,
    gateway: Ipv4Addr,
    hosts: Vec<Host>,
    cuts: Mutex<Vec<Cut>>,
    log: PathBuf,
    record: NetworkRecord,
    record_path: PathBuf,
}

impl HostNetwork {
    /// Creates one host per name, logging what it does (and every cut and
    /// heal, with a timestamp) to `<dir>/network.log`.
    pub fn create(dir: &Path, names: &[&str]) -> anyhow::Result<HostNetwork> {
        can_create().map_err(|why| anyhow::anyhow!("cannot create test hosts: {why}"))?;
        let mut unique = names.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != names.len() || names.is_empty() {
            bail!("host names must be distinct and at least one; got {names:?}");
        }
        let layout = Layout::from_env();
        let run_id = RunId::current();
        crate::reaper::reap_orphans(&layout);
        let id = unique_id();
        let bridge = format!("tb{id}");
        let me = procinfo::me();
        let record = NetworkRecord {
            bridge: bridge.clone(),
            netns: names.iter().map(|n| format!("tb{id}-{n}")).collect(),
            links: (0..names.len()).map(|i| format!("tb{id}h{i}")).collect(),
            owner_pid: me.pid,
            owner_start_ticks: me.start_ticks,
        };
        let record_path = records_dir(&layout, &run_id).join(format!("{id}.json"));
        Layout::ensure_dir(record_path.parent().expect("a record has a folder"))?;
        // Recorded before anything exists, so that a kill in the middle of
        // the set-up leaves nothing the reaper does not know of.
        fs::write(&record_path, serde_json::to_vec_pretty(&record)?)?;
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((record.clone(), record_path.clone()));
        #[cfg(feature = "runtime")]
        crate::signals::install_handler();
        let mut network = HostNetwork {
            id,
            gateway: Ipv4Addr::UNSPECIFIED,
            hosts: Vec::new(),
            cuts: Mutex::new(Vec::new()),
            log: dir.join("network.log"),
            record,
            record_path,
        };
        network.build(&layout, names)?;
        Ok(network)
    }

    fn build(&mut self, layout: &Layout, names: &[&str]) -> anyhow::Result<()> {
        let bridge = self.record.bridge.clone();
        // The subnet is chosen and claimed (the bridge gets its address)
        // under one lock, so that two tests never pick the same one.
        let lock_path = layout.state_dir.join("hosts.lock");
        Layout::ensure_dir(&layout.state_dir)?;
        let mut lock = crate::file_lock::open(&lock_path)?;
        let subnet = {
            let _guard = lock.write().context("lock the host subnets")?;
            let subnet = free_subnet()?;
            self.gateway = Ipv4Addr::new(FIRST_OCTETS[0], FIRST_OCTETS[1], subnet, 254);
            ip(&["link", "add", &bridge, "type", "bridge"])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/24", self.gateway),
                "dev",
                &bridge,
            ])?;
            ip(&["link", "set", &bridge, "up"])?;
            subnet
        };
        self.note(&format!("bridge {bridge} {}/24", self.gateway));
        for (i, name) in names.iter().enumerate() {
            let netns = self.record.netns[i].clone();
            let addr = Ipv4Addr::new(FIRST_OCTETS[0], FIRST_OCTETS[1], subnet, i as u8 + 1);
            let outside = self.record.links[i].clone();
            ip(&["netns", "add", &netns])?;
            ip(&[
                "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ])?;
            ip(&["link", "set", &outside, "master", &bridge, "up"])?;
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &netns, "link", "set", "lo", "up"])?;
            self.note(&format!("host {name} {addr} (netns {netns})"));
            self.hosts.push(Host {
                name: (*name).to_owned(),
                placement: Placement {
                    addr,
                    netns: Some(netns),
                },
            });
        }
        Ok(())
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> anyhow::Result<&Host> {
        self.hosts.iter().find(|h| h.name == name).with_context(|| {
            let names: Vec<&str> = self.hosts.iter().map(|h| h.name.as_str()).collect();
            format!("no host {name:?}: this network has {}", names.join(", "))
        })
    }

    /// Every host, in creation order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The test's own address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The log of the network's set-up, cuts and heals.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The namespaces and the bridge, as the registry records them.
    pub fn record(&self) -> &NetworkRecord {
        &self.record
    }

    /// Cuts every host of `a` off from every host of `b` (see
    /// [`Direction`]). Cuts add up until [`HostNetwork::heal`].
    pub fn partition(&self, a: &[&str], b: &[&str], direction: Direction) -> anyhow::Result<()> {
        let mut cuts = Vec::new();
        for x in a {
            for y in b {
                if x == y {
                    bail!("cannot cut {x:?} off from itself");
                }
                cuts.push(Cut {
                    from: (*x).to_owned(),
                    to: (*y).to_owned(),
                });
                if direction == Direction::Both {
                    cuts.push(Cut {
                        from: (*y).to_owned(),
                        to: (*x).to_owned(),
                    });
                }
            }
        }
        for cut in cuts {
            self.neighbour(
                &cut,
                &["replace"],
                &["lladdr", NOWHERE_MAC, "nud", "permanent"],
            )?;
            self.note(&format!("cut {cut}"));
            self.cuts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(cut);
        }
        Ok(())
    }

    /// Restores every cut link.
    pub fn heal(&self) -> anyhow::Result<()> {
        let cuts = std::mem::take(&mut *self.cuts.lock().unwrap_or_else(|e| e.into_inner()));
        for cut in &cuts {
            self.neighbour(cut, &["delete"], &[])?;
        }
        let healed: Vec<String> = cuts.iter().map(Cut::to_string).collect();
        self.note(&format!("heal {}", healed.join(", ")));
        Ok(())
    }

    /// `ip -n FROM neigh OP TO-ADDRESS dev eth0 REST…`: the cut side's
    /// neighbour entry for the other side.
    fn neighbour(&self, cut: &Cut, op: &[&str], rest: &[&str]) -> anyhow::Result<()> {
        let from = self.host(&cut.from)?;
        let to = self.host(&cut.to)?.placement.host();
        let netns = from
            .placement
            .netns
            .as_deref()
            .expect("a host has a namespace");
        let args: Vec<&str> = [
            &["-n", netns, "neigh"][..],
            op,
            &[to.as_str(), "dev", "eth0"],
            rest,
        ]
        .concat();
        ip(&args).map(drop)
    }

    /// The cuts in force, as `from -> to`.
    pub fn cuts(&self) -> Vec<String> {
        self.cuts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(Cut::to_string)
            .collect()
    }

    fn note(&self, line: &str) {
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
        {
            let _ = writeln!(f, "{at:.3} {line}");
        }
        #[cfg(feature = "runtime")]
        tracing::info!(network = %self.id, "{line}");
    }
}

impl Drop for HostNetwork {
    fn drop(&mut self) {
        self.record.remove();
        let _ = fs::remove_file(&self.record_path);
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(_, path)| path != &self.record_path);
        self.note(&format!("removed network {}", self.id));
    }
}

/// Whether this process may create hosts: `Ok`, or why not and what to do.
pub fn can_create() -> Result<(), String> {
    if ip_binary().is_none() {
        return Err("iproute2's `ip` is not on PATH, /usr/sbin or /sbin: install iproute2".into());
    }
    if !has_net_admin() {
        return Err("this process lacks CAP_NET_ADMIN (network namespaces and a bridge need it): run as root, or give the test binary the capability".into());
    }
    Ok(())
}

fn has_net_admin() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// iproute2's `ip`: on `PATH`, else where distributions put it (a
/// non-root `PATH` often lacks the sbin folders).
pub fn ip_binary() -> Option<PathBuf> {
    crate::tool::which("ip").or_else(|| {
        ["/usr/sbin/ip", "/sbin/ip"]
            .map(PathBuf::from)
            .into_iter()
            .find(|p| p.is_file())
    })
}

/// Runs `ip ARGS…`; its standard output, or an error with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<String> {
    let binary = ip_binary().context("iproute2's `ip` is missing: install iproute2")?;
    let output = Command::new(&binary)
        .args(args)
        .output()
        .with_context(|| format!("run ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The third octet of a `10.213.X.0/24` no interface of this namespace has
/// an address in.
fn free_subnet() -> anyhow::Result<u8> {
    let listed = ip(&["-o", "-4", "addr", "show"])?;
    let prefix = format!("{}.{}.", FIRST_OCTETS[0], FIRST_OCTETS[1]);
    let taken: Vec<u8> = listed
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(&prefix))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect();
    (1..=250)
        .find(|x| !taken.contains(x))
        .context("every 10.213.X.0/24 subnet is in use: remove stale `tb…` bridges (`ip -br link`)")
}

fn unique_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    // Interface names hold 15 bytes: `tb` + 6 + `h` + index.
    crate::hash::short_hex(format!("{}-{n}-{nanos}", std::process::id()).as_bytes(), 3)
}

fn records_dir(layout: &Layout, run_id: &RunId) -> PathBuf {
    layout
        .state_dir
        .join("runs")
        .join(run_id.as_str())
        .join("hosts")
}

/// Removes every network of `run_dir` (a run's folder in the registry)
/// whose owner is gone, or every one when `all`; returns what it removed.
pub(crate) fn reap_in(run_dir: &Path, all: bool) -> Vec<String> {
    let dir = run_dir.join("hosts");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        let Some(record) = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<NetworkRecord>(&b).ok())
        else {
            continue;
        };
        if !all && procinfo::is_same_process_alive(record.owner_pid, record.owner_start_ticks) {
            continue;
        }
        removed.extend(record.remove());
        let _ = fs::remove_file(&path);
    }
    let _ = fs::remove_dir(&dir);
    removed
}

/// Removes this process's networks: for the signal thread.
#[cfg(feature = "runtime")]
pub(crate) fn remove_live() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for (record, path) in live {
        record.remove();
        let _ = fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_fit_interface_names() {
        let id = unique_id();
        assert_eq!(id.len(), 6);
        // The longest interface name made from it: a veth end of host 99.
        assert!(format!("tb{id}h99").len() <= 15);
        assert_ne!(unique_id(), unique_id());
    }

    #[test]
    fn cuts_read_from_to() {
        let cut = Cut {
            from: "worker-0".into(),
            to: "etcd-0".into(),
        };
        assert_eq!(cut.to_string(), "worker-0 -> etcd-0");
    }

    #[test]
    fn loopback_is_the_default_placement() {
        assert_eq!(
            Placement::default(),
            Placement {
                addr: Ipv4Addr::LOCALHOST,
                netns: None
            }
        );
        assert_eq!(Placement::default().host(), "127.0.0.1");
    }
}
