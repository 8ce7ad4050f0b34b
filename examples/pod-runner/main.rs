//! The test env's kubelet stand-in for processes (started by `tests/env/up`, stopped by `down`):
//! watches the pods on kwok's fake nodes and, for every Running pod annotated
//! `fledge.dev/serve: demo-app`, runs the demo app on the pod's IP (on loopback, from kwok's
//! `--cidr`) and container port, with behaviour from the pod's env and labels from the pod.
//!
//! `cargo run --example pod-runner -- --kubeconfig K --demo-app PATH --state DIR`
//!
//! A pod deleted (or no longer Running) → its process stopped; a pod replaced → a new process;
//! a process that dies → started again. Each process is recorded in `DIR/<pod uid>.json`; the
//! runner leaves its processes running when it exits (as a kubelet restart leaves containers)
//! and adopts them when it starts again, so `tests/env/down` stops the runner and then every
//! recorded process.

mod pod;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use pod::{Procs, Want};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Runs the demo app for each pod that opts in.
#[derive(Parser)]
struct Args {
    /// Kubeconfig of the cluster to watch.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// The demo-app binary to run for each pod.
    #[arg(long)]
    demo_app: PathBuf,
    /// Directory for the records of running processes and their logs.
    #[arg(long)]
    state: PathBuf,
}

fn log(msg: &str) {
    eprintln!("{} pod-runner: {msg}", jiff::Timestamp::now());
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    fledge::install_crypto();
    std::fs::create_dir_all(&a.state)?;
    let kc = kube::config::Kubeconfig::read_from(&a.kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    let client = kube::Client::try_from(config)?;

    let mut procs = Procs::adopt(a.demo_app.clone(), a.state.clone());
    log(&format!("adopted {} running process(es)", procs.len()));

    let (nodes, node_writer) = reflector::store::<Node>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let mut node_events = reflector(
        node_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .boxed();
    let mut pod_events = reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .boxed();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let (mut nodes_listed, mut pods_listed) = (false, false);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = node_events.next() => match ev {
                Some(Err(e)) => log(&format!("node watch: {e}")),
                Some(Ok(watcher::Event::InitDone)) => nodes_listed = true,
                Some(Ok(_)) => {}
                None => anyhow::bail!("node watch ended"),
            },
            ev = pod_events.next() => match ev {
                Some(Err(e)) => log(&format!("pod watch: {e}")),
                Some(Ok(watcher::Event::InitDone)) => pods_listed = true,
                Some(Ok(_)) => {}
                None => anyhow::bail!("pod watch ended"),
            },
            _ = tick.tick() => {}
            _ = term.recv() => {
                log(&format!("terminated; leaving {} process(es) running for the next runner (tests/env/down stops them)", procs.len()));
                return Ok(());
            }
            _ = tokio::signal::ctrl_c() => {
                log("interrupted; leaving processes running");
                return Ok(());
            }
        }
        // Until both lists have been read once, an empty store means "not known yet", not
        // "no pods": reconciling then would stop every adopted process.
        if nodes_listed && pods_listed {
            let kwok_nodes: Vec<String> = nodes
                .state()
                .iter()
                .filter(|n| pod::is_kwok_node(n))
                .filter_map(|n| n.metadata.name.clone())
                .collect();
            let want: BTreeMap<String, Want> = pods
                .state()
                .iter()
                .filter_map(|p| pod::want(p, &kwok_nodes))
                .map(|w| (w.uid.clone(), w))
                .collect();
            procs.reconcile(&want, log);
        }
    }
}
