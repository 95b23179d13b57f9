//! How Dynamo's processes find and talk to each other: discovery (etcd or a
//! shared folder), the request plane (TCP or NATS) and the event plane
//! (NATS or ZMQ) — turned into the environment every Dynamo process of a
//! topology gets, with every host setting pinned to the process's own
//! address (loopback, or its host's, see [`Site::placement`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use testbed_harness::hosts::{HostNetwork, Placement};

/// Where workers register and the frontend finds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Discovery {
    /// etcd at these client URLs (leases: a dead worker leaves when its lease
    /// expires).
    Etcd(Vec<String>),
    /// Files in this folder (`DYN_FILE_KV`): no etcd at all.
    File(PathBuf),
}

/// How requests reach workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestPlane {
    /// Direct TCP (the default).
    Tcp,
    /// NATS at this URL.
    Nats(String),
}

/// How KV events and metrics travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventPlane {
    /// NATS at this URL.
    Nats(String),
    /// ZMQ sockets between the processes.
    Zmq,
}

/// Where a Dynamo process of a topology runs: its log folder (and private
/// HOME), the planes, and, for a process of a shared stack, the state file
/// that lists its users.
#[derive(Debug, Clone, Copy)]
pub struct Site<'a> {
    /// Log folder; each process's HOME is a folder in it.
    pub dir: &'a Path,
    /// The topology's planes.
    pub planes: &'a Planes,
    /// Set for a shared stack's processes.
    pub shared_state: Option<&'a Path>,
    /// The hosts the topology's processes run on, each on the host named
    /// like it; none: all on the test's loopback.
    pub hosts: Option<&'a HostNetwork>,
}

impl Site<'_> {
    /// Where the process called `name` runs: the host of that name, or
    /// the host whose name it extends (`frontend-restarted` runs on
    /// `frontend`); on a topology with hosts but no such one (a process
    /// added later), the test's own namespace at its bridge address, which
    /// every host reaches; without hosts, loopback.
    pub fn placement(&self, name: &str) -> Placement {
        let Some(hosts) = self.hosts else {
            return Placement::loopback();
        };
        let names: Vec<&str> = hosts.hosts().iter().map(|h| h.name.as_str()).collect();
        match host_of(name, &names).and_then(|host| hosts.host(host).ok()) {
            Some(host) => host.placement.clone(),
            None => Placement {
                addr: hosts.gateway(),
                netns: None,
            },
        }
    }
}

/// The host (of `hosts`) the process called `name` runs on: the one of its
/// name, else the longest one it extends with `-…`.
fn host_of<'h>(name: &str, hosts: &[&'h str]) -> Option<&'h str> {
    hosts
        .iter()
        .filter(|host| {
            name == **host
                || name
                    .strip_prefix(**host)
                    .is_some_and(|rest| rest.starts_with('-'))
        })
        .max_by_key(|host| host.len())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn a_process_runs_on_the_host_it_is_named_after() {
        let hosts = ["nats", "etcd-0", "frontend", "worker-1", "worker-10"];
        let cases = [
            ("exact name", "worker-1", Some("worker-1")),
            ("no prefix confusion", "worker-10", Some("worker-10")),
            (
                "a restarted process",
                "frontend-restarted",
                Some("frontend"),
            ),
            ("a suffix of a worker", "worker-1-doomed", Some("worker-1")),
            ("not a dash-separated extension", "frontends", None),
            ("added later, no host of its own", "router-a", None),
        ];
        for (case, name, want) in cases {
            assert_eq!(host_of(name, &hosts), want, "{case}");
        }
    }
}

/// The planes of one topology.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planes {
    /// Discovery.
    pub discovery: Discovery,
    /// Request plane.
    pub request: RequestPlane,
    /// Event plane.
    pub event: EventPlane,
}

impl Planes {
    /// The `--discovery-backend` value.
    pub fn discovery_backend(&self) -> &'static str {
        match self.discovery {
            Discovery::Etcd(_) => "etcd",
            Discovery::File(_) => "file",
        }
    }

    /// The `--event-plane` value.
    pub fn event_plane(&self) -> &'static str {
        match self.event {
            EventPlane::Nats(_) => "nats",
            EventPlane::Zmq => "zmq",
        }
    }

    /// The environment of a Dynamo process called `name` whose private
    /// folders (HOME, caches) live under `dir`, listening at `at`.
    pub fn env(&self, dir: &Path, name: &str, at: &Placement) -> Vec<(String, String)> {
        let home = dir.join(format!("home-{name}"));
        let host = at.host();
        let mut env = vec![
            ("HOME".to_owned(), home.display().to_string()),
            (
                "XDG_CACHE_HOME".to_owned(),
                home.join(".cache").display().to_string(),
            ),
            ("HF_HUB_OFFLINE".to_owned(), "1".to_owned()),
            ("TRANSFORMERS_OFFLINE".to_owned(), "1".to_owned()),
            ("PYTHONUNBUFFERED".to_owned(), "1".to_owned()),
            ("DYN_LOG".to_owned(), "info".to_owned()),
            // Every host Dynamo lets us pin: the response-stream one binds the
            // machine's external address when unset.
            ("DYN_TCP_RPC_HOST".to_owned(), host.clone()),
            ("DYN_EVENT_PLANE_HOST".to_owned(), host.clone()),
            ("DYN_SYSTEM_HOST".to_owned(), host.clone()),
            ("DYN_TCP_RESPONSE_STREAM_HOST".to_owned(), host.clone()),
            ("DYN_HTTP_HOST".to_owned(), host.clone()),
            ("VLLM_HOST_IP".to_owned(), host),
            (
                "DYN_DISCOVERY_BACKEND".to_owned(),
                self.discovery_backend().to_owned(),
            ),
            ("DYN_EVENT_PLANE".to_owned(), self.event_plane().to_owned()),
        ];
        match &self.discovery {
            Discovery::Etcd(endpoints) => env.push(("ETCD_ENDPOINTS".into(), endpoints.join(","))),
            Discovery::File(folder) => {
                env.push(("DYN_FILE_KV".into(), folder.display().to_string()))
            }
        }
        let mut nats = None;
        match &self.request {
            RequestPlane::Tcp => env.push(("DYN_REQUEST_PLANE".into(), "tcp".into())),
            RequestPlane::Nats(url) => {
                env.push(("DYN_REQUEST_PLANE".into(), "nats".into()));
                nats = Some(url.clone());
            }
        }
        if let EventPlane::Nats(url) = &self.event {
            nats = Some(url.clone());
        }
        if let Some(url) = nats {
            env.push(("NATS_SERVER".into(), url));
        }
        env
    }
}
