//! The mesh traffic routers of the rollout controller (`spec.traffic.gatewayAPI.httpRoute`,
//! `spec.traffic.istio.virtualService`): the I/O around [`crate::rollout::routes`]. Called from
//! the observe step (achieved weights) and for the engine's [`Action::SetWeight`]
//! (`crate::rollout::Action`).
//!
//! * **Track Services.** The route names `<service>-stable`, `<service>-canary` and
//!   `<service>-baseline` (`service` = `spec.service`). The router makes them, on every pass
//!   (create if absent; re-applied only when they differ): server-side apply as
//!   `fledge-rollout`, owned by the Rollout (garbage-collected with it), ports copied from
//!   `spec.service`'s Service, selector = that Service's selector plus `fledge.dev/track:
//!   <track>`. A Service of that name that the Rollout does not own (written in git, say) is
//!   left alone and used as it is. The stable pods must carry `fledge.dev/track: stable` for
//!   `<service>-stable` to select them.
//! * **Weights.** A JSON patch of the split rules' `weight` members only, as `fledge-rollout`
//!   (see the module doc of [`crate::rollout::routes`] for why not server-side apply).
//! * **Achieved.** The weights the route stores, read back; for an HTTPRoute only once every
//!   gateway reporting on it accepted that generation and resolved its backends. Anything
//!   else (route missing, no split rule, rules disagreeing, gateway refusing) is `None`: the
//!   engine then neither counts the step as reached nor removes a canary.

use crate::crd::Rollout;
use crate::labels::{ROLLOUT_FIELD_MANAGER, TRACK_LABEL};
use crate::rollout::RouterObs;
use crate::rollout::routes::{self, Backends, RouteError, RouteKind, RouteRef};
use k8s_openapi::api::core::v1::{Service, ServicePort};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

/// Why the router could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("the Service {0} named by spec.service does not exist")]
    NoService(String),
    #[error("the {kind} {name} named by spec.traffic does not exist")]
    NoRoute { kind: &'static str, name: String },
    #[error("{kind} {name}: {source}")]
    Route {
        kind: &'static str,
        name: String,
        #[source]
        source: RouteError,
    },
    #[error("{action} {name}: {source}")]
    Api {
        action: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What a weight write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The route was patched.
    Patched,
    /// The route already stores these weights; `Some(why)` when it has not achieved them.
    Unchanged(Option<RouteError>),
}

fn api_error(action: &'static str, name: &str) -> impl FnOnce(kube::Error) -> RouterError {
    let name = name.to_owned();
    move |source| RouterError::Api {
        action,
        name,
        source,
    }
}

fn route_api(client: &Client, ns: &str, kind: RouteKind) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(kind.group(), kind.version(), kind.kind());
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

fn backends(ro: &Rollout) -> Backends {
    Backends::of(&ro.spec.service, &ro.namespace().unwrap_or_default())
}

/// Reads the route; `None` when it does not exist.
async fn read_route(
    client: &Client,
    ro: &Rollout,
    r: &RouteRef,
) -> Result<Option<Value>, RouterError> {
    let ns = ro.namespace().unwrap_or_default();
    let obj = route_api(client, &ns, r.kind)
        .get_opt(&r.name)
        .await
        .map_err(api_error("reading", &r.name))?;
    Ok(obj.map(|o| serde_json::to_value(o).unwrap_or(Value::Null)))
}

/// The observe step of a mesh router: makes sure the track Services exist, then reads the
/// weights the route achieved. Configuration problems (route or Service missing, no split rule,
/// the gateway refusing the route) are `Ok(None)`, logged; only API failures are errors.
pub async fn observe(client: &Client, ro: &Rollout) -> Result<Option<RouterObs>, kube::Error> {
    let Some(r) = RouteRef::of(&ro.spec.traffic) else {
        return Ok(None);
    };
    let rollout = format!("{}/{}", ro.namespace().unwrap_or_default(), ro.name_any());
    let result = async {
        ensure_services(client, ro).await?;
        let route = read_route(client, ro, &r)
            .await?
            .ok_or_else(|| RouterError::NoRoute {
                kind: r.kind.kind(),
                name: r.name.clone(),
            })?;
        routes::achieved(r.kind, &route, &backends(ro)).map_err(|source| RouterError::Route {
            kind: r.kind.kind(),
            name: r.name.clone(),
            source,
        })
    }
    .await;
    match result {
        Ok(obs) => Ok(Some(obs)),
        Err(RouterError::Api { source, .. }) => Err(source),
        Err(e) => {
            tracing::info!(%rollout, reason = %e, "traffic router reports no achieved weight");
            Ok(None)
        }
    }
}

/// Sets the split rules' weights to canary `canary`%, baseline `baseline`%, stable the rest.
pub async fn set_weight(
    client: &Client,
    ro: &Rollout,
    canary: i32,
    baseline: i32,
) -> Result<Written, RouterError> {
    let Some(r) = RouteRef::of(&ro.spec.traffic) else {
        return Ok(Written::Unchanged(None));
    };
    let route_err = |source| RouterError::Route {
        kind: r.kind.kind(),
        name: r.name.clone(),
        source,
    };
    let route = read_route(client, ro, &r)
        .await?
        .ok_or_else(|| RouterError::NoRoute {
            kind: r.kind.kind(),
            name: r.name.clone(),
        })?;
    let b = backends(ro);
    let ops = routes::weight_patch(r.kind, &route, &b, routes::weights(canary, baseline))
        .map_err(route_err)?;
    if ops.is_empty() {
        let why = routes::achieved(r.kind, &route, &b).err();
        return Ok(Written::Unchanged(why));
    }
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops)).expect("weight_patch writes RFC 6902 operations");
    let params = PatchParams {
        field_manager: Some(ROLLOUT_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let ns = ro.namespace().unwrap_or_default();
    tracing::info!(rollout = %format!("{ns}/{}", ro.name_any()), route = %r.name, canary, baseline, "setting route weights");
    route_api(client, &ns, r.kind)
        .patch(&r.name, &params, &Patch::Json::<()>(patch))
        .await
        .map_err(api_error("patching the weights of", &r.name))?;
    Ok(Written::Patched)
}

/// A Service port as the track Services carry it (no `nodePort`: they are ClusterIP).
fn port(p: ServicePort) -> Value {
    let mut v = json!({"port": p.port, "protocol": p.protocol.unwrap_or_else(|| "TCP".into())});
    if let Some(n) = p.name {
        v["name"] = json!(n);
    }
    if let Some(t) = p.target_port {
        v["targetPort"] = serde_json::to_value(t).unwrap_or(Value::Null);
    }
    if let Some(a) = p.app_protocol {
        v["appProtocol"] = json!(a);
    }
    v
}

/// The server-side apply body of the track Service `name` for `track`, from the Service the
/// Rollout names: its ports, its selector plus the track label, owned by the Rollout.
pub fn track_service(ro: &Rollout, svc: &Service, name: &str, track: &str) -> Value {
    let spec = svc.spec.clone().unwrap_or_default();
    let mut selector = spec.selector.unwrap_or_default();
    selector.insert(TRACK_LABEL.into(), track.into());
    let ports: Vec<Value> = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(port)
        .collect();
    let owner = ro.controller_owner_ref(&()).map(|o| {
        json!({
            "apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid,
            "controller": true, "blockOwnerDeletion": true,
        })
    });
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": ro.namespace(),
            "labels": {TRACK_LABEL: track},
            "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
        },
        "spec": {"selector": selector, "ports": ports},
    })
}

