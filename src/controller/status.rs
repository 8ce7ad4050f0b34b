//! Builds `ConfigRepo.status` from what a reconcile found. Pure and deterministic: the same
//! findings give the same status (transition times only move when a condition flips), so
//! writing it does not trigger another reconcile and a no-op reconcile writes nothing.

use crate::apply::Health;
use crate::crd::{
    Condition, ConditionStatus, ConfigRepoStatus, InventoryEntry, ObjectCounts, ObjectError,
};
use crate::plan::PruneDecision;

/// At most this many errors are kept in the status.
pub const MAX_ERRORS: usize = 20;

/// What one reconcile found, step by step (`None`: the step did not run).
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pub generation: Option<i64>,
    /// Commit fetched, or why fetching failed.
    pub fetched: Option<Result<String, String>>,
    /// Number of rendered objects, or the render errors.
    pub rendered: Option<Result<usize, Vec<ObjectError>>>,
    pub applied: Option<Applied>,
    pub prune: Option<(PruneDecision, usize, Vec<ObjectError>)>,
    pub health: Option<(Health, Vec<ObjectError>)>,
    pub inventory: Option<Vec<InventoryEntry>>,
    pub inventory_config_map: Option<String>,
    /// Drift found in this reconcile.
    pub drift: usize,
    pub suspended: bool,
}

/// The apply step's results.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub commit: String,
    pub desired: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub failed: Vec<ObjectError>,
    /// Nothing was written.
    pub noop: bool,
}

fn condition(
    prev: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    let status = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    let last = prev
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| {
            jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .map(|t| t.to_string())
                .unwrap_or_default()
        });
    Condition {
        type_: type_.into(),
        status,
        reason: reason.into(),
        message,
        last_transition_time: Some(last),
        observed_generation: generation,
    }
}

fn short(commit: &str) -> &str {
    if commit.len() > 12 && commit.chars().all(|c| c.is_ascii_hexdigit()) {
        &commit[..12]
    } else {
        commit
    }
}

