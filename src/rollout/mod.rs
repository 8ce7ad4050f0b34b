//! `rollout`: the pure core of progressive delivery. [`step`] takes a Rollout's spec, its status,
//! what the controller observed in the cluster and the time, and returns the next status and the
//! idempotent actions that make the cluster match it. No I/O here: the rollout controller reads
//! the cluster into [`Observations`], writes [`Decision::status`] (before anything else), then
//! carries out [`Decision::actions`] in order. Sits after `plan`/`apply` (which hand a held pod
//! template over in `status.handoff`) and drives `analysis` through [`AnalysisRequest`].
//!
//! # Contract with the controller
//!
//! 1. Observe ([`Observations`]), call [`step`].
//! 2. If `decision.status != status`, write it (status subresource, compare-and-set on
//!    `resourceVersion`). A failed write ends the pass: nothing else is done.
//! 3. Carry out `decision.actions` in order. Each is "make it so", safe to repeat, and safe to
//!    drop: the next pass derives the same actions again from the written status and fresh
//!    observations until the cluster matches. A crash anywhere loses nothing.
//! 4. Requeue: on any watch event of the Rollout, its workloads or route, and at the latest
//!    after [`Decision::requeue_after`].
//!
//! # Requests (`fledge promote|abort|retry|pause|resume`)
//!
//! The CLI sets the annotation [`REQUEST_ANNOTATION`] (`fledge.dev/request`) on the Rollout to
//! `<verb>@<nonce>` (verbs: `promote`, `promote-full`, `abort`, `retry`, `pause`, `resume`; the
//! nonce is any fresh token, e.g. a timestamp and random suffix). The engine acts on a value once:
//! it records it in `status.handledRequest`, written before the actions the request causes, so a
//! restart never acts on it twice; a request that does not apply in the current phase is recorded
//! as handled with the reason in `status.reason`. See [`Request`].
//!
//! # Semantics chosen (see `machine.rs` for the details)
//!
//! * **Supersede**: a new template in the hand-off during a rollout (before the stable Deployment
//!   received the canary template) aborts and restarts, like Argo Rollouts: traffic to stable,
//!   canary and baseline removed, then the steps start over with the new template and a fresh
//!   baseline. Not a failure: no failed hash, no git rollback. Back to the stable template in git
//!   mid-rollout: the same teardown, then `Healthy`. During promotion (stable already updated)
//!   the promotion finishes first, and the new template then starts a new rollout.
//! * A changed step list restarts the steps (index 0, `attempt` + 1) with the same canary.
//! * `Inconclusive` never fails the canary: weight 0 at once, workloads kept (with the `replicas`
//!   router they are scaled to 0, the pods *are* the traffic), `Paused`, retried automatically
//!   ([`MAX_AUTO_RETRIES`], backoff from [`RETRY_BACKOFF_START`] doubling to [`RETRY_BACKOFF_MAX`])
//!   once the metrics backend answers, or on `retry`.
//! * A failure (failed analysis, progress deadline, `abort`) tears down (traffic first), records
//!   the failed template hash, goes `RolledBack`, and hands a [`FailedRollout`] to the git
//!   rollback; the hash is not tried again until git changes the template (or `retry`).
//! * **Freeze** ([`Observations::freeze`], the andon cord of the ConfigRepo): no new rollout
//!   starts (the hand-off waits); a canary in flight pauses with reason `Frozen` and its weights
//!   unchanged, or in `abort` mode is taken down like a supersede (no failed hash, no git
//!   revert). A promotion under way finishes. Git going back to the stable template still tears
//!   down. The unfreeze resumes what the freeze paused and starts held changes. See `freeze.rs`.

mod actions;
pub mod conditions;
mod context;
mod freeze;
mod gate;
mod machine;
pub mod replicas;
mod request;
pub mod routes;
mod types;

#[cfg(test)]
mod freeze_tests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_flows;

pub use freeze::Freeze;
pub use machine::{Progress, progress, step};
pub use request::{Request, RequestError, Verb};
pub use types::*;

use std::time::Duration;

/// Annotation on the Rollout carrying a user request, `<verb>@<nonce>`.
pub const REQUEST_ANNOTATION: &str = "fledge.dev/request";

/// Annotation on the stable, canary and baseline Deployments holding the hash of the pod template
/// fledge (or sync, on create) applied; the controller reports it as the workload's template hash.
pub const TEMPLATE_HASH_ANNOTATION: &str = "fledge.dev/template-hash";

/// Automatic retries of an analysis step after inconclusive results; then a human (`retry`).
pub const MAX_AUTO_RETRIES: u32 = 5;

/// Wait before the first automatic retry after an inconclusive result.
pub const RETRY_BACKOFF_START: Duration = Duration::from_secs(60);

/// Longest wait between automatic retries.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30 * 60);

/// Longest time the controller should wait before calling [`step`] again while something is in
/// flight, even without a watch event.
pub const RESYNC: Duration = Duration::from_secs(30);
