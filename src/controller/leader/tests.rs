//! The election loop against an in-memory Lease on tokio's virtual clock: expiry by the local
//! time a record was last seen to change (clock skew cannot decide it), the renew deadline, and
//! a call that never completes.

use super::*;
use std::sync::{Arc, Mutex};

const ME: &str = "me";
const OTHER: &str = "other";

#[derive(Default)]
struct State {
    lease: Option<Lease>,
    rv: u64,
    /// Calls never complete.
    hang: bool,
    /// Calls fail with a 500.
    fail: bool,
    /// Holder written by each successful create or replace made through the store, and when.
    writes: Vec<(Option<String>, Instant)>,
}

/// An in-memory Lease with the API server's optimistic concurrency.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<State>>);

fn status(code: u16, reason: &str) -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure(reason, reason)
            .with_code(code)
            .boxed(),
    )
}

impl Fake {
    fn with(f: impl FnOnce(&mut State)) -> Fake {
        let fake = Fake::default();
        f(&mut fake.0.lock().unwrap());
        fake
    }
    fn set(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.0.lock().unwrap());
    }
    fn holder(&self) -> Option<String> {
        let s = self.0.lock().unwrap();
        Record::of(s.lease.as_ref()?).holder
    }
    fn writes_after(&self, t: Instant) -> usize {
        self.0
            .lock()
            .unwrap()
            .writes
            .iter()
            .filter(|(_, at)| *at > t)
            .count()
    }
    /// Another agent, whose wall clock reads `renew_time`, writes the Lease directly.
    fn write_as(&self, holder: &str, renew_time: jiff::Timestamp) {
        let mut s = self.0.lock().unwrap();
        s.rv += 1;
        let rv = s.rv.to_string();
        s.lease = Some(Lease {
            metadata: ObjectMeta {
                name: Some("lease".into()),
                resource_version: Some(rv),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renew_time)),
                ..LeaseSpec::default()
            }),
        });
    }
    async fn gate(&self) -> Result<(), kube::Error> {
        let (hang, fail) = {
            let s = self.0.lock().unwrap();
            (s.hang, s.fail)
        };
        if hang {
            std::future::pending::<()>().await;
        }
        if fail {
            return Err(status(500, "InternalError"));
        }
        Ok(())
    }
    fn store(&self, lease: &Lease, expect_rv: Option<&str>) -> Result<Lease, kube::Error> {
        let mut s = self.0.lock().unwrap();
        let current = s
            .lease
            .as_ref()
            .map(|l| l.metadata.resource_version.clone());
        match (current, expect_rv) {
            (None, None) => {}
            (Some(cur), Some(rv)) if cur.as_deref() == Some(rv) => {}
            (Some(_), None) => return Err(status(409, "AlreadyExists")),
            _ => return Err(status(409, "Conflict")),
        }
        s.rv += 1;
        let mut lease = lease.clone();
        lease.metadata.resource_version = Some(s.rv.to_string());
        s.lease = Some(lease.clone());
        let holder = Record::of(&lease).holder;
        s.writes.push((holder, Instant::now()));
        Ok(lease)
    }
}

impl LeaseStore for Fake {
    fn get(&self) -> impl Future<Output = Result<Option<Lease>, kube::Error>> + Send {
        let fake = self.clone();
        async move {
            fake.gate().await?;
            Ok(fake.0.lock().unwrap().lease.clone())
        }
    }
    fn create(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send {
        let (fake, lease) = (self.clone(), lease.clone());
        async move {
            fake.gate().await?;
            fake.store(&lease, None)
        }
    }
    fn replace(&self, lease: &Lease) -> impl Future<Output = Result<Lease, kube::Error>> + Send {
        let (fake, lease) = (self.clone(), lease.clone());
        async move {
            fake.gate().await?;
            let rv = lease.metadata.resource_version.clone();
            fake.store(&lease, Some(rv.as_deref().unwrap_or("")))
        }
    }
}

fn cfg(identity: &str) -> LeaseConfig {
    LeaseConfig::new("ns", "lease", identity)
}

/// Starts `identity`'s election loop on `fake`; returns the leadership channel.
fn start(fake: &Fake, identity: &str) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(elect(fake.clone(), cfg(identity), tx));
    (rx, task)
}