/// The new status.
pub fn build(prev: &ConfigRepoStatus, f: &Findings) -> ConfigRepoStatus {
    let mut s = prev.clone();
    s.observed_generation = f.generation;
    let pc = prev.conditions.clone();
    let mut conds = Vec::new();
    let mut errors: Vec<ObjectError> = Vec::new();
    let g = f.generation;

    if f.suspended {
        conds.push(condition(
            &pc,
            "Ready",
            false,
            "Suspended",
            "reconciliation is suspended (spec.suspend)".into(),
            g,
        ));
        s.conditions = conds;
        return s;
    }

    let mut ready: Option<(&str, String)> = None; // first failure
    match &f.fetched {
        Some(Ok(commit)) => {
            s.fetched_commit = Some(commit.clone());
            conds.push(condition(
                &pc,
                "Fetched",
                true,
                "Fetched",
                format!("fetched {}", short(commit)),
                g,
            ));
        }
        Some(Err(e)) => {
            conds.push(condition(
                &pc,
                "Fetched",
                false,
                "FetchFailed",
                e.clone(),
                g,
            ));
            ready.get_or_insert(("FetchFailed", e.clone()));
        }
        None => {}
    }
    match &f.rendered {
        Some(Ok(n)) => conds.push(condition(
            &pc,
            "Rendered",
            true,
            "Rendered",
            format!("rendered {n} objects"),
            g,
        )),
        Some(Err(errs)) => {
            let msg = format!(
                "{} render error(s); first: {}",
                errs.len(),
                errs.first()
                    .map(|e| format!("{}: {}", e.object, e.message))
                    .unwrap_or_default()
            );
            conds.push(condition(
                &pc,
                "Rendered",
                false,
                "RenderFailed",
                msg.clone(),
                g,
            ));
            ready.get_or_insert((
                "RenderFailed",
                format!("{msg}; the last good state stays applied"),
            ));
            errors.extend(errs.iter().cloned());
        }
        None => {}
    }
    if let Some(a) = &f.applied {
        if !a.noop {
            s.objects = ObjectCounts {
                desired: a.desired as i64,
                created: a.created as i64,
                updated: a.updated as i64,
                unchanged: a.unchanged as i64,
                pruned: f.prune.as_ref().map_or(0, |p| p.1 as i64),
                failed: (a.failed.len() + f.prune.as_ref().map_or(0, |p| p.2.len())) as i64,
            };
        }
        if a.failed.is_empty() {
            s.applied_commit = Some(a.commit.clone());
            conds.push(condition(
                &pc,
                "Applied",
                true,
                "Applied",
                format!("{} objects in sync with {}", a.desired, short(&a.commit)),
                g,
            ));
        } else {
            let msg = format!(
                "{} of {} objects failed to apply; first: {}: {}",
                a.failed.len(),
                a.desired,
                a.failed[0].object,
                a.failed[0].message
            );
            conds.push(condition(
                &pc,
                "Applied",
                false,
                "ApplyFailed",
                msg.clone(),
                g,
            ));
            ready.get_or_insert(("ApplyFailed", msg));
            errors.extend(a.failed.iter().cloned());
        }
    }
    if let Some((decision, pruned, failed)) = &f.prune {
        let (ok, msg) = match decision {
            PruneDecision::Allowed if failed.is_empty() => (true, format!("pruned {pruned} objects")),
            PruneDecision::Allowed => (false, format!("{} objects failed to delete", failed.len())),
            PruneDecision::Nothing => (true, "nothing to prune".into()),
            PruneDecision::Disabled => (true, "pruning is disabled (spec.prune: false)".into()),
            PruneDecision::EmptyRender => (false, "the render is empty: refusing to prune everything (fix the bundle, or delete the ConfigRepo)".into()),
            PruneDecision::TooMany { count, inventory, max_fraction } => (
                false,
                format!(
                    "refusing to prune {count} of {inventory} objects ({:.0}% > maxPruneFraction {:.0}%); annotate the ConfigRepo fledge.dev/allow-mass-prune=true to allow it",
                    100.0 * *count as f64 / (*inventory).max(1) as f64,
                    100.0 * max_fraction
                ),
            ),
        };
        let reason = if failed.is_empty() {
            decision.reason()
        } else {
            "PruneFailed"
        };
        conds.push(condition(&pc, "Pruned", ok, reason, msg.clone(), g));
        if !ok {
            ready.get_or_insert((reason, msg));
        }
        errors.extend(failed.iter().cloned());
    }
    if let Some((h, unhealthy)) = &f.health {
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
        conds.push(condition(
            &pc,
            "Healthy",
            *h == Health::Healthy,
            h.as_str(),
            msg.clone(),
            g,
        ));
        if *h != Health::Healthy {
            ready.get_or_insert((h.as_str(), msg));
        }
    }
    if let Some(inv) = &f.inventory {
        s.inventory = inv.clone();
        s.inventory_config_map = f.inventory_config_map.clone();
    }
    s.drift_count += f.drift as i64;
    let (ok, reason, msg) = match ready {
        None => (
            true,
            "Synced",
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
    conds.insert(0, condition(&pc, "Ready", ok, reason, msg, g));
    // Keep conditions of steps that did not run this time (e.g. Applied during a fetch failure).
    for c in &pc {
        if !conds.iter().any(|n| n.type_ == c.type_) {
            conds.push(c.clone());
        }
    }
    conds.sort_by_key(|c| {
        [
            "Ready", "Fetched", "Rendered", "Applied", "Pruned", "Healthy",
        ]
        .iter()
        .position(|t| *t == c.type_)
        .unwrap_or(99)
    });
    s.conditions = conds;
    errors.truncate(MAX_ERRORS);
    s.errors = errors;
    s
}
