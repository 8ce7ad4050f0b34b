//! The andon cord on a `ConfigRepo`: `spec.freeze` (pulled with `fledge freeze`), and the
//! `status.frozen` / `status.gitFreeze` that sync reports (the latter from the bundle's `freeze`
//! field). Read by sync (an `all` freeze applies nothing) and by the rollout controller (no new
//! rollout starts; in-flight canaries pause or abort).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A freeze pulled from outside git (`fledge freeze`). While set, no new rollout starts for this
/// repository, in-flight canaries pause where they are (or abort with `abort`), and plain
/// configuration still syncs unless `all`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FreezeSpec {
    /// Why the line is stopped (shown in status, events and commit statuses).
    #[schemars(length(min = 1, max = 512))]
    pub reason: String,
    /// Who pulled the cord.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 128))]
    pub by: String,
    /// When it was pulled (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Abort in-flight canaries (traffic back to stable, canary removed, no git revert) instead
    /// of pausing them. The change goes out again from its first step after the unfreeze.
    #[serde(default, skip_serializing_if = "is_false")]
    pub abort: bool,
    /// Stop all syncing too: fetch and plan, apply nothing, prune nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where a freeze comes from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FreezeSource {
    /// `fledge freeze` (`spec.freeze`).
    Cli,
    /// The `freeze` field of the bundle (`fledge.yaml`) at the fetched commit.
    Git,
}

/// What a freeze does to canaries in flight.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FreezeMode {
    /// Hold them where they are: weights and workloads stay.
    #[default]
    Pause,
    /// Take them down: traffic to stable, canary and baseline removed, no git revert.
    Abort,
}

/// A freeze in effect, as reported in the status.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Frozen {
    /// `cli` or `git`. With both, `cli` is reported (and rules) until it is lifted.
    pub source: FreezeSource,
    /// Who froze it (for `git`: the `by` field, else the author of the commit it was first
    /// seen in).
    pub by: String,
    /// Why.
    pub reason: String,
    /// Since when (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// `pause` or `abort` of in-flight canaries.
    pub mode: FreezeMode,
    /// Plain configuration is held too.
    #[serde(default, skip_serializing_if = "is_false")]
    pub all: bool,
    /// One line: `by alice (cli): incident 4711` — the `Frozen` printer column.
    pub message: String,
}

impl Frozen {
    /// Who, why and since when, on one line: `by alice (cli): incident 4711 since <time>`.
    pub fn summary(&self) -> String {
        match &self.since {
            Some(since) => format!("{} since {since}", self.message),
            None => self.message.clone(),
        }
    }

    /// The freeze `spec` from `source`, first seen at `since` when it does not say.
    pub fn from_spec(spec: &FreezeSpec, source: FreezeSource, since: Option<String>) -> Frozen {
        let by = if spec.by.trim().is_empty() {
            "unknown".to_owned()
        } else {
            spec.by.clone()
        };
        let mode = if spec.abort {
            FreezeMode::Abort
        } else {
            FreezeMode::Pause
        };
        let src = match source {
            FreezeSource::Cli => "cli",
            FreezeSource::Git => "git",
        };
        let mut message = format!("by {by} ({src}");
        if spec.abort {
            message.push_str(", abort");
        }
        if spec.all {
            message.push_str(", all");
        }
        message.push_str(&format!("): {}", spec.reason));
        Frozen {
            source,
            by: crate::limits::escape_controls(&by).into_owned(),
            reason: crate::limits::escape_controls(&spec.reason).into_owned(),
            since: spec.since.clone().or(since),
            mode,
            all: spec.all,
            message: crate::limits::escape_controls(&message).into_owned(),
        }
    }

    /// Whether `self` and `other` are the same freeze (ignoring when it was first seen).
    pub fn same_as(&self, other: &Frozen) -> bool {
        (self.source, &self.by, &self.reason, self.mode, self.all)
            == (
                other.source,
                &other.by,
                &other.reason,
                other.mode,
                other.all,
            )
    }
}

/// The freeze in effect: the CLI's (`spec.freeze`) first, else git's (`status.gitFreeze`).
pub fn effective(cli: Option<&FreezeSpec>, git: Option<&Frozen>) -> Option<Frozen> {
    match cli {
        Some(spec) => Some(Frozen::from_spec(spec, FreezeSource::Cli, None)),
        None => git.cloned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_freeze_rules_over_git_and_says_who_and_why() {
        let git = Frozen::from_spec(
            &FreezeSpec {
                reason: "release train".into(),
                by: "bob".into(),
                ..Default::default()
            },
            FreezeSource::Git,
            Some("2026-01-01T00:00:00Z".into()),
        );
        assert_eq!(git.message, "by bob (git): release train");
        assert_eq!(effective(None, Some(&git)), Some(git.clone()));
        let cli = FreezeSpec {
            reason: "incident\n42".into(),
            by: "alice".into(),
            abort: true,
            all: true,
            since: Some("2026-02-02T00:00:00Z".into()),
        };
        let e = effective(Some(&cli), Some(&git)).unwrap();
        assert_eq!(e.source, FreezeSource::Cli);
        assert_eq!(e.mode, FreezeMode::Abort);
        assert!(e.all);
        assert_eq!(e.since.as_deref(), Some("2026-02-02T00:00:00Z"));
        assert!(!e.message.contains('\n'), "control characters escaped");
        assert!(
            e.message
                .starts_with("by alice (cli, abort, all): incident")
        );
        assert_eq!(effective(None, None), None);
    }
}