/// Lets virtual time run to `t` (every timer before it fires, in order).
async fn at(t: Instant) {
    tokio::time::sleep_until(t).await;
}

const MS: Duration = Duration::from_millis(1);
const YEAR: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 365);

#[test]
fn settings_allowing_two_leaders_are_refused() {
    assert!(cfg(ME).validate().is_ok());
    assert!(
        LeaseConfig::with_duration("n", "l", ME, Duration::from_secs(4))
            .validate()
            .is_ok()
    );
    let bad = [
        LeaseConfig {
            renew_deadline: Duration::from_secs(15),
            ..cfg(ME)
        },
        LeaseConfig {
            renew_deadline: Duration::from_secs(20),
            ..cfg(ME)
        },
        LeaseConfig {
            retry_period: Duration::from_secs(10),
            ..cfg(ME)
        },
        LeaseConfig {
            retry_period: Duration::ZERO,
            ..cfg(ME)
        },
        LeaseConfig {
            duration: Duration::from_millis(1500),
            ..cfg(ME)
        },
        LeaseConfig {
            duration: Duration::ZERO,
            ..cfg(ME)
        },
        LeaseConfig {
            identity: String::new(),
            ..cfg(ME)
        },
    ];
    for c in bad {
        assert!(matches!(c.validate(), Err(Error::Config(_))), "{c:?}");
    }
}

/// The holder stopped renewing; its last `renewTime` is a year ahead of (or behind) our clock.
/// Either way the standby takes over one lease duration after it saw the record last change:
/// not before, and not never.
#[tokio::test(start_paused = true)]
async fn expiry_is_judged_by_when_the_record_last_changed_not_by_the_holders_clock() {
    for skew in [YEAR, -YEAR] {
        let fake = Fake::default();
        fake.write_as(OTHER, jiff::Timestamp::now() + skew);
        let t0 = Instant::now();
        let (rx, task) = start(&fake, ME);
        at(t0 + LeaseConfig::DEFAULT_DURATION - MS).await;
        assert!(
            !*rx.borrow(),
            "skew {skew:?}: took over before the lease duration"
        );
        assert_eq!(fake.holder().as_deref(), Some(OTHER));
        at(t0 + LeaseConfig::DEFAULT_DURATION + LeaseConfig::DEFAULT_RETRY_PERIOD + MS).await;
        assert!(
            *rx.borrow(),
            "skew {skew:?}: never took over an abandoned lease"
        );
        assert_eq!(fake.holder().as_deref(), Some(ME));
        task.abort();
    }
}

/// A holder whose clock is a year behind keeps renewing: its `renewTime` always looks long
/// expired, but the record keeps changing, so it is never taken over.
#[tokio::test(start_paused = true)]
async fn a_renewing_holder_with_a_clock_far_behind_keeps_the_lease() {
    let fake = Fake::default();
    fake.write_as(OTHER, jiff::Timestamp::now() - YEAR);
    let (rx, task) = start(&fake, ME);
    let t0 = Instant::now();
    for i in 1..=30 {
        at(t0 + Duration::from_secs(2 * i)).await;
        fake.write_as(OTHER, jiff::Timestamp::now() - YEAR);
        assert!(!*rx.borrow(), "took a renewed lease at {}s", 2 * i);
    }
    assert_eq!(fake.holder().as_deref(), Some(OTHER));
    assert_eq!(fake.writes_after(t0), 0, "the standby wrote");
    task.abort();
}

