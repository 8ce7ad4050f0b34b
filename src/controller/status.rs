//! Builds `ConfigRepo.status` from a reconcile's outcome. Pure and deterministic: the same
//! outcome and the same previous status give the same status (`now` is passed in, and a
//! transition time only moves when a condition flips), so writing it does not trigger another
//! reconcile and a no-op reconcile writes nothing.

use super::reconcile::SyncError;
use super::steps::{Done, Synced};
use crate::apply::Health;
use crate::crd::{Condition, ConditionStatus, ConfigRepoStatus, ObjectCounts, ObjectError};
use crate::plan::PruneDecision;

/// At most this many errors are kept in the status.
pub const MAX_ERRORS: usize = 20;

/// What a reconcile came to.
pub enum Outcome {
    /// `spec.suspend`: nothing ran.
    Suspended,
    Synced(Result<Synced, SyncError>),
    /// A sync that fetched `commit` and then stopped before applying (inventory or cluster
    /// unreadable).
    StoppedAfterFetch {
        commit: String,
        error: SyncError,
    },
}

const ORDER: [&str; 6] = [
    "Ready", "Fetched", "Rendered", "Applied", "Pruned", "Healthy",
];

struct Conditions<'p> {
    prev: &'p [Condition],
    generation: Option<i64>,
    now: String,
    out: Vec<Condition>,
    /// The first failure: it becomes Ready's reason.
    first_failure: Option<(String, String)>,
}

impl Conditions<'_> {
    fn set(&mut self, type_: &str, ok: bool, reason: &str, message: String) {
        let status = if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        };
        let last = self
            .prev
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| self.now.clone());
        if !ok && self.first_failure.is_none() {
            self.first_failure = Some((reason.to_owned(), message.clone()));
        }
        self.out.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message,
            last_transition_time: Some(last),
            observed_generation: self.generation,
        });
    }
}

fn short(commit: &str) -> &str {
    if commit.len() > 12 && commit.chars().all(|c| c.is_ascii_hexdigit()) {
        &commit[..12]
    } else {
        commit
    }
}

fn first(errors: &[ObjectError]) -> String {
    errors
        .first()
        .map(|e| format!("{}: {}", e.object, e.message))
        .unwrap_or_default()
}

/// The new status.
pub fn build(
    prev: &ConfigRepoStatus,
    generation: Option<i64>,
    outcome: &Outcome,
    now: jiff::Timestamp,
) -> ConfigRepoStatus {
    let mut s = prev.clone();
    s.observed_generation = generation;
    let mut c = Conditions {
        prev: &prev.conditions,
        generation,
        now: now
            .round(jiff::Unit::Second)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        out: Vec::new(),
        first_failure: None,
    };
    let mut errors: Vec<ObjectError> = Vec::new();
    match outcome {
        Outcome::Suspended => {
            c.set(
                "Ready",
                false,
                "Suspended",
                "reconciliation is suspended (spec.suspend)".into(),
            );
            s.conditions = c.out;
            return s;
        }
        Outcome::Synced(Err(e)) | Outcome::StoppedAfterFetch { error: e, .. } => {
            if let Outcome::StoppedAfterFetch { commit, .. } = outcome {
                s.fetched_commit = Some(commit.clone());
                c.set(
                    "Fetched",
                    true,
                    "Fetched",
                    format!("fetched {}", short(commit)),
                );
            }
            failed_step(&mut c, e);
            // Steps that stop a sync before applying name what could not be read.
            let object = match e {
                SyncError::Inventory(_) | SyncError::RecordInventory(_) => Some("inventory"),
                SyncError::Observe(_) | SyncError::Discovery(_) => Some("cluster"),
                _ => None,
            };
            if let Some(object) = object {
                errors.push(ObjectError {
                    object: object.into(),
                    message: e.to_string(),
                });
            }
        }
        Outcome::Synced(Ok(synced)) => {
            s.fetched_commit = Some(synced.commit.clone());
            c.set(
                "Fetched",
                true,
                "Fetched",
                format!("fetched {}", short(&synced.commit)),
            );
            match &synced.result {
                Err(render) => {
                    let list: Vec<ObjectError> = render
                        .0
                        .iter()
                        .map(|e| ObjectError {
                            object: e.path.clone(),
                            message: e.to_string(),
                        })
                        .collect();
                    c.set(
                        "Rendered",
                        false,
                        "RenderFailed",
                        format!(
                            "{} render error(s); first: {}; the last good state stays applied",
                            list.len(),
                            first(&list)
                        ),
                    );
                    errors.extend(list);
                }
                Ok(done) => {
                    c.set(
                        "Rendered",
                        true,
                        "Rendered",
                        format!("rendered {} objects", done.objects().len()),
                    );
                    sync_conditions(&mut s, &mut c, &mut errors, &synced.commit, done);
                }
            }
        }
    }
    let (ok, reason, msg) = match c.first_failure.clone() {
        None => (
            true,
            "Synced".to_owned(),
            format!(
                "{} in sync and healthy",
                s.applied_commit
                    .as_deref()
                    .map(short)
                    .unwrap_or("repository")
            ),
        ),
        Some((reason, msg)) => (false, reason, msg),
    };
    c.set("Ready", ok, &reason, msg);
    // Keep conditions of steps that did not run this time (e.g. Applied during a fetch failure).
    let mut conds = c.out;
    for p in &prev.conditions {
        if !conds.iter().any(|n| n.type_ == p.type_) {
            conds.push(p.clone());
        }
    }
    conds.sort_by_key(|c| ORDER.iter().position(|t| *t == c.type_).unwrap_or(99));
    s.conditions = conds;
    errors.truncate(MAX_ERRORS);
    s.errors = errors;
    s
}

