//! EndpointSlices for the loopback pod IPs. The API server refuses endpoint addresses in
//! 127.0.0.0/8 (`may not be in the loopback range`), so the controller-manager's EndpointSlice
//! controller cannot publish the env's pods. The runner does it for the pods it serves: for
//! every Service with a selector, one slice `<service>-loopback` (label
//! `kubernetes.io/service-name`, so gateways such as Traefik find it) of `addressType: FQDN`
//! (an IP-shaped name passes that validation) listing the selected pods whose demo app runs, as
//! ready endpoints. Owned by the Service, so it goes away with it.

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

pub const MANAGED_BY: &str = "pod-runner.fledge.dev";

/// The slice `svc` should have: (namespace, name, object), or `None` for Services without a
/// selector (their endpoints are someone else's).
pub fn slice_for(
    svc: &Service,
    pods: &[Arc<Pod>],
    serving: &HashSet<String>,
) -> Option<(String, String, serde_json::Value)> {
    let ns = svc.metadata.namespace.clone()?;
    let name = svc.metadata.name.clone()?;
    let uid = svc.metadata.uid.clone()?;
    let spec = svc.spec.as_ref()?;
    let selector = spec.selector.as_ref().filter(|s| !s.is_empty())?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let mut selected: Vec<&Pod> = pods
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .filter(|p| p.metadata.uid.as_ref().is_some_and(|u| serving.contains(u)))
        .filter(|p| {
            let labels = p.metadata.labels.clone().unwrap_or_default();
            selector.iter().all(|(k, v)| labels.get(k) == Some(v))
        })
        .collect();
    selected.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut ports = Vec::new();
    for p in spec.ports.iter().flatten() {
        let port = match &p.target_port {
            None => Some(p.port),
            Some(IntOrString::Int(i)) => Some(*i),
            Some(IntOrString::String(named)) => selected.iter().find_map(|pod| {
                pod.spec
                    .as_ref()?
                    .containers
                    .iter()
                    .flat_map(|c| c.ports.iter().flatten())
                    .find(|cp| cp.name.as_deref() == Some(named.as_str()))
                    .map(|cp| cp.container_port)
            }),
        };
        if let Some(port) = port {
            // Always a name, "" for an unnamed port: readers match ports by name.
            ports.push(serde_json::json!({
                "name": p.name.clone().unwrap_or_default(),
                "port": port,
                "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            }));
        }
    }
    let endpoints: Vec<serde_json::Value> = selected
        .iter()
        .filter_map(|pod| {
            let ip = pod.status.as_ref()?.pod_ip.clone()?;
            Some(serde_json::json!({
                "addresses": [ip],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "nodeName": pod.spec.as_ref()?.node_name,
                "targetRef": {
                    "kind": "Pod",
                    "namespace": ns,
                    "name": pod.metadata.name,
                    "uid": pod.metadata.uid,
                },
            }))
        })
        .collect();
    let slice_name = format!("{name}-loopback");
    let labels: BTreeMap<&str, &str> = [
        ("kubernetes.io/service-name", name.as_str()),
        ("endpointslice.kubernetes.io/managed-by", MANAGED_BY),
    ]
    .into();
    let obj = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name,
            "namespace": ns,
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Service", "name": name, "uid": uid,
                "controller": true,
            }],
        },
        "addressType": "FQDN",
        "ports": ports,
        "endpoints": endpoints,
    });
    Some((ns, slice_name, obj))
}
