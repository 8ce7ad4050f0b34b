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
//!
//! It also publishes the EndpointSlices of those pods (the API server refuses loopback endpoint
//! addresses from the controller-manager): see `endpoints.rs`.

mod endpoints;
mod pod;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{Patch, PatchParams};
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
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .boxed();
    let (services, service_writer) = reflector::store::<Service>();
    let mut service_events = reflector(
        service_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .boxed();
    // The slices as last applied, so that only changes are written.
    let mut published: BTreeMap<(String, String), serde_json::Value> = BTreeMap::new();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let (mut nodes_listed, mut pods_listed, mut services_listed) = (false, false, false);
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
            ev = service_events.next() => match ev {
                Some(Err(e)) => log(&format!("service watch: {e}")),
                Some(Ok(watcher::Event::InitDone)) => services_listed = true,
                Some(Ok(_)) => {}
                None => anyhow::bail!("service watch ended"),
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
            if services_listed {
                publish(
                    &client,
                    &services.state(),
                    &pods.state(),
                    &procs,
                    &mut published,
                )
                .await;
            }
        }
    }
}

/// Applies the EndpointSlice of every Service whose slice changed since it was last applied.
async fn publish(
    client: &kube::Client,
    services: &[std::sync::Arc<Service>],
    pods: &[std::sync::Arc<Pod>],
    procs: &Procs,
    published: &mut BTreeMap<(String, String), serde_json::Value>,
) {
    let serving = procs.serving();
    let mut seen = std::collections::HashSet::new();
    for svc in services {
        let Some((ns, name, obj)) = endpoints::slice_for(svc, pods, &serving) else {
            continue;
        };
        let key = (ns, name);
        seen.insert(key.clone());
        if published.get(&key) == Some(&obj) {
            continue;
        }
        let api = Api::<EndpointSlice>::namespaced(client.clone(), &key.0);
        let pp = PatchParams::apply(endpoints::MANAGED_BY).force();
        match api.patch(&key.1, &pp, &Patch::Apply(&obj)).await {
            Ok(_) => {
                let n = obj["endpoints"].as_array().map_or(0, Vec::len);
                log(&format!("endpoints {}/{}: {n} ready", key.0, key.1));
                published.insert(key, obj);
            }
            // Not recorded: tried again on the next pass.
            Err(e) => log(&format!("endpoints {}/{}: {e}", key.0, key.1)),
        }
    }
    // Slices of deleted Services go with them (owner reference); forget them.
    published.retain(|k, _| seen.contains(k));
}
