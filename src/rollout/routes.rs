//! Route arithmetic of the mesh routers (`gatewayAPI`, `istio`), pure: which rules of an HTTPRoute
//! or VirtualService split traffic between the rollout's track Services, the JSON patch that sets
//! their weights and nothing else, the weights a route stores (and, for Gateway API, whether
//! the gateway accepted it), and the weights sync holds when it applies a governed route. The
//! rollout controller's router (`controller::rollouts::router`) does the I/O; sync's apply step
//! calls [`hold`].
//!
//! # Which rules are split
//!
//! A *split rule* is an HTTPRoute rule (`spec.rules[i].backendRefs`) or VirtualService HTTP
//! route (`spec.http[i].route`) that lists both `<service>-stable` and `<service>-canary`
//! (and `<service>-baseline` when the rollout runs a baseline). fledge only ever changes the
//! `weight` of those three entries in split rules: stable gets `100 − canary − baseline`.
//! Rules that list only some of them (a header match pinned to the canary, say), other rules,
//! other backends in a split rule, matches, filters, timeouts: untouched, byte for byte.
//!
//! # Why a JSON patch and not server-side apply of "just the weights"
//!
//! Both CRDs make these lists atomic: Gateway API v1.4 marks `spec.rules` and `backendRefs`
//! `x-kubernetes-list-type: atomic`, and Istio's VirtualService schema gives `spec.http` and
//! `route` no list type, which for a CRD means atomic. Server-side apply cannot own one field
//! inside an atomic list: whoever writes a weight owns the whole `rules` list. So the router
//! writes an RFC 6902 patch whose only changes are `…/weight` members, each guarded by a `test`
//! of the entry's Service name (and of its current weight) so a list reordered meanwhile makes
//! the patch fail instead of writing the wrong entry. Every other field keeps its exact value.

use super::RouterObs;
use serde_json::{Value, json};

/// The kinds of route a Rollout can split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`).
    HttpRoute,
    /// Istio `VirtualService` (`networking.istio.io/v1`).
    VirtualService,
}

impl RouteKind {
    pub fn group(self) -> &'static str {
        match self {
            RouteKind::HttpRoute => "gateway.networking.k8s.io",
            RouteKind::VirtualService => "networking.istio.io",
        }
    }
    pub fn version(self) -> &'static str {
        "v1"
    }
    pub fn kind(self) -> &'static str {
        match self {
            RouteKind::HttpRoute => "HTTPRoute",
            RouteKind::VirtualService => "VirtualService",
        }
    }
    /// The list of rules under `spec`, and the list of backends in a rule.
    fn lists(self) -> (&'static str, &'static str) {
        match self {
            RouteKind::HttpRoute => ("rules", "backendRefs"),
            RouteKind::VirtualService => ("http", "route"),
        }
    }
    /// JSON pointer (below the backend entry) of the Service a backend names.
    fn name_pointer(self) -> &'static str {
        match self {
            RouteKind::HttpRoute => "/name",
            RouteKind::VirtualService => "/destination/host",
        }
    }
    /// Whether `kind` (of a rendered object, with its API group) is this kind of route.
    pub fn of(group: &str, kind: &str) -> Option<RouteKind> {
        [RouteKind::HttpRoute, RouteKind::VirtualService]
            .into_iter()
            .find(|k| k.group() == group && k.kind() == kind)
    }
}

/// The route a Rollout splits: `spec.traffic.gatewayAPI.httpRoute` or `.istio.virtualService`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRef {
    pub kind: RouteKind,
    pub name: String,
}

impl RouteRef {
    /// The route of a Rollout spec; `None` for the `replicas` router.
    pub fn of(traffic: &crate::crd::TrafficSpec) -> Option<RouteRef> {
        if let Some(g) = &traffic.gateway_api {
            return Some(RouteRef {
                kind: RouteKind::HttpRoute,
                name: g.http_route.clone(),
            });
        }
        traffic.istio.as_ref().map(|i| RouteRef {
            kind: RouteKind::VirtualService,
            name: i.virtual_service.clone(),
        })
    }
}

/// Index of a track in [`Backends::names`] and in weight triples.
const STABLE: usize = 0;
const CANARY: usize = 1;
const BASELINE: usize = 2;

/// The three track Services of a rollout in one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backends {
    pub namespace: String,
    /// `<service>-stable`, `<service>-canary`, `<service>-baseline`.
    pub names: [String; 3],
}

impl Backends {
    pub fn of(service: &str, namespace: &str) -> Backends {
        Backends {
            namespace: namespace.to_owned(),
            names: ["stable", "canary", "baseline"].map(|t| format!("{service}-{t}")),
        }
    }

