//! Leader election on a `coordination.k8s.io/v1` Lease: one agent writes, the others stand by.
//!
//! Three durations, as in client-go's leaderelection: a standby takes the Lease over when its
//! record has not changed for the lease duration, measured on this agent's own monotonic clock
//! from the moment it *saw* the record change (never by comparing the holder's `renewTime` with
//! the local wall clock, which clock skew would break); the leader stands down when it has not
//! renewed for the renew deadline, strictly shorter, the moment that deadline passes even with a
//! call still pending; every attempt is a retry period apart and every API call has a timeout.
//! Safety rests on the margin between the two: the leader stops at most `renew_deadline` after
//! it *sent* its last successful renewal, a standby waits `duration` after it *saw* that renewal.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

#[cfg(test)]
mod tests;

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long the Lease's record must stay unchanged, as seen by a standby, before it takes
    /// over (written to the Lease as `leaseDurationSeconds`).
    pub duration: Duration,
    /// How long the leader keeps leading without a successful renewal: strictly shorter than
    /// `duration`, so it has stopped writing before any standby may take over.
    pub renew_deadline: Duration,
    /// Time between two attempts to acquire or renew.
    pub retry_period: Duration,
}

/// Why leader election could not read or write the Lease, or will not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{call} of the Lease timed out after {after:?}")]
    Timeout { call: &'static str, after: Duration },
    #[error("{call} of the Lease failed: {source}")]
    Api {
        call: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("invalid leader election settings: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl LeaseConfig {
    /// Lease duration when none is given: a standby takes over 15 s after the last renewal.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(15);
    /// Renew deadline when none is given.
    pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
    /// Retry period when none is given.
    pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

    /// Settings with the default durations (15 s lease, 10 s renew deadline, 2 s retry period).
    pub fn new(namespace: &str, name: &str, identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Self::DEFAULT_DURATION,
            renew_deadline: Self::DEFAULT_RENEW_DEADLINE,
            retry_period: Self::DEFAULT_RETRY_PERIOD,
        }
    }

    /// Settings for a lease `duration`, with the renew deadline and retry period in the default
    /// proportions (2/3 and 2/15 of it: 15 s → 10 s and 2 s).
    pub fn with_duration(namespace: &str, name: &str, identity: &str, duration: Duration) -> Self {
        LeaseConfig {
            duration,
            renew_deadline: duration * 2 / 3,
            retry_period: duration * 2 / 15,
            ..Self::new(namespace, name, identity)
        }
    }

    /// Refuses settings that would allow two leaders or never renew in time:
    /// `0 < retry_period < renew_deadline < duration`, and a duration of whole seconds ≥ 1 s
    /// (the Lease stores seconds).
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(Error::Config(m));
        if self.identity.is_empty() {
            return fail("the identity is empty".into());
        }
        if self.duration < Duration::from_secs(1) || self.duration.subsec_nanos() != 0 {
            return fail(format!(
                "the lease duration must be whole seconds, at least 1s (got {:?})",
                self.duration
            ));
        }
        if self.renew_deadline >= self.duration {
            return fail(format!(
                "the renew deadline ({:?}) must be shorter than the lease duration ({:?})",
                self.renew_deadline, self.duration
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return fail(format!(
                "the retry period ({:?}) must be above zero and shorter than the renew deadline ({:?})",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }

    /// Timeout of one API call: half the renew deadline, so a leader gets a second attempt
    /// before its deadline; while leading, the deadline itself cuts any call short.
    fn call_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }

    /// Gives the Lease up if this agent holds it, so a standby takes over at its next attempt
    /// rather than after the lease duration (call it once the agent has stopped writing).
    /// Returns whether the Lease was released.
    pub async fn release(&self, client: Client) -> Result<bool> {
        release(&KubeLeases::new(client, self), self).await
    }
}

/// The three Lease calls leader election makes. A trait so that the election loop runs in
/// tests against an in-memory Lease with a virtual clock (and calls that never complete).
pub(crate) trait LeaseStore {
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, kube::Error>> + Send;
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send;
    /// Replace, conditional on the `resourceVersion` in `lease` (409 when it moved on).
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send;
}

/// The Lease in the cluster.
struct KubeLeases {
    api: Api<Lease>,
    name: String,
}

impl KubeLeases {
    fn new(client: Client, cfg: &LeaseConfig) -> Self {
        KubeLeases {
            api: Api::namespaced(client, &cfg.namespace),
            name: cfg.name.clone(),
        }
    }
}

impl LeaseStore for KubeLeases {
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, kube::Error>> + Send {
        self.api.get_opt(&self.name)
    }
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send {
        let (api, lease) = (self.api.clone(), lease.clone());
        async move { api.create(&PostParams::default(), &lease).await }
    }
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send {
        let (api, name, lease) = (self.api.clone(), self.name.clone(), lease.clone());
        async move { api.replace(&name, &PostParams::default(), &lease).await }
    }
}

/// One API call, bounded by `after`.
async fn call<T>(
    call: &'static str,
    after: Duration,
    fut: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T> {
    match tokio::time::timeout(after, fut).await {
        Ok(r) => r.map_err(|source| Error::Api { call, source }),
        Err(_) => Err(Error::Timeout { call, after }),
    }
}

fn is_conflict(e: &Error) -> bool {
    matches!(e, Error::Api { source: kube::Error::Api(s), .. } if s.code == 409)
}

/// What of a Lease tells whether its holder is alive: any change to it restarts the clock.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<jiff::Timestamp>,
    lease_duration_seconds: Option<i32>,
    transitions: Option<i32>,
    resource_version: Option<String>,
}

impl Record {
    fn of(lease: &Lease) -> Record {
        let spec = lease.spec.as_ref();
        Record {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .filter(|h| !h.is_empty()),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            lease_duration_seconds: spec.and_then(|s| s.lease_duration_seconds),
            transitions: spec.and_then(|s| s.lease_transitions),
            resource_version: lease.metadata.resource_version.clone(),
        }
    }
}

/// Whether this agent may write the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// We hold it: renew.
    Mine,
    /// Nobody holds it, or its holder let it expire: take it.
    Free,
    /// Someone else holds it and renewed (as far as we saw) less than its duration ago.
    Held,
}

/// The record last seen and the local monotonic time at which it last changed.
#[derive(Debug, Default)]
struct Observed {
    last: Option<(Record, Instant)>,
}

impl Observed {
    fn see(&mut self, record: Record, now: Instant) {
        if self.last.as_ref().map(|(r, _)| r) != Some(&record) {
            self.last = Some((record, now));
        }
    }

    /// Judges the record last seen at `now`. The holder's own timestamps play no part: only how
    /// long ago, on our clock, the record last changed.
    fn verdict(&self, identity: &str, default_duration: Duration, now: Instant) -> Verdict {
        let Some((record, changed_at)) = &self.last else {
            return Verdict::Free;
        };
        match record.holder.as_deref() {
            None => Verdict::Free,
            Some(h) if h == identity => Verdict::Mine,
            Some(_) => {
                let duration = record
                    .lease_duration_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .filter(|s| *s > 0)
                    .map_or(default_duration, Duration::from_secs);
                if now.duration_since(*changed_at) >= duration {
                    Verdict::Free
                } else {
                    Verdict::Held
                }
            }
        }
    }
}

fn now_micro() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

/// Election state of one agent.
struct Elector<S> {
    store: S,
    cfg: LeaseConfig,
    observed: Observed,
    /// While leading: when the last successful renewal was *sent*.
    renewed_at: Option<Instant>,
}

impl<S: LeaseStore> Elector<S> {
    /// When leadership ends unless renewed before.
    fn leading_until(&self) -> Option<Instant> {
        self.renewed_at.map(|t| t + self.cfg.renew_deadline)
    }

    /// One attempt: read the Lease, and write it if it is ours or free. `Ok(true)` when we hold
    /// it afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let timeout = self.cfg.call_timeout();
        let secs = i32::try_from(self.cfg.duration.as_secs()).unwrap_or(i32::MAX);
        let mine = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(secs),
            acquire_time: acquired.or_else(|| Some(now_micro())),
            renew_time: Some(now_micro()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        };
        let Some(mut lease) = call("get", timeout, self.store.get()).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(mine(0, None)),
            };
            return match call("create", timeout, self.store.create(&lease)).await {
                Ok(created) => {
                    self.observed.see(Record::of(&created), Instant::now());
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        self.observed.see(Record::of(&lease), Instant::now());
        let verdict = self
            .observed
            .verdict(&self.cfg.identity, self.cfg.duration, Instant::now());
        if verdict == Verdict::Held {
            return Ok(false);
        }
        let spec = lease.spec.take().unwrap_or_default();
        let held_by_me = verdict == Verdict::Mine;
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!held_by_me);
        lease.spec = Some(mine(
            transitions,
            if held_by_me { spec.acquire_time } else { None },
        ));
        // Conditional on the resourceVersion we read: if another agent got there first, we lose.
        match call("replace", timeout, self.store.replace(&lease)).await {
            Ok(written) => {
                self.observed.see(Record::of(&written), Instant::now());
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Publishes leadership when it changes.
fn publish(tx: &watch::Sender<bool>, identity: &str, leader: bool, why: &str) {
    tx.send_if_modified(|cur| {
        if *cur == leader {
            return false;
        }
        if leader {
            tracing::info!(identity, leader, "leadership changed: {why}");
        } else {
            tracing::warn!(identity, leader, "leadership changed: {why}");
        }
        *cur = leader;
        true
    });
}

/// Runs forever, publishing whether we are the leader.
pub async fn run(client: Client, cfg: LeaseConfig, tx: watch::Sender<bool>) {
    let store = KubeLeases::new(client, &cfg);
    elect(store, cfg, tx).await
}

/// The election loop over any [`LeaseStore`].
pub(crate) async fn elect<S: LeaseStore>(store: S, cfg: LeaseConfig, tx: watch::Sender<bool>) {
    let identity = cfg.identity.clone();
    let retry = cfg.retry_period;
    let mut e = Elector {
        store,
        cfg,
        observed: Observed::default(),
        renewed_at: None,
    };
    loop {
        let sent = Instant::now();
        // While leading, the renew deadline cuts the attempt short: a hung call must not keep
        // us "leader" past it (and a deadline already past, after the process was frozen,
        // ends leadership before any call is made).
        let outcome = match e.leading_until() {
            Some(deadline) => tokio::select! {
                biased;
                () = tokio::time::sleep_until(deadline) => None,
                r = e.try_acquire_or_renew() => Some(r),
            },
            None => Some(e.try_acquire_or_renew().await),
        };
        match outcome {
            Some(Ok(true)) => {
                e.renewed_at = Some(sent);
                publish(&tx, &identity, true, "holding the Lease");
            }
            Some(Ok(false)) => {
                e.renewed_at = None;
                publish(&tx, &identity, false, "the Lease is held by another agent");
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, "lease attempt failed");
                if e.leading_until().is_some_and(|d| Instant::now() >= d) {
                    e.renewed_at = None;
                    publish(&tx, &identity, false, "renew deadline passed");
                }
            }
            None => {
                e.renewed_at = None;
                publish(
                    &tx,
                    &identity,
                    false,
                    "renew deadline passed before a renewal completed",
                );
            }
        }
        // Wait for the next attempt, but stand down the moment the deadline passes.
        let next = Instant::now() + retry;
        match e.leading_until() {
            Some(deadline) if deadline <= next => {
                tokio::time::sleep_until(deadline).await;
                e.renewed_at = None;
                publish(&tx, &identity, false, "renew deadline passed");
            }
            _ => tokio::time::sleep_until(next).await,
        }
    }
}

/// Releases the Lease if `cfg.identity` holds it: clears the holder so that standbys take it at
/// their next attempt. A conflict (someone wrote in between) is retried a few times.
pub(crate) async fn release<S: LeaseStore>(store: &S, cfg: &LeaseConfig) -> Result<bool> {
    let timeout = cfg.call_timeout();
    for _ in 0..3 {
        let Some(mut lease) = call("get", timeout, store.get()).await? else {
            return Ok(false);
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = Some(now_micro());
        spec.lease_duration_seconds = Some(1);
        lease.spec = Some(spec);
        match call("replace", timeout, store.replace(&lease)).await {
            Ok(_) => return Ok(true),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}
