//! Health of live objects: workloads rolled out, Jobs succeeded, PVCs bound, CRDs established,
//! Pods ready; anything else is healthy when present.

use serde_json::Value;

/// Health of one object or of a whole ConfigRepo (the worst of its objects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Healthy,
    Progressing,
    Degraded,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "Healthy",
            Health::Progressing => "Progressing",
            Health::Degraded => "Degraded",
        }
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn condition<'v>(obj: &'v Value, type_: &str) -> Option<&'v Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Whether `kind` has a health rule (other kinds are healthy when present, so listing their
/// metadata is enough).
pub fn has_rule(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "Job"
            | "PersistentVolumeClaim"
            | "CustomResourceDefinition"
            | "Pod"
    )
}

/// Health of a live object (its JSON), with a short reason when not healthy.
pub fn health(obj: &Value) -> (Health, String) {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let status = &obj["status"];
    let generation = int(&obj["metadata"]["generation"]);
    let observed = int(&status["observedGeneration"]);
    let stale = generation > 0 && observed < generation;
    match kind {
        "Deployment" => {
            if let Some(c) = condition(obj, "Progressing")
                && c["reason"] == "ProgressDeadlineExceeded"
            {
                return (Health::Degraded, "progress deadline exceeded".into());
            }
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            let (updated, available, total) = (
                int(&status["updatedReplicas"]),
                int(&status["availableReplicas"]),
                int(&status["replicas"]),
            );
            if stale || updated < want || available < want || total > want {
                (
                    Health::Progressing,
                    format!("{available}/{want} available, {updated} updated"),
                )
            } else {
                (Health::Healthy, String::new())
            }
        }
        "StatefulSet" => {
            let want = obj["spec"]["replicas"].as_i64().unwrap_or(1);
            let (ready, updated) = (
                int(&status["readyReplicas"]),
                int(&status["updatedReplicas"]),
            );
            let same_revision = status["currentRevision"] == status["updateRevision"];
            if stale || ready < want || updated < want || !same_revision {
                (Health::Progressing, format!("{ready}/{want} ready"))
            } else {
                (Health::Healthy, String::new())
            }
        }
        "DaemonSet" => {
            let want = int(&status["desiredNumberScheduled"]);
            let (available, updated) = (
                int(&status["numberAvailable"]),
                int(&status["updatedNumberScheduled"]),
            );
            if stale || available < want || updated < want {
                (Health::Progressing, format!("{available}/{want} available"))
            } else {
                (Health::Healthy, String::new())
            }
        }
        "Job" => {
            if condition(obj, "Failed").is_some_and(|c| c["status"] == "True") {
                return (Health::Degraded, "job failed".into());
            }
            let completions = obj["spec"]["completions"].as_i64().unwrap_or(1);
            if int(&status["succeeded"]) >= completions
                || condition(obj, "Complete").is_some_and(|c| c["status"] == "True")
            {
                (Health::Healthy, String::new())
            } else {
                (
                    Health::Progressing,
                    format!("{}/{completions} succeeded", int(&status["succeeded"])),
                )
            }
        }
        "PersistentVolumeClaim" => match status["phase"].as_str() {
            Some("Bound") => (Health::Healthy, String::new()),
            Some("Lost") => (Health::Degraded, "claim lost".into()),
            other => (
                Health::Progressing,
                format!("phase {}", other.unwrap_or("Pending")),
            ),
        },
        "CustomResourceDefinition" => {
            if condition(obj, "Established").is_some_and(|c| c["status"] == "True") {
                (Health::Healthy, String::new())
            } else {
                (Health::Progressing, "not established yet".into())
            }
        }
        "Pod" => match status["phase"].as_str() {
            Some("Failed") => (Health::Degraded, "pod failed".into()),
            Some("Succeeded") => (Health::Healthy, String::new()),
            _ if condition(obj, "Ready").is_some_and(|c| c["status"] == "True") => {
                (Health::Healthy, String::new())
            }
            _ => (Health::Progressing, "not ready".into()),
        },
        _ => (Health::Healthy, String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployments_are_healthy_when_rolled_out() {
        let d = |g, og, ready| json!({"kind": "Deployment", "metadata": {"generation": g}, "spec": {"replicas": 3}, "status": {"observedGeneration": og, "replicas": 3, "updatedReplicas": 3, "availableReplicas": ready}});
        assert_eq!(health(&d(2, 2, 3)).0, Health::Healthy);
        assert_eq!(health(&d(2, 1, 3)).0, Health::Progressing);
        assert_eq!(health(&d(2, 2, 1)).0, Health::Progressing);
        let stuck = json!({"kind": "Deployment", "spec": {"replicas": 1}, "status": {"conditions": [{"type": "Progressing", "reason": "ProgressDeadlineExceeded"}]}});
        assert_eq!(health(&stuck).0, Health::Degraded);
    }

    #[test]
    fn jobs_pvcs_crds_and_others() {
        assert_eq!(
            health(&json!({"kind": "Job", "spec": {}, "status": {"succeeded": 1}})).0,
            Health::Healthy
        );
        assert_eq!(health(&json!({"kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True"}]}})).0, Health::Degraded);
        assert_eq!(
            health(&json!({"kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}})).0,
            Health::Progressing
        );
        assert_eq!(
            health(&json!({"kind": "PersistentVolumeClaim", "status": {"phase": "Bound"}})).0,
            Health::Healthy
        );
        assert_eq!(health(&json!({"kind": "CustomResourceDefinition", "status": {"conditions": [{"type": "Established", "status": "True"}]}})).0, Health::Healthy);
        assert_eq!(health(&json!({"kind": "ConfigMap"})).0, Health::Healthy);
    }
}
