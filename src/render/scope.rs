//! Which kinds are namespaced: a built-in table of Kubernetes' own kinds (and of fledge's and a
//! few very common CRDs), the CRDs in the same render, and, when a cluster is at hand, API
//! discovery. Unknown stays unknown: the renderer never guesses.

use std::collections::HashMap;

/// `(group, kind) -> namespaced`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scopes {
    known: HashMap<(String, String), bool>,
    /// Kinds learnt from CRDs in this render.
    crds: HashMap<(String, String), bool>,
}

const NAMESPACED: &[(&str, &str)] = &[
    ("", "Pod"),
    ("", "Service"),
    ("", "ConfigMap"),
    ("", "Secret"),
    ("", "ServiceAccount"),
    ("", "PersistentVolumeClaim"),
    ("", "Endpoints"),
    ("", "Event"),
    ("", "LimitRange"),
    ("", "ResourceQuota"),
    ("", "ReplicationController"),
    ("", "PodTemplate"),
    ("", "Binding"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("apps", "ControllerRevision"),
    ("batch", "Job"),
    ("batch", "CronJob"),
    ("autoscaling", "HorizontalPodAutoscaler"),
    ("policy", "PodDisruptionBudget"),
    ("networking.k8s.io", "Ingress"),
    ("networking.k8s.io", "NetworkPolicy"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("coordination.k8s.io", "Lease"),
    ("discovery.k8s.io", "EndpointSlice"),
    ("events.k8s.io", "Event"),
    ("storage.k8s.io", "CSIStorageCapacity"),
    ("resource.k8s.io", "ResourceClaim"),
    ("resource.k8s.io", "ResourceClaimTemplate"),
    ("fledge.dev", "Rollout"),
    ("fledge.dev", "AnalysisTemplate"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "HTTPRoute"),
    ("gateway.networking.k8s.io", "GRPCRoute"),
    ("gateway.networking.k8s.io", "TCPRoute"),
    ("gateway.networking.k8s.io", "ReferenceGrant"),
    ("networking.istio.io", "VirtualService"),
    ("networking.istio.io", "DestinationRule"),
    ("networking.istio.io", "Gateway"),
    ("networking.istio.io", "ServiceEntry"),
    ("monitoring.coreos.com", "ServiceMonitor"),
    ("monitoring.coreos.com", "PodMonitor"),
    ("monitoring.coreos.com", "PrometheusRule"),
];

const CLUSTER: &[(&str, &str)] = &[
    ("", "Namespace"),
    ("", "Node"),
    ("", "PersistentVolume"),
    ("", "ComponentStatus"),
    ("rbac.authorization.k8s.io", "ClusterRole"),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
    ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ("apiregistration.k8s.io", "APIService"),
    ("storage.k8s.io", "StorageClass"),
    ("storage.k8s.io", "CSIDriver"),
    ("storage.k8s.io", "CSINode"),
    ("storage.k8s.io", "VolumeAttachment"),
    ("scheduling.k8s.io", "PriorityClass"),
    ("node.k8s.io", "RuntimeClass"),
    ("networking.k8s.io", "IngressClass"),
    (
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    ),
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
    ("certificates.k8s.io", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
    ("resource.k8s.io", "DeviceClass"),
    ("resource.k8s.io", "ResourceSlice"),
    ("fledge.dev", "ConfigRepo"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

impl Scopes {
    /// The built-in table.
    pub fn builtin() -> Scopes {
        let mut s = Scopes::default();
        for (g, k) in NAMESPACED {
            s.known.insert(((*g).into(), (*k).into()), true);
        }
        for (g, k) in CLUSTER {
            s.known.insert(((*g).into(), (*k).into()), false);
        }
        s
    }

    /// Adds or overrides one kind (from a CRD in the render or from discovery).
    pub fn insert(&mut self, group: &str, kind: &str, namespaced: bool) {
        self.known
            .insert((group.to_owned(), kind.to_owned()), namespaced);
    }

    /// `Some(true)` namespaced, `Some(false)` cluster-scoped, `None` unknown.
    pub fn namespaced(&self, group: &str, kind: &str) -> Option<bool> {
        self.known
            .get(&(group.to_owned(), kind.to_owned()))
            .copied()
    }

    /// Adds the kinds a CustomResourceDefinition object defines. A CRD may not redefine a
    /// built-in kind (the API server would refuse it, and believing it would put a default
    /// namespace on a cluster-scoped object or leave one off a namespaced object).
    pub fn learn_crd(&mut self, crd: &serde_json::Value) -> Result<(), String> {
        let spec = &crd["spec"];
        if let (Some(group), Some(kind), Some(scope)) = (
            spec["group"].as_str(),
            spec["names"]["kind"].as_str(),
            spec["scope"].as_str(),
        ) {
            let namespaced = match scope {
                "Namespaced" => true,
                "Cluster" => false,
                other => {
                    return Err(format!(
                        "CRD scope {other:?} is neither Namespaced nor Cluster"
                    ));
                }
            };
            let table = NAMESPACED
                .iter()
                .map(|gk| (gk, true))
                .chain(CLUSTER.iter().map(|gk| (gk, false)))
                .find(|((g, k), _)| *g == group && *k == kind)
                .map(|(_, n)| n);
            if group.is_empty() || table.is_some_and(|n| n != namespaced) {
                return Err(format!(
                    "CRD redefines the scope of the built-in kind {kind} (group {group:?}); the API server would refuse it"
                ));
            }
            if self
                .crds
                .get(&(group.to_owned(), kind.to_owned()))
                .is_some_and(|n| *n != namespaced)
            {
                return Err(format!(
                    "another CRD in the render defines {kind} (group {group:?}) with the other scope"
                ));
            }
            self.crds
                .insert((group.to_owned(), kind.to_owned()), namespaced);
            self.insert(group, kind, namespaced);
        }
        Ok(())
    }
}

/// Scopes of every kind a cluster serves (API discovery), on top of the built-in table.
pub async fn discover(client: &kube::Client) -> Result<Scopes, kube::Error> {
    let mut scopes = Scopes::builtin();
    let discovery = kube::Discovery::new(client.clone()).run().await?;
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            scopes.insert(
                &ar.group,
                &ar.kind,
                caps.scope == kube::discovery::Scope::Namespaced,
            );
        }
    }
    Ok(scopes)
}
