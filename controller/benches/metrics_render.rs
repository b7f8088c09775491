//! /metrics rendered for a large synthetic fleet (issue 11, item 9):
//! `cargo bench -p coloc-controller --bench metrics_render -- 10000`.
//! Prints the median of several renders, the output's size and the
//! process's peak RSS (VmHWM), as a Markdown table row.

#[path = "../tests/support/fleet.rs"]
mod fleet;

use std::time::{Duration, Instant};

use coloc_controller::metrics::{Metrics, render};

const RUNS: usize = 7;

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn main() {
    // cargo passes `--bench`; the node count is the one number given.
    let nodes = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(10_000);
    let snapshot = fleet::fleet(nodes, 1_764_900_000);
    let metrics = Metrics::new();
    for (service, method) in [
        ("coloc.controller.v1.Nodes", "ListNodes"),
        ("coloc.controller.v1.Health", "GetNodeHealth"),
        ("coloc.agent.v1.Agent", "Session"),
    ] {
        for i in 0..100u64 {
            metrics.observe_rpc(
                service,
                method,
                tonic::Code::Ok,
                Duration::from_micros(i * 37),
            );
        }
        metrics.observe_store(method, Duration::from_micros(250));
    }
    // What the snapshot alone holds, before any render.
    let snapshot_rss = peak_rss_mib();
    let mut times = Vec::with_capacity(RUNS);
    let mut bytes = 0;
    let mut lines = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let text = render(&snapshot, &metrics);
        times.push(start.elapsed());
        bytes = text.len();
        lines = text.bytes().filter(|b| *b == b'\n').count();
        drop(text);
    }
    times.sort();
    let median = times[RUNS / 2];
    let mib = |m: Option<f64>| m.map_or("?".to_string(), |m| format!("{m:.0}"));
    println!(
        "| nodes | lines | output (MiB) | median render (ms) | min (ms) | max (ms) | \
         peak RSS with the snapshot only (MiB) | peak RSS (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {nodes} | {lines} | {:.1} | {:.0} | {:.0} | {:.0} | {} | {} |",
        bytes as f64 / (1024.0 * 1024.0),
        median.as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[RUNS - 1].as_secs_f64() * 1e3,
        mib(snapshot_rss),
        mib(peak_rss_mib()),
    );
}
