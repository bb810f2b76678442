// SPDX-License-Identifier: MIT
//! The cluster reboot: every node starts within two seconds against one
//! GitLab that admits 50 requests a second (the rest get 429 with a
//! `Retry-After` saying when there is room) and answers in 50 ms. Half the
//! nodes are first runs, half have valid state. Every node must exit 0
//! within its `--wait`, GitLab must end with exactly two runners per node,
//! and the total number of requests must stay under the bound below.
//!
//! `cargo test --test it load::` runs 50 nodes; `make loadtest` runs 50, 200
//! and 500 (`-- --ignored`) and prints the figures.

use crate::support::*;
use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const RATE: u32 = 50;
const WAIT: &str = "120s";

struct Figures {
    hosts: usize,
    converged: Duration,
    requests: usize,
    per_host_median: usize,
    per_host_max: usize,
    throttled: usize,
}

fn cluster(hosts: usize) -> Figures {
    let mut world = World::default();
    world.rate_limit = Some(RATE);
    world.latency = Some(Duration::from_millis(50));
    let gl = FakeGitlab::start(world);
    let name = |i: usize| format!("node{i:03}");
    let prefixes: Vec<Prefix> = (0..hosts)
        .map(|i| {
            let p = Prefix::standard(REGISTRATION_TOKEN);
            if i % 2 == 1 {
                // a node with valid state: its runners exist in GitLab
                let mut w = gl.world();
                let mut st = serde_json::Map::new();
                for ty in ["batch", "shell"] {
                    let host = name(i);
                    let id = w.add_runner(&format!("{host}-{ty}"), &[&host, "node", ty], false);
                    st.insert(
                        ty.into(),
                        serde_json::json!({"id": id, "token": w.token_of(id)}),
                    );
                }
                p.write(
                    "runner-data.json",
                    &serde_json::Value::Object(st).to_string(),
                );
            }
            p
        })
        .collect();
    // Each node is spawned stopped (a shell that stops itself, then execs
    // the tool), and all are continued at once: a reboot, not a slow ramp.
    let mut children: Vec<(Child, Option<Instant>)> = prefixes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let log = std::fs::File::create(p.path("bin/log")).unwrap();
            let mut c = std::process::Command::new("/bin/sh");
            c.env_clear()
                .env("PATH", p.path("bin"))
                .args(["-c", "kill -STOP $$ && exec \"$0\" \"$@\"", bin()])
                .args(["--api-url", &gl.url(), "--prefix"])
                .arg(&p.dir)
                .args(["--hostname", &name(i), "--wait", WAIT, "--timeout", "20s"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(log));
            (c.spawn().expect("spawn"), None)
        })
        .collect();
    let stopped = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('T'))
        })
    };
    for (c, _) in &children {
        // bounded: 10 s per node at most
        for _ in 0..10_000 {
            if stopped(c.id()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let start = Instant::now();
    let pids: Vec<String> = children.iter().map(|(c, _)| c.id().to_string()).collect();
    let cont = std::process::Command::new("kill")
        .arg("-CONT")
        .args(&pids)
        .status()
        .unwrap();
    assert!(cont.success());
    let resumed = start.elapsed();
    assert!(
        resumed < Duration::from_secs(2),
        "starting took {resumed:?}"
    );
    // bounded: --wait plus a margin
    let limit = Duration::from_secs(150);
    while children.iter().any(|(_, done)| done.is_none()) && start.elapsed() < limit {
        for (child, done) in children.iter_mut().filter(|(_, d)| d.is_none()) {
            if let Ok(Some(status)) = child.try_wait() {
                assert!(status.success(), "a node failed: {status}");
                *done = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, (child, done)) in children.iter_mut().enumerate() {
        if done.is_none() {
            let _ = child.kill();
            panic!(
                "{} did not finish in {limit:?}: {}",
                name(i),
                std::fs::read_to_string(prefixes[i].path("bin/log")).unwrap_or_default()
            );
        }
    }
    let converged = children.iter().filter_map(|(_, d)| *d).max().unwrap() - start;
    let w = gl.world();
    // every node has exactly its two runners
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for r in w.runners.values() {
        let host = r.description.rsplit_once('-').unwrap().0.to_string();
        *per_node.entry(host).or_default() += 1;
    }
    assert_eq!(per_node.len(), hosts);
    assert!(per_node.values().all(|n| *n == 2), "{per_node:?}");
    // requests per node, by the description or token each one carries
    let host_of_token: BTreeMap<&str, &str> = w
        .runners
        .values()
        .map(|r| (r.token.as_str(), r.description.rsplit_once('-').unwrap().0))
        .collect();
    let mut requests: BTreeMap<String, usize> = BTreeMap::new();
    for q in &w.requests {
        let host = q
            .param("description")
            .and_then(|d| d.as_str())
            .and_then(|d| d.rsplit_once('-'))
            .map(|(h, _)| h.to_string())
            .or_else(|| {
                q.param("token")
                    .and_then(|t| t.as_str())
                    .and_then(|t| host_of_token.get(t))
                    .map(|h| h.to_string())
            })
            .unwrap_or_else(|| "?".into());
        *requests.entry(host).or_default() += 1;
    }
    let mut counts: Vec<usize> = requests.values().copied().collect();
    counts.sort();
    Figures {
        hosts,
        converged,
        requests: w.requests.len(),
        per_host_median: counts[counts.len() / 2],
        per_host_max: *counts.last().unwrap(),
        throttled: w.throttled,
    }
}

fn check_and_print(f: &Figures) {
    // Each node needs 2 requests. A throttled one waits the Retry-After the
    // limiter gave (the time until its backlog clears) plus jitter, so it
    // mostly gets in on the next try: at most 8 requests a node in all.
    let bound = f.hosts * 2 * 4;
    println!(
        "{:>4} nodes: converged in {:>5.1} s; {:>5} requests (bound {bound}), per node median {} max {}; {} answered 429",
        f.hosts,
        f.converged.as_secs_f64(),
        f.requests,
        f.per_host_median,
        f.per_host_max,
        f.throttled
    );
    assert!(f.requests <= bound, "{} requests > {bound}", f.requests);
}

#[test]
fn fifty_nodes_rebooting_at_once_converge() {
    check_and_print(&cluster(50));
}

#[test]
#[ignore = "make loadtest: 200 and 500 nodes, over a minute"]
fn a_whole_cluster_rebooting_at_once_converges() {
    for hosts in [200, 500] {
        check_and_print(&cluster(hosts));
    }
}