/// Whether the live track Service is owned by this Rollout.
fn ours(ro: &Rollout, live: &Service) -> bool {
    live.owner_references()
        .iter()
        .any(|o| o.kind == "Rollout" && Some(&o.uid) == ro.metadata.uid.as_ref())
}

/// Whether the live Service already has the wanted selector and ports.
fn matches(live: &Service, want: &Value) -> bool {
    let spec = live.spec.clone().unwrap_or_default();
    let selector = serde_json::to_value(spec.selector.unwrap_or_default()).unwrap_or_default();
    let ports: Vec<Value> = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(port)
        .collect();
    selector == want["spec"]["selector"] && Value::Array(ports) == want["spec"]["ports"]
}

/// Makes `<service>-stable|canary|baseline` exist and match `spec.service`'s Service.
pub async fn ensure_services(client: &Client, ro: &Rollout) -> Result<(), RouterError> {
    let ns = ro.namespace().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(client.clone(), &ns);
    let name = &ro.spec.service;
    let svc = api
        .get_opt(name)
        .await
        .map_err(api_error("reading", name))?
        .ok_or_else(|| RouterError::NoService(format!("{ns}/{name}")))?;
    for (track, name) in ["stable", "canary", "baseline"]
        .into_iter()
        .zip(backends(ro).names)
    {
        let want = track_service(ro, &svc, &name, track);
        let live = api
            .get_opt(&name)
            .await
            .map_err(api_error("reading", &name))?;
        match &live {
            Some(l) if !ours(ro, l) => continue, // someone else's: used as it is
            Some(l) if matches(l, &want) => continue,
            _ => {}
        }
        api.patch(
            &name,
            &PatchParams::apply(ROLLOUT_FIELD_MANAGER).force(),
            &Patch::Apply(&want),
        )
        .await
        .map_err(api_error("applying", &name))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