fn failed_step(c: &mut Conditions, e: &SyncError) {
    let message = e.to_string();
    match e {
        SyncError::Fetch { .. } | SyncError::Credentials(_) => {
            c.set("Fetched", false, "FetchFailed", message)
        }
        SyncError::Spec(_) => c.set("Fetched", false, "InvalidSpec", message),
        SyncError::Discovery(_) | SyncError::Observe(_) => c.set(
            "Applied",
            false,
            "ClusterUnavailable",
            format!("{message}; nothing applied"),
        ),
        SyncError::Frozen { .. } => c.set("Applied", false, "Frozen", message),
        SyncError::RecordFreeze(_) => c.set(
            "Applied",
            false,
            "StatusUnavailable",
            format!("{message}; nothing applied"),
        ),
        SyncError::Inventory(_) | SyncError::RecordInventory(_) => c.set(
            "Applied",
            false,
            "InventoryUnavailable",
            format!("{message}; nothing applied"),
        ),
    }
}

fn sync_conditions(
    s: &mut ConfigRepoStatus,
    c: &mut Conditions,
    errors: &mut Vec<ObjectError>,
    commit: &str,
    d: &Done,
) {
    let objects = d.objects();
    let failed: Vec<ObjectError> = d
        .applied
        .failed
        .iter()
        .map(|(i, e)| ObjectError {
            object: objects[*i].key.to_string(),
            message: e.message.clone(),
        })
        .chain(d.handed.failed.iter().cloned())
        .chain(d.recorded.error.iter().map(|e| ObjectError {
            object: "inventory".into(),
            message: e.clone(),
        }))
        .collect();
    let failed_idx: std::collections::BTreeSet<usize> =
        d.applied.failed.iter().map(|(i, _)| *i).collect();
    let ok_count = |create: bool| {
        d.plan
            .apply
            .iter()
            .filter(|(i, a)| {
                !failed_idx.contains(i) && (matches!(a, crate::plan::Action::Create) == create)
            })
            .count() as i64
    };
    if !d.plan.is_noop() || !failed.is_empty() {
        s.objects = ObjectCounts {
            desired: objects.len() as i64,
            created: ok_count(true),
            updated: ok_count(false),
            unchanged: d.plan.unchanged.len() as i64,
            pruned: d.pruned.deleted.len() as i64,
            failed: (failed.len() + d.pruned.failed.len()) as i64,
        };
    }
    s.drift_count = d.plan.drift() as i64;
    if failed.is_empty() {
        s.applied_commit = Some(commit.to_owned());
        let held = d.plan.handoffs.len();
        let note = if held > 0 {
            format!("; {held} pod template change(s) go out as a canary")
        } else {
            String::new()
        };
        c.set(
            "Applied",
            true,
            "Applied",
            format!(
                "{} objects in sync with {}{note}",
                objects.len(),
                short(commit)
            ),
        );
    } else {
        c.set(
            "Applied",
            false,
            "ApplyFailed",
            format!(
                "{} of {} objects failed to apply; first: {}",
                failed.len(),
                objects.len(),
                first(&failed)
            ),
        );
        errors.extend(failed);
    }
    let p = &d.pruned;
    let due = d.plan.prune.len();
    let (ok, reason, msg) = match (&p.decision, p.failed.is_empty()) {
        (PruneDecision::Allowed, true) => (
            true,
            "Pruned",
            format!("pruned {} objects", p.deleted.len()),
        ),
        (PruneDecision::Allowed, false) => (
            false,
            "PruneFailed",
            format!(
                "{} of {due} objects failed to delete; first: {}",
                p.failed.len(),
                first(&p.failed)
            ),
        ),
        (decision, _) => (
            !decision.refused(),
            decision.reason(),
            decision.explain(due),
        ),
    };
    let msg = if p.skipped_lost_inventory {
        format!("{msg} (the inventory ConfigMap was lost: nothing could be pruned this time)")
    } else {
        msg
    };
    c.set("Pruned", ok, reason, msg);
    errors.extend(p.failed.iter().cloned());
    let (h, unhealthy) = d.health();
    let msg = match unhealthy.first() {
        None => "all objects healthy".to_owned(),
        Some(e) => format!(
            "{} object(s) not healthy; first: {}: {}",
            unhealthy.len(),
            e.object,
            e.message
        ),
    };
    s.health = Some(h.as_str().into());
    c.set("Healthy", h == Health::Healthy, h.as_str(), msg);
    s.inventory = if d.recorded.config_map.is_some() {
        Vec::new()
    } else {
        d.recorded.entries.clone()
    };
    s.inventory_config_map = d.recorded.config_map.clone();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Reason;

    fn fetch_failed() -> Outcome {
        Outcome::Synced(Err(SyncError::Fetch {
            message: "remote not found".into(),
            reason: Reason::NotFound,
            failures: 3,
        }))
    }

    /// Defect: status building read the wall clock and `driftCount` only grew, so the status
    /// changed on every pass and re-triggered its own reconcile.
    #[test]
    fn the_same_outcome_gives_the_same_status_whatever_the_time() {
        let t0 = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let t1 = jiff::Timestamp::from_second(1_700_000_600).unwrap();
        let first = build(&ConfigRepoStatus::default(), Some(1), &fetch_failed(), t0);
        let again = build(&first, Some(1), &fetch_failed(), t1);
        assert_eq!(
            first, again,
            "a repeated outcome must not change the status"
        );
        let ready = first
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(
            ready.last_transition_time.as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
        assert_eq!(ready.status, ConditionStatus::False);
        assert!(first.errors.is_empty());
        // Another reason, same status: the transition time stays (it moves only on a flip).
        let suspended = build(&again, Some(2), &Outcome::Suspended, t1);
        let ready = suspended
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason, "Suspended");
        assert_eq!(
            ready.last_transition_time.as_deref(),
            Some("2023-11-14T22:13:20Z")
        );
    }

    #[test]
    fn each_failed_step_names_its_condition() {
        let cases = [
            (
                SyncError::Spec("spec.interval \"0s\" is shorter than 1s".into()),
                "Fetched",
                "InvalidSpec",
            ),
            (
                SyncError::Credentials("no key".into()),
                "Fetched",
                "FetchFailed",
            ),
            (
                SyncError::Inventory("damaged".into()),
                "Applied",
                "InventoryUnavailable",
            ),
            (
                SyncError::Discovery("down".into()),
                "Applied",
                "ClusterUnavailable",
            ),
        ];
        for (e, type_, reason) in cases {
            let s = build(
                &ConfigRepoStatus::default(),
                None,
                &Outcome::Synced(Err(e)),
                jiff::Timestamp::UNIX_EPOCH,
            );
            let c = s.conditions.iter().find(|c| c.type_ == type_).unwrap();
            assert_eq!(
                (c.status, c.reason.as_str()),
                (ConditionStatus::False, reason)
            );
            assert_eq!(
                s.conditions[0].reason, reason,
                "Ready carries the first failure"
            );
        }
    }
}
