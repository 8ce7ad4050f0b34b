//! `analysis`: judges a canary with an `AnalysisTemplate` over a time window of Prometheus data
//! (threshold judge on the canary, Mann–Whitney comparison against the baseline), scores the
//! metrics by weighted groups and produces a [`Verdict`]. Query errors are never a pass.

pub mod stats;
pub mod verdict;

pub use verdict::{MetricOutcome, MetricResult, Observation, Outcome, Summary, Verdict, judge};

mod prometheus;
pub mod query;
pub mod report;
mod run;
#[cfg(test)]
mod tests;
pub mod validate;

pub use run::{RunError, analyze, retry_policy};
pub use validate::validate;
