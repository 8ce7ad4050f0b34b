//! The prune guards (DESIGN §8), decided in the plan: an empty render prunes nothing, pruning
//! more than `maxPruneFraction` of the inventory in one reconcile is refused unless allowed, and
//! `spec.prune: false` turns pruning off. A failed apply of some other object does not stop
//! pruning what git removed: a complete render defines the desired set.

use super::{Plan, Policy};

/// Whether the prune part of a plan may run.
#[derive(Debug, Clone, PartialEq)]
pub enum PruneDecision {
    /// Delete these.
    Allowed,
    /// Nothing to prune.
    Nothing,
    /// Pruning disabled by `spec.prune: false`.
    Disabled,
    /// The render is empty: never prune everything because of it.
    EmptyRender,
    /// More than `max_fraction` of the inventory would go.
    TooMany {
        count: usize,
        inventory: usize,
        max_fraction: f64,
    },
}

impl PruneDecision {
    /// Condition reason (stable, CamelCase).
    pub fn reason(&self) -> &'static str {
        match self {
            PruneDecision::Allowed => "Pruned",
            PruneDecision::Nothing => "NothingToPrune",
            PruneDecision::Disabled => "PruneDisabled",
            PruneDecision::EmptyRender => "EmptyRenderRefused",
            PruneDecision::TooMany { .. } => "MassPruneRefused",
        }
    }

    /// Whether this decision refuses a prune that was due (a guard tripped).
    pub fn refused(&self) -> bool {
        matches!(
            self,
            PruneDecision::EmptyRender | PruneDecision::TooMany { .. }
        )
    }

    /// What it means for the objects due for pruning, in words for the status.
    pub fn explain(&self, due: usize) -> String {
        match self {
            PruneDecision::Allowed => format!("{due} object(s) left git and are deleted"),
            PruneDecision::Nothing => "nothing to prune".into(),
            PruneDecision::Disabled => format!(
                "{due} object(s) left git but pruning is disabled (spec.prune: false)"
            ),
            PruneDecision::EmptyRender => "the render is empty: refusing to prune everything (fix the bundle, or delete the ConfigRepo)".into(),
            PruneDecision::TooMany {
                count,
                inventory,
                max_fraction,
            } => format!(
                "refusing to prune {count} of {inventory} objects ({:.0}% > maxPruneFraction {:.0}%); annotate the ConfigRepo fledge.dev/allow-mass-prune=true to allow it",
                100.0 * *count as f64 / (*inventory).max(1) as f64,
                100.0 * max_fraction
            ),
        }
    }
}

/// Decides whether `plan.prune` may run under `policy`.
pub fn prune_decision(
    plan: &Plan,
    desired_count: usize,
    inventory_count: usize,
    policy: &Policy,
) -> PruneDecision {
    if plan.prune.is_empty() {
        return PruneDecision::Nothing;
    }
    if !policy.prune {
        return PruneDecision::Disabled;
    }
    if desired_count == 0 {
        return PruneDecision::EmptyRender;
    }
    let fraction = plan.prune.len() as f64 / inventory_count.max(1) as f64;
    if fraction > policy.max_prune_fraction && !policy.allow_mass_prune {
        return PruneDecision::TooMany {
            count: plan.prune.len(),
            inventory: inventory_count,
            max_fraction: policy.max_prune_fraction,
        };
    }
    PruneDecision::Allowed
}
