//! `fledge run`.

use anyhow::Context;
use fledge::apply::kube_message;
use fledge::cli::{RunArgs, default_repo_name};
use fledge::controller::{self, AgentOptions, LeaseConfig};
use fledge::crd::{ConfigRepo, ConfigRepoSpec};
use fledge::server::{self, Metrics, Probes};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub async fn run_cmd(
    args: RunArgs,
    kubeconfig: Option<&std::path::Path>,
) -> anyhow::Result<std::process::ExitCode> {
    // Leader election settings are checked before anything touches the cluster.
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "fledge".into());
        format!("{host}-{}", std::process::id())
    });
    let lease = args
        .leader_election
        .then(|| lease_config(&args, &identity))
        .transpose()?;
    let client = crate::kube_client(kubeconfig).await?;
    client
        .apiserver_version()
        .await
        .context("the API server does not answer")?;
    let pp = PatchParams::apply("fledge-cli").force();
    if args.install_crds {
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
        for crd in fledge::crd::all() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            crds.patch(&name, &pp, &Patch::Apply(&crd))
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "installing CRD {name}: {} (the agent's RBAC must allow it; or install the CRDs with `fledge crds | kubectl apply -f -` and run with --install-crds=false)",
                        kube_message(&e)
                    )
                })?;
        }
        for _ in 0..100 {
            let all = crds
                .list(&Default::default())
                .await
                .map_err(|e| anyhow::anyhow!("listing CRDs: {}", kube_message(&e)))?;
            let ready = all
                .items
                .iter()
                .filter(|c| {
                    c.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.ends_with(".fledge.dev"))
                })
                .filter(|c| {
                    c.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                        })
                })
                .count();
            if ready == 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": args.namespace}});
    Api::<Namespace>::all(client.clone())
        .patch(&args.namespace, &pp, &Patch::Apply(&ns))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "creating namespace {}: {}",
                args.namespace,
                kube_message(&e)
            )
        })?;
    if let Some(url) = &args.repo {
        fledge::duration::parse(&args.interval).context("--interval")?;
        let name = args
            .name
            .clone()
            .unwrap_or_else(|| default_repo_name(&args.path));
        // A local directory is stored as an absolute path, so the agent finds it from anywhere.
        let url = match std::path::Path::new(url) {
            p if !fledge::source::is_remote(url) && p.exists() => {
                std::fs::canonicalize(p)?.display().to_string()
            }
            _ => url.clone(),
        };
        let spec: ConfigRepoSpec = serde_json::from_value(serde_json::json!({
            "url": url, "path": args.path, "branch": args.branch, "interval": args.interval
        }))?;
        let repo = ConfigRepo::new(&name, spec);
        let body = serde_json::json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "ConfigRepo", "metadata": {"name": name}, "spec": repo.spec});
        Api::<ConfigRepo>::all(client.clone())
            .patch(&name, &pp, &Patch::Apply(&body))
            .await
            .map_err(|e| anyhow::anyhow!("creating ConfigRepo {name}: {}", kube_message(&e)))?;
        tracing::info!(repo = %name, url = %fledge::source::redact(&url), path = %args.path, "ConfigRepo configured");
    }
    let opts = AgentOptions {
        namespace: args.namespace.clone(),
        cache_dir: args
            .cache_dir
            .clone()
            .unwrap_or_else(fledge::source::default_cache_dir),
        lease,
        concurrency: args.concurrency,
        drift_debounce: std::time::Duration::from_millis(500),
        selector: args
            .selector
            .as_deref()
            .map(controller::LabelSelector::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("--selector: {e}"))?,
        secret_namespaces: args.secret_namespaces.clone(),
        workers: args.workers,
        rollout_workers: args.rollout_workers,
        cluster: args.cluster.clone(),
        dashboard_url: args.dashboard_url.clone(),
        rollback_author: args.rollback_author.clone(),
    };
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, identity = %identity, "fledge agent starting");
    let probes = Probes {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    // Webhooks: a signed push fetches the matching ConfigRepos at once (no secret: endpoints off).
    let secret = match &args.webhook_secret_file {
        Some(path) => server::webhooks::WebhookSecret::from_file(path)
            .with_context(|| format!("reading --webhook-secret-file {}", path.display()))?,
        None => None,
    };
    if args.webhook_secret_file.is_some() && secret.is_none() {
        anyhow::bail!("--webhook-secret-file is empty: the webhook endpoints need a secret");
    }
    let (events_tx, events_rx) = tokio::sync::mpsc::channel(256);
    let mut app = server::router(probes).merge(server::webhooks::router(secret, events_tx));
    if args.dashboard {
        app = app.merge(server::dashboard::router(client.clone()));
    }
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let lease = opts.lease.clone();
    let agent = controller::Agent::new(client.clone(), opts, metrics);
    tokio::spawn(controller::on_webhooks(agent.clone(), events_rx));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = controller::run(agent, ready) => {}
        r = server => { r??; }
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "stopping"),
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
    }
    // The agent's future is dropped: its worker and its lease loop are aborted, so nothing
    // writes any more. Giving the Lease up lets a standby take over at its next attempt
    // instead of after the lease duration.
    if let Some(lease) = lease {
        match tokio::time::timeout(lease.renew_deadline, lease.release(client)).await {
            Ok(Ok(true)) => tracing::info!(lease = %lease.name, "released the leader Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader Lease"),
            Err(_) => tracing::warn!("could not release the leader Lease in time"),
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Leader election settings from the flags; the renew deadline and retry period default to
/// 2/3 and 2/15 of the lease duration (10 s and 2 s for 15 s).
fn lease_config(args: &RunArgs, identity: &str) -> anyhow::Result<LeaseConfig> {
    let duration = fledge::duration::parse(&args.lease_duration).context("--lease-duration")?;
    let mut cfg = LeaseConfig::with_duration(&args.namespace, "fledge-leader", identity, duration);
    if let Some(d) = &args.renew_deadline {
        cfg.renew_deadline = fledge::duration::parse(d).context("--renew-deadline")?;
    }
    if let Some(d) = &args.retry_period {
        cfg.retry_period = fledge::duration::parse(d).context("--retry-period")?;
    }
    cfg.validate()
        .context("--lease-duration, --renew-deadline and --retry-period")?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::lease_config;
    use clap::Parser;
    use fledge::cli::{Cli, Command};
    use std::time::Duration;

    fn lease(flags: &[&str]) -> anyhow::Result<fledge::controller::LeaseConfig> {
        let cli = Cli::try_parse_from([&["fledge", "run"], flags].concat())?;
        let Command::Run(args) = cli.command else {
            anyhow::bail!("not `fledge run`");
        };
        lease_config(&args, "me")
    }

    #[test]
    fn lease_flags_default_in_proportion_and_refuse_a_deadline_not_shorter_than_the_lease() {
        let d = lease(&[]).unwrap();
        let secs = |s| Duration::from_secs(s);
        assert_eq!(
            (d.duration, d.renew_deadline, d.retry_period),
            (secs(15), secs(10), secs(2))
        );
        let d = lease(&["--lease-duration=30s"]).unwrap();
        assert_eq!((d.renew_deadline, d.retry_period), (secs(20), secs(4)));
        let d = lease(&["--renew-deadline=12s", "--retry-period=1s"]).unwrap();
        assert_eq!((d.renew_deadline, d.retry_period), (secs(12), secs(1)));
        for bad in [
            &["--renew-deadline=15s"][..],
            &["--lease-duration=5s", "--renew-deadline=10s"],
            &["--retry-period=10s"],
        ] {
            let err = lease(bad).expect_err("refused");
            assert!(
                format!("{err:#}").contains("--renew-deadline"),
                "{bad:?}: {err:#}"
            );
        }
    }
}