    /// Which track a backend entry points at, if any.
    fn track(&self, kind: RouteKind, backend: &Value) -> Option<usize> {
        let target = match kind {
            RouteKind::HttpRoute => {
                let group = backend.get("group").and_then(Value::as_str).unwrap_or("");
                let k = backend
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("Service");
                let ns = backend.get("namespace").and_then(Value::as_str);
                if !group.is_empty() || k != "Service" || ns.is_some_and(|n| n != self.namespace) {
                    return None;
                }
                backend.get("name").and_then(Value::as_str)?.to_owned()
            }
            RouteKind::VirtualService => {
                let host = backend
                    .pointer("/destination/host")
                    .and_then(Value::as_str)?;
                // `web-canary`, `web-canary.shop`, `web-canary.shop.svc[.cluster.local]`.
                let (name, rest) = host.split_once('.').unwrap_or((host, ""));
                let local = rest.is_empty()
                    || rest == self.namespace
                    || rest == format!("{}.svc", self.namespace)
                    || rest == format!("{}.svc.cluster.local", self.namespace);
                if !local {
                    return None;
                }
                name.to_owned()
            }
        };
        self.names.iter().position(|n| *n == target)
    }
}

/// Why a route cannot be split, or has not achieved its weights.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error(
        "no rule lists both {stable} and {canary}: fledge sets weights only in rules that list the stable and the canary Service"
    )]
    NoSplitRule { stable: String, canary: String },
    #[error("rule {rule} lists {service} more than once")]
    Duplicate { rule: usize, service: String },
    #[error("rule {rule} lists no {service}, but the rollout sends it {weight}% of the traffic")]
    Missing {
        rule: usize,
        service: String,
        weight: i64,
    },
    #[error("the split rules store different weights: {0}")]
    Disagree(String),
    #[error("the gateway refuses the route: {0}")]
    NotAccepted(String),
    #[error("the gateway has not reported on the route's current generation yet: {0}")]
    NotObserved(String),
}

/// One split rule: its index and, per track, the index of its backend entry.
struct Split {
    rule: usize,
    refs: [Option<usize>; 3],
}

