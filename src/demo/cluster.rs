//! `pvegate sim --cluster N`: the simulated Proxmox as a cluster of N nodes (`pve1`…), each
//! on its own listener with its own certificate signed by one cluster CA. Typing
//! `stop pve2` / `start pve2` (and Enter) takes a node down and brings it back, to watch a
//! client or pvegate fail over.

use std::net::SocketAddr;
use std::time::Duration;

use pvegate_sim::{self as sim, SimCluster, SimConfig};
use tokio::io::{AsyncBufReadExt, BufReader};

use super::{toml_string, write_ca, SimOptions};

/// The most nodes `--cluster` starts.
pub const MAX_NODES: usize = 9;

/// The listen addresses of `n` nodes: all `base` when its port is 0 (each gets a free port),
/// else consecutive ports from `base`.
pub fn node_addrs(base: SocketAddr, n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    (0..n)
        .map(|i| {
            if base.port() == 0 {
                return Ok(base);
            }
            let port = u16::try_from(usize::from(base.port()) + i).map_err(|_| {
                anyhow::anyhow!(
                    "--listen {base}: no room for {n} consecutive ports (choose a lower port)"
                )
            })?;
            Ok(SocketAddr::new(base.ip(), port))
        })
        .collect()
}

/// Runs the cluster until Ctrl-C.
pub async fn run(opts: SimOptions, n: usize) -> anyhow::Result<()> {
    if !(1..=MAX_NODES).contains(&n) {
        anyhow::bail!("--cluster {n}: give a number of nodes from 1 to {MAX_NODES}");
    }
    let base = opts
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let addrs = node_addrs(base, n)?;
    let cluster = sim::start_cluster_on(
        &addrs,
        SimConfig {
            tls: !opts.plain,
            ..SimConfig::demo_cluster(n)
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {base} and the next {} ports: {e} (choose another --listen address)",
            n - 1
        )
    })?;
    if let (Some(path), Some(pem)) = (&opts.ca_out, &cluster.ca_pem) {
        write_ca(path, pem)?;
    }
    print!("{}", banner(&cluster, opts.ca_out.as_deref()));
    if !base.ip().is_loopback() {
        eprintln!("warning: the simulated Proxmox cluster listens on {}: anyone who can reach it can use the demo credentials above", base.ip());
    }
    let mut seen = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut stdin = Some(BufReader::new(tokio::io::stdin()).lines());
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            r = &mut stop => { r?; break; }
            line = async { match stdin.as_mut() { Some(l) => l.next_line().await, None => std::future::pending().await } } => {
                match line {
                    Ok(Some(line)) => println!("{}", command(&cluster, &line).await),
                    // No (more) input: keep serving, stop reading.
                    _ => stdin = None,
                }
            }
            _ = tick.tick() => {
                if cluster.recorder.len() > seen {
                    let all = cluster.recorder.requests();
                    for r in &all[seen.min(all.len())..] {
                        println!("{} received {} {}", r.node, r.method, r.path());
                    }
                    seen = all.len();
                }
            }
        }
    }
    cluster.shutdown().await;
    Ok(())
}

/// One line typed on stdin: `stop NODE`, `start NODE` or `status`; returns the answer.
async fn command(cluster: &SimCluster, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let find = |name: &str| cluster.nodes.iter().find(|n| n.name == name);
    match words.as_slice() {
        ["stop", name] => match find(name) {
            Some(node) => {
                node.stop().await;
                format!("node {name} stopped")
            }
            None => format!("no node {name}"),
        },
        ["start", name] => match find(name) {
            Some(node) => match node.start().await {
                Ok(()) => format!("node {name} started on {}", node.url),
                Err(e) => format!("node {name} cannot listen on {} again: {e}", node.addr),
            },
            None => format!("no node {name}"),
        },
        ["status"] => cluster
            .nodes
            .iter()
            .map(|n| {
                let state = if n.is_running() { "running" } else { "stopped" };
                format!("node {} {state}", n.name)
            })
            .collect::<Vec<_>>()
            .join("\n"),
        [] => String::new(),
        _ => format!("unknown command {line:?}: type `stop NODE`, `start NODE` or `status`"),
    }
}

/// What `pvegate sim --cluster` prints at start.
pub fn banner(cluster: &SimCluster, ca_out: Option<&std::path::Path>) -> String {
    let mut s = format!(
        "simulated Proxmox VE cluster ({} nodes, one shared cluster state)\n",
        cluster.nodes.len()
    );
    for n in &cluster.nodes {
        s.push_str(&format!("  node {:<6} url {}", n.name, n.url));
        if let Some(fp) = &n.fingerprint {
            s.push_str(&format!(" fingerprint {fp}"));
        }
        s.push('\n');
    }
    if let Some(p) = ca_out {
        s.push_str(&format!(
            "  ca           {} (the cluster CA: trusts every node)\n",
            p.display()
        ));
    }
    super::sim_credentials(&mut s);
    let guests: Vec<String> = cluster
        .guests()
        .iter()
        .map(|g| {
            format!(
                "{} {} on {}",
                g.vmid,
                g.name,
                g.node.as_deref().unwrap_or("?")
            )
        })
        .collect();
    s.push_str(&format!("  guests       {}\n", guests.join(", ")));
    if let Some(first) = cluster.nodes.first() {
        s.push_str(&format!(
            "\nEvery node answers for the others (not uploads or consoles). A single upstream for pvegate:\n  [upstream]\n  url = {}\n",
            toml_string(&first.url)
        ));
        if let Some(fp) = &first.fingerprint {
            s.push_str(&format!("  fingerprint = {}\n", toml_string(fp)));
        }
    }
    s.push_str("\nOr every node, so pvegate fails over and sends consoles and uploads to their node:\n  [upstream]\n");
    if let Some(p) = ca_out {
        s.push_str(&format!(
            "  ca = {}\n",
            toml_string(&p.display().to_string())
        ));
    }
    for n in &cluster.nodes {
        s.push_str(&format!(
            "  [[upstream.node]]\n  name = {}\n  url = {}\n",
            toml_string(&n.name),
            toml_string(&n.url)
        ));
        if let (None, Some(fp)) = (ca_out, &n.fingerprint) {
            s.push_str(&format!("  fingerprint = {}\n", toml_string(fp)));
        }
    }
    s.push_str("\nType `stop pve2` or `start pve2` (Enter) to take a node down or bring it back, `status` to list them.\n");
    s.push_str("Each request a node receives is printed below (Ctrl-C to stop).\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ports_or_free_ones() {
        let base: SocketAddr = "127.0.0.1:8006".parse().unwrap();
        let ports: Vec<u16> = node_addrs(base, 3)
            .unwrap()
            .iter()
            .map(|a| a.port())
            .collect();
        assert_eq!(ports, [8006, 8007, 8008]);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert!(node_addrs(any, 3).unwrap().iter().all(|a| a.port() == 0));
        let top: SocketAddr = "127.0.0.1:65535".parse().unwrap();
        assert!(node_addrs(top, 2)
            .unwrap_err()
            .to_string()
            .contains("consecutive"));
    }
}
