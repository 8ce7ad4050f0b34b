//! Leader election on a `coordination.k8s.io/v1` Lease: one agent writes, the others stand by
//! and take over when the leader stops renewing for longer than the lease duration.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::Duration;
use tokio::sync::watch;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// One attempt: `Ok(true)` when we hold the lease afterwards.
async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let secs = cfg.duration.as_secs().max(1) as i32;
    let mine = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(cfg.identity.clone()),
        lease_duration_seconds: Some(secs),
        acquire_time: acquired.or_else(|| Some(now())),
        renew_time: Some(now()),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    };
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(mine(0, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let held_by_me = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    let expired = match (&spec.renew_time, spec.lease_duration_seconds) {
        (Some(renewed), Some(d)) => {
            renewed.0.as_second() + i64::from(d) < jiff::Timestamp::now().as_second()
        }
        _ => true,
    };
    if !held_by_me && !expired {
        return Ok(false);
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!held_by_me);
    lease.spec = Some(mine(
        transitions,
        if held_by_me { spec.acquire_time } else { None },
    ));
    // Replace with the resourceVersion we read: if another agent got there first, we lose.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs forever, publishing whether we are the leader. Leadership is given up when renewing
/// fails for longer than the lease duration.
pub async fn run(client: Client, cfg: LeaseConfig, tx: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let renew = (cfg.duration / 3).max(Duration::from_millis(500));
    let mut last_ok = tokio::time::Instant::now();
    loop {
        match try_acquire(&api, &cfg).await {
            Ok(leader) => {
                last_ok = tokio::time::Instant::now();
                if *tx.borrow() != leader {
                    tracing::info!(identity = %cfg.identity, leader, "leadership changed");
                }
                let _ = tx.send(leader);
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease renewal failed");
                if last_ok.elapsed() > cfg.duration && *tx.borrow() {
                    tracing::warn!("could not renew the lease in time; standing down");
                    let _ = tx.send(false);
                }
            }
        }
        tokio::time::sleep(renew).await;
    }
}