fn rules(kind: RouteKind, route: &Value) -> &[Value] {
    let (rules, _) = kind.lists();
    route
        .pointer(&format!("/spec/{rules}"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn entries(kind: RouteKind, rule: &Value) -> &[Value] {
    rule.get(kind.lists().1)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn splits(kind: RouteKind, route: &Value, b: &Backends) -> Result<Vec<Split>, RouteError> {
    let mut out = Vec::new();
    for (i, rule) in rules(kind, route).iter().enumerate() {
        let mut refs = [None; 3];
        for (j, e) in entries(kind, rule).iter().enumerate() {
            if let Some(t) = b.track(kind, e) {
                if refs[t].is_some() {
                    return Err(RouteError::Duplicate {
                        rule: i,
                        service: b.names[t].clone(),
                    });
                }
                refs[t] = Some(j);
            }
        }
        if refs[STABLE].is_some() && refs[CANARY].is_some() {
            out.push(Split { rule: i, refs });
        }
    }
    if out.is_empty() {
        return Err(RouteError::NoSplitRule {
            stable: b.names[STABLE].clone(),
            canary: b.names[CANARY].clone(),
        });
    }
    Ok(out)
}

/// The weight an entry stores, as the data plane reads it: Gateway API defaults a missing weight
/// to 1; Istio sends everything to a lone destination and nothing to an unweighted one beside
/// others.
fn effective(kind: RouteKind, entries: &[Value], j: usize) -> i64 {
    match entries[j].get("weight").and_then(Value::as_i64) {
        Some(w) => w.max(0),
        None => match kind {
            RouteKind::HttpRoute => 1,
            RouteKind::VirtualService if entries.len() == 1 => 100,
            RouteKind::VirtualService => 0,
        },
    }
}

/// The weights `(stable, canary, baseline)` fledge writes for a canary and baseline percentage.
pub fn weights(canary: i32, baseline: i32) -> [i64; 3] {
    let (c, b) = (i64::from(canary.max(0)), i64::from(baseline.max(0)));
    [(100 - c - b).max(0), c, b]
}

/// The JSON patch (RFC 6902 operations) that gives every split rule these weights; empty when
/// the route already stores them. Only `…/weight` members change; each change is guarded by a
/// `test` of the entry's Service name and current weight.
pub fn weight_patch(
    kind: RouteKind,
    route: &Value,
    b: &Backends,
    want: [i64; 3],
) -> Result<Vec<Value>, RouteError> {
    let (rules_key, entries_key) = kind.lists();
    let mut ops = Vec::new();
    let all = rules(kind, route);
    for s in splits(kind, route, b)? {
        let list = entries(kind, &all[s.rule]);
        for t in [STABLE, CANARY, BASELINE] {
            let Some(j) = s.refs[t] else {
                if want[t] > 0 {
                    return Err(RouteError::Missing {
                        rule: s.rule,
                        service: b.names[t].clone(),
                        weight: want[t],
                    });
                }
                continue;
            };
            let stored = list[j].get("weight");
            if stored.and_then(Value::as_i64) == Some(want[t]) {
                continue;
            }
            let at = format!("/spec/{rules_key}/{}/{entries_key}/{j}", s.rule);
            let name = list[j].pointer(kind.name_pointer()).cloned();
            ops.push(json!({"op": "test", "path": format!("{at}{}", kind.name_pointer()), "value": name}));
            if let Some(w) = stored {
                ops.push(json!({"op": "test", "path": format!("{at}/weight"), "value": w}));
            }
            // `add` sets a member whether or not it exists (RFC 6902 §4.1).
            ops.push(json!({"op": "add", "path": format!("{at}/weight"), "value": want[t]}));
        }
    }
    Ok(ops)
}

/// The canary and baseline shares (percent of what the split rules send to the three Services,
/// rounded) the route stores. Every split rule must agree.
pub fn stored(kind: RouteKind, route: &Value, b: &Backends) -> Result<RouterObs, RouteError> {
    let all = rules(kind, route);
    let mut seen: Option<(usize, RouterObs)> = None;
    for s in splits(kind, route, b)? {
        let list = entries(kind, &all[s.rule]);
        let w = s.refs.map(|j| j.map_or(0, |j| effective(kind, list, j)));
        let total: i64 = w.iter().sum();
        let pct = |n: i64| {
            if total == 0 {
                0
            } else {
                i32::try_from((200 * n + total) / (2 * total)).unwrap_or(100)
            }
        };
        let obs = RouterObs {
            canary: pct(w[CANARY]),
            baseline: pct(w[BASELINE]),
        };
        match seen {
            None => seen = Some((s.rule, obs)),
            Some((first, o)) if o != obs => {
                return Err(RouteError::Disagree(format!(
                    "rule {first} gives canary {}% baseline {}%, rule {} gives canary {}% baseline {}%",
                    o.canary, o.baseline, s.rule, obs.canary, obs.baseline
                )));
            }
            Some(_) => {}
        }
    }
    Ok(seen.map(|(_, o)| o).unwrap_or_default())
}

/// Whether every gateway that reports on an HTTPRoute accepted its current generation and
/// resolved its backends (`status.parents[].conditions` `Accepted` and `ResolvedRefs` `True`
/// with `observedGeneration` current). A route no gateway reported on yet has achieved nothing.
pub fn accepted(route: &Value) -> Result<(), RouteError> {
    let generation = route
        .pointer("/metadata/generation")
        .and_then(Value::as_i64);
    let parents = route
        .pointer("/status/parents")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if parents.is_empty() {
        return Err(RouteError::NotObserved("no status from any gateway".into()));
    }
    for p in parents {
        let controller = p
            .get("controllerName")
            .and_then(Value::as_str)
            .unwrap_or("?");
        for wanted in ["Accepted", "ResolvedRefs"] {
            let c = p
                .get("conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == wanted));
            let Some(c) = c else {
                return Err(RouteError::NotObserved(format!(
                    "{controller}: no {wanted} condition"
                )));
            };
            let observed = c.get("observedGeneration").and_then(Value::as_i64);
            let current = match (observed, generation) {
                (Some(o), Some(g)) => o >= g,
                _ => true,
            };
            if c["status"] != "True" || !current {
                let detail = format!(
                    "{controller}: {wanted}={} ({}: {}) at generation {} of {}",
                    c["status"].as_str().unwrap_or("?"),
                    c["reason"].as_str().unwrap_or(""),
                    c["message"].as_str().unwrap_or(""),
                    observed.map_or("?".into(), |o| o.to_string()),
                    generation.map_or("?".into(), |g| g.to_string()),
                );
                return Err(if current {
                    RouteError::NotAccepted(detail)
                } else {
                    RouteError::NotObserved(detail)
                });
            }
        }
    }
    Ok(())
}

/// What the route achieved: its stored weights, and for an HTTPRoute only once the gateway
/// accepted the generation that stores them.
pub fn achieved(kind: RouteKind, route: &Value, b: &Backends) -> Result<RouterObs, RouteError> {
    if kind == RouteKind::HttpRoute {
        accepted(route)?;
    }
    stored(kind, route, b)
}

/// Sync's side: `desired` (the route as git has it) gets, in its split rules, the weights the
/// live route stores for the three track Services, so applying git's route never moves traffic
/// a rollout has set. Returns whether anything changed. A live route without a split rule
/// holds nothing.
pub fn hold(kind: RouteKind, desired: &mut Value, live: &Value, b: &Backends) -> bool {
    let Ok(live_splits) = splits(kind, live, b) else {
        return false;
    };
    let live_rules = rules(kind, live);
    let first = &live_splits[0];
    let held: [Option<Value>; 3] = first.refs.map(|j| {
        j.and_then(|j| {
            entries(kind, &live_rules[first.rule])[j]
                .get("weight")
                .cloned()
        })
    });
    let Ok(desired_splits) = splits(kind, desired, b) else {
        return false;
    };
    let (rules_key, entries_key) = kind.lists();
    let mut changed = false;
    for s in desired_splits {
        for t in [STABLE, CANARY, BASELINE] {
            let (Some(j), Some(w)) = (s.refs[t], &held[t]) else {
                continue;
            };
            let at = format!("/spec/{rules_key}/{}/{entries_key}/{j}", s.rule);
            if let Some(entry) = desired.pointer_mut(&at).and_then(Value::as_object_mut)
                && entry.get("weight") != Some(w)
            {
                entry.insert("weight".into(), w.clone());
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