/// The leader's calls stop completing (a hung API server): it publishes "not leader" exactly
/// at the renew deadline after its last successful renewal, with a call still pending, and
/// writes nothing more.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_calls_hang_stands_down_at_the_renew_deadline() {
    let fake = Fake::default();
    let t0 = Instant::now();
    let (rx, task) = start(&fake, ME);
    at(t0 + MS).await;
    assert!(*rx.borrow(), "a free lease is taken at once");
    // Renewals at 2, 4, 6 s succeed; from 7 s every call hangs. The last renewal was sent at
    // 6 s, so the deadline is 16 s. The attempt of 8 s times out at 13 s (call timeout 5 s);
    // the one of 15 s is still pending at 16 s and would only time out at 20 s.
    at(t0 + Duration::from_secs(7)).await;
    fake.set(|s| s.hang = true);
    let deadline = t0 + Duration::from_secs(6) + LeaseConfig::DEFAULT_RENEW_DEADLINE;
    at(deadline - MS).await;
    assert!(*rx.borrow(), "stood down before the renew deadline");
    at(deadline + MS).await;
    assert!(!*rx.borrow(), "still leader past the renew deadline");
    assert_eq!(fake.writes_after(t0 + Duration::from_secs(7)), 0);
    task.abort();
}

/// After standing down, an agent leads again only through a conditional write: when the API
/// server answers again and the record still names it (nobody took over), it renews and leads.
#[tokio::test(start_paused = true)]
async fn a_leader_that_stood_down_leads_again_only_by_renewing() {
    let fake = Fake::default();
    let t0 = Instant::now();
    let (rx, task) = start(&fake, ME);
    at(t0 + Duration::from_secs(7)).await;
    fake.set(|s| s.hang = true);
    let deadline = t0 + Duration::from_secs(6) + LeaseConfig::DEFAULT_RENEW_DEADLINE;
    at(deadline + MS).await;
    assert!(!*rx.borrow());
    fake.set(|s| s.hang = false);
    at(deadline + LeaseConfig::DEFAULT_RETRY_PERIOD + MS).await;
    assert!(*rx.borrow());
    assert_eq!(
        fake.writes_after(deadline),
        1,
        "one renewal, after the API answered"
    );
    task.abort();
}

/// Renewals fail (500s): leadership ends at the deadline, not after the lease duration.
#[tokio::test(start_paused = true)]
async fn a_leader_whose_renewals_fail_stands_down_at_the_renew_deadline() {
    let fake = Fake::default();
    let t0 = Instant::now();
    let (rx, task) = start(&fake, ME);
    at(t0 + MS).await;
    fake.set(|s| s.fail = true);
    let deadline = t0 + LeaseConfig::DEFAULT_RENEW_DEADLINE;
    at(deadline - MS).await;
    assert!(*rx.borrow());
    at(deadline + MS).await;
    assert!(!*rx.borrow());
    task.abort();
}

/// A standby whose own calls hang is not stuck: each call times out and the next attempt runs.
#[tokio::test(start_paused = true)]
async fn a_standby_whose_calls_hang_keeps_trying() {
    let fake = Fake::with(|s| s.hang = true);
    let t0 = Instant::now();
    let (rx, task) = start(&fake, ME);
    at(t0 + Duration::from_secs(60)).await;
    assert!(!*rx.borrow());
    fake.set(|s| s.hang = false);
    // The pending attempt times out (≤ 5 s), the next one (2 s later) takes the free lease.
    at(t0 + Duration::from_secs(60 + 5 + 2) + MS).await;
    assert!(*rx.borrow());
    task.abort();
}

/// Release clears the holder when (and only when) we hold the Lease; a standby then takes it
/// at its next attempt instead of after the lease duration.
#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_the_next_attempt() {
    let fake = Fake::default();
    fake.write_as(OTHER, jiff::Timestamp::now());
    assert!(
        !release(&fake, &cfg(ME)).await.unwrap(),
        "released someone else's lease"
    );
    assert_eq!(fake.holder().as_deref(), Some(OTHER));

    let t0 = Instant::now();
    let (rx, task) = start(&fake, ME);
    at(t0 + Duration::from_secs(3)).await;
    assert!(!*rx.borrow());
    assert!(release(&fake, &cfg(OTHER)).await.unwrap());
    assert_eq!(fake.holder(), None);
    at(t0 + Duration::from_secs(3) + LeaseConfig::DEFAULT_RETRY_PERIOD + MS).await;
    assert!(
        *rx.borrow(),
        "a released lease was not taken at the next attempt"
    );
    assert_eq!(fake.holder().as_deref(), Some(ME));
    task.abort();
}
