//! `plan::report`: a [`super::Plan`] made readable, shared by `fledge plan` and the pull-request
//! plan check (`controller::prcheck`), so both show the same thing. Unlike the planner this
//! does I/O: [`inputs`] reads the ConfigRepo's inventory and policy, [`read_live`] the live
//! objects the plan compares against, and [`Report::new`] asks the API server for a dry run of
//! every apply (the diff text, and what the server or a webhook would refuse).
//!
//! Secret values never appear: a Secret shows only which keys are added, changed or removed.

use crate::apply::{ApplyError, Category, Cluster, Manifest, kube_message, live_of_meta};
use crate::controller::{inventory, policy};
use crate::crd::{ConfigRepo, InventoryEntry};
use crate::labels::{CONTENT_HASH_ANNOTATION, TEMPLATE_HASH_ANNOTATION};
use crate::limits::escape_controls;
use crate::plan::{self, Action, Live, Plan, Policy};
use crate::render::ObjectKey;
use futures_util::StreamExt;
use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Why the plan's inputs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("reading ConfigRepo {name} (its inventory): {message}")]
    ConfigRepo { name: String, message: String },
    #[error(transparent)]
    Inventory(#[from] inventory::ReadError),
    #[error("reading {key}: {message}")]
    Read { key: String, message: String },
}

/// The ConfigRepo `name`'s inventory (kept in `namespace`, the agent's, when large) and policy.
/// No ConfigRepo yet: nothing is in an inventory, and the default policy.
pub async fn inputs(
    client: &Client,
    name: &str,
    namespace: &str,
) -> Result<(Vec<InventoryEntry>, Policy), ReportError> {
    let repo = match Api::<ConfigRepo>::all(client.clone()).get_opt(name).await {
        Ok(r) => r,
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => {
            return Err(ReportError::ConfigRepo {
                name: name.to_owned(),
                message: kube_message(&e),
            });
        }
    };
    let Some(repo) = repo else {
        return Ok((Vec::new(), Policy::default()));
    };
    let entries = inventory::read(client, namespace, repo.status.as_ref()).await?;
    Ok((entries, policy(&repo)))
}

/// The live side of a plan: the objects as read, and what the planner needs of them.
#[derive(Default)]
pub struct LiveObjects {
    pub objects: BTreeMap<ObjectKey, DynamicObject>,
    pub view: BTreeMap<ObjectKey, Live>,
}

/// Reads one object; a kind the cluster does not serve yet reads as absent.
async fn read(
    cluster: &Cluster,
    api_version: &str,
    k: &ObjectKey,
) -> Result<Option<DynamicObject>, ReportError> {
    match cluster
        .get(api_version, &k.kind, &k.namespace, &k.name)
        .await
    {
        Ok(o) => Ok(o),
        Err(e) if e.category == Category::UnknownKind => Ok(None),
        Err(e) => Err(ReportError::Read {
            key: k.to_string(),
            message: e.to_string(),
        }),
    }
}

/// Reads the desired objects and the inventory's members from the cluster, `concurrency` at a
/// time, as ConfigRepo `repo` sees them.
pub async fn read_live(
    cluster: &Cluster,
    repo: &str,
    desired: &[Arc<Manifest>],
    inventory: &[InventoryEntry],
    concurrency: usize,
) -> Result<LiveObjects, ReportError> {
    let mut wanted: Vec<(String, ObjectKey)> = desired
        .iter()
        .map(|o| (o.api_version.clone(), o.key.clone()))
        .collect();
    let known: BTreeSet<ObjectKey> = desired.iter().map(|o| o.key.clone()).collect();
    wanted.extend(
        inventory
            .iter()
            .map(|e| (e.api_version(), plan::entry_key(e)))
            .filter(|(_, k)| !known.contains(k)),
    );
    // Owned items: a closure over borrowed ones would not be `Send` for every lifetime, which a
    // spawned task (the agent's plan check) needs.
    let lives: Vec<Result<Option<DynamicObject>, ReportError>> =
        futures_util::stream::iter(wanted.clone())
            .map(|(av, k)| async move { read(cluster, &av, &k).await })
            .buffered(concurrency.max(1))
            .collect()
            .await;
    let mut out = LiveObjects::default();
    for ((_, k), o) in wanted.iter().zip(lives) {
        if let Some(o) = o? {
            out.view.insert(k.clone(), live_of_meta(&o.metadata, repo));
            out.objects.insert(k.clone(), o);
        }
    }
    Ok(out)
}

/// Fields the server owns or that only say when and by whom: not part of a meaningful diff.
fn clean(mut v: Value) -> Value {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "generation",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            a.remove(CONTENT_HASH_ANNOTATION);
            a.remove(TEMPLATE_HASH_ANNOTATION);
            a.remove("deployment.kubernetes.io/revision");
            if a.is_empty() {
                meta.remove("annotations");
            }
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

fn yaml(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap_or_default()
}

/// A Secret's `data` and `stringData` reduced to which keys are added, changed or removed.
pub fn secret_changes(before: Option<&Value>, after: &Value) -> String {
    let keys = |v: Option<&Value>| -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for field in ["data", "stringData"] {
            if let Some(m) = v.and_then(|v| v.get(field)).and_then(Value::as_object) {
                out.extend(m.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
        out
    };
    let (b, a) = (keys(before), keys(Some(after)));
    let mut lines = Vec::new();
    for (k, v) in &a {
        match b.get(k) {
            None => lines.push(format!("+ key {}", escape_controls(k))),
            Some(old) if old != v => {
                lines.push(format!("~ key {} (value changed)", escape_controls(k)))
            }
            Some(_) => {}
        }
    }
    for k in b.keys().filter(|k| !a.contains_key(*k)) {
        lines.push(format!("- key {}", escape_controls(k)));
    }
    if lines.is_empty() {
        lines.push("(no key changes)".into());
    }
    lines.join("\n")
}

/// `v` without Secret values.
fn without_secret_values(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for field in ["data", "stringData"] {
            if let Some(m) = o.get_mut(field).and_then(Value::as_object_mut) {
                for val in m.values_mut() {
                    *val = Value::String("(hidden)".into());
                }
            }
        }
    }
    v
}

fn is_secret(k: &ObjectKey) -> bool {
    k.group.is_empty() && k.kind == "Secret"
}

/// ANSI colours, or none.
struct Colors {
    on: bool,
}

impl Colors {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
}

/// Why the server could not judge an object yet.
enum Unchecked {
    /// Its kind's CRD is created by this plan.
    CrdInBundle,
    /// Its namespace is created by this plan.
    NamespaceInBundle,
}

impl Unchecked {
    fn note(&self) -> &'static str {
        match self {
            Unchecked::CrdInBundle => " (its CRD is in this bundle: not checked by the server)",
            Unchecked::NamespaceInBundle => {
                " (its namespace is created by this plan: not checked by the server)"
            }
        }
    }
}

/// Namespaces the bundle creates.
fn bundle_namespaces(objects: &[Arc<Manifest>]) -> BTreeSet<String> {
    objects
        .iter()
        .filter(|o| o.key.group.is_empty() && o.key.kind == "Namespace")
        .map(|o| o.key.name.clone())
        .collect()
}

/// Kinds whose CRD is in the bundle itself: `(group, kind)`.
fn bundle_crds(objects: &[Arc<Manifest>]) -> BTreeSet<(String, String)> {
    objects
        .iter()
        .filter(|o| o.key.kind == "CustomResourceDefinition")
        .filter_map(|o| {
            let v = o.value();
            let group = v.pointer("/spec/group")?.as_str()?.to_owned();
            let kind = v.pointer("/spec/names/kind")?.as_str()?.to_owned();
            Some((group, kind))
        })
        .collect()
}

/// A plan as text (a diff per object) and as lists (for JSON and the pull-request comment).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// One block per object: `+ create`, `~ update` with a unified diff, `- delete`, …
    pub text: String,
    /// Keys of the objects created.
    pub create: Vec<String>,
    /// `{"object", "action", "diff"}` per update (drift repair, held template, recreate too).
    pub update: Vec<Value>,
    /// `{"object", "rollout"}` per pod template that goes out as a canary.
    pub canary: Vec<Value>,
    /// Keys of the objects deleted (only when pruning is allowed).
    pub delete: Vec<String>,
    /// `{"object", "error"}` per object the API server refuses (dry run).
    pub refused: Vec<Value>,
    pub unchanged: usize,
    /// The prune guards' decision (its reason name).
    pub prune: &'static str,
    /// `Plan: 1 to create, 2 to update, 0 to delete, 3 unchanged.` (and the canaries).
    pub summary: String,
}

impl Report {
    /// Describes `p` (planned from `desired` against `live`), asking the server for a dry run of
    /// each apply. `colors`: ANSI colours in [`Report::text`].
    pub async fn new(
        cluster: &Cluster,
        desired: &[Arc<Manifest>],
        live: &LiveObjects,
        p: &Plan,
        colors: bool,
    ) -> Report {
        let w = Writer {
            cluster,
            desired,
            live: &live.objects,
            colors: Colors { on: colors },
            crds_in_bundle: bundle_crds(desired),
            namespaces_in_bundle: bundle_namespaces(desired),
        };
        w.report(p).await
    }

    /// Objects that change (created, updated, deleted) plus template changes handed to a
    /// Rollout without another change.
    pub fn changes(&self) -> usize {
        let held = self
            .canary
            .iter()
            .filter(|c| !self.update.iter().any(|u| u["object"] == c["object"]))
            .count();
        self.create.len() + self.update.len() + self.delete.len() + held
    }

    /// The report as `fledge plan -o json` prints it.
    pub fn to_json(&self, config_repo: &str) -> Value {
        json!({
            "configRepo": config_repo, "create": self.create, "update": self.update,
            "canary": self.canary, "delete": self.delete, "refused": self.refused,
            "unchanged": self.unchanged, "prune": self.prune, "summary": self.summary
        })
    }
}

/// What [`Report::new`] works with.
struct Writer<'a> {
    cluster: &'a Cluster,
    desired: &'a [Arc<Manifest>],
    live: &'a BTreeMap<ObjectKey, DynamicObject>,
    colors: Colors,
    crds_in_bundle: BTreeSet<(String, String)>,
    namespaces_in_bundle: BTreeSet<String>,
}

impl Writer<'_> {
    /// The server's answer to applying `m` (dry run), or why the server cannot judge it yet
    /// (its kind's CRD or its namespace is created by this same plan).
    async fn dry_run(&self, m: &Manifest) -> Result<Result<Value, Unchecked>, ApplyError> {
        let ns_missing = format!("namespaces \"{}\" not found", m.key.namespace);
        match self.cluster.apply_one(m, true, true).await {
            Ok(o) => Ok(Ok(serde_json::to_value(&o).unwrap_or_default())),
            Err(e)
                if e.category == Category::UnknownKind
                    && self
                        .crds_in_bundle
                        .contains(&(m.key.group.clone(), m.key.kind.clone())) =>
            {
                Ok(Err(Unchecked::CrdInBundle))
            }
            Err(e)
                if self.namespaces_in_bundle.contains(&m.key.namespace)
                    && e.message.contains(&ns_missing) =>
            {
                Ok(Err(Unchecked::NamespaceInBundle))
            }
            Err(e) => Err(e),
        }
    }

    fn body_lines(&self, text: &mut String, key: &ObjectKey, v: Value, prefix: &str, code: &str) {
        let v = if is_secret(key) {
            without_secret_values(v)
        } else {
            v
        };
        for line in yaml(&clean(v)).lines() {
            text.push_str(
                &self
                    .colors
                    .paint(code, &format!("{prefix}{}\n", escape_controls(line))),
            );
        }
    }

    fn diff_lines(&self, text: &mut String, before: &str, after: &str) -> String {
        let diff = similar::TextDiff::from_lines(before, after);
        let unified = diff
            .unified_diff()
            .context_radius(3)
            .header("live", "git")
            .to_string();
        for line in unified.lines() {
            let line = escape_controls(line).into_owned();
            let painted = match line.chars().next() {
                Some('+') if !line.starts_with("+++") => self.colors.paint("32", &line),
                Some('-') if !line.starts_with("---") => self.colors.paint("31", &line),
                Some('@') => self.colors.paint("36", &line),
                _ => line,
            };
            text.push_str(&format!("  {painted}\n"));
        }
        unified
    }

    /// A unified diff of two pod templates (no file headers), indented under its object.
    fn template_diff(&self, text: &mut String, stable: &str, canary: &str) {
        let diff = similar::TextDiff::from_lines(stable, canary);
        for line in diff.unified_diff().context_radius(3).to_string().lines() {
            let line = escape_controls(line).into_owned();
            let painted = match line.chars().next() {
                Some('+') => self.colors.paint("32", &line),
                Some('-') => self.colors.paint("31", &line),
                Some('@') => self.colors.paint("36", &line),
                _ => line,
            };
            text.push_str(&format!("    {painted}\n"));
        }
    }

    async fn report(&self, p: &Plan) -> Report {
        let mut r = Report::default();
        let text = &mut r.text;
        for (i, action) in &p.apply {
            let m = &self.desired[*i];
            let key = m.key.to_string();
            let live = self
                .live
                .get(&m.key)
                .map(|o| serde_json::to_value(o).unwrap_or_default());
            let body = match action {
                Action::HoldTemplate { .. } => {
                    let held = live
                        .as_ref()
                        .and_then(|l| l.pointer("/spec/template").cloned())
                        .unwrap_or_default();
                    Arc::new(m.holding_template(held, None))
                }
                Action::HoldWeights { service, .. } => match &live {
                    Some(l) => Arc::new(m.holding_weights(l, service)),
                    None => m.clone(),
                },
                _ => m.clone(),
            };
            let answer = match action {
                // A recreate's dry run would conflict with the object it replaces.
                Action::Recreate => Ok(Ok(body.value())),
                _ => self.dry_run(&body).await,
            };
            let after = match answer {
                Ok(a) => a,
                Err(e) => {
                    let line = format!(
                        "! {} {key}: the API server refuses it: {}\n",
                        verb(action),
                        escape_controls(&e.message)
                    );
                    text.push_str(&self.colors.paint("31;1", &line));
                    r.refused.push(json!({"object": key, "error": e.message}));
                    continue;
                }
            };
            match action {
                Action::Create => {
                    let note = after.as_ref().err().map_or("", Unchecked::note);
                    text.push_str(
                        &self
                            .colors
                            .paint("32;1", &format!("+ create {key}{note}\n")),
                    );
                    if is_secret(&m.key) {
                        text.push_str(&format!(
                            "  {}\n",
                            secret_changes(None, &m.value()).replace('\n', "\n  ")
                        ));
                    } else {
                        self.body_lines(
                            text,
                            &m.key,
                            after.unwrap_or_else(|_| m.value()),
                            "+ ",
                            "32",
                        );
                    }
                    r.create.push(key);
                }
                _ => {
                    let after = after.unwrap_or_else(|_| body.value());
                    let header = match action {
                        Action::HoldTemplate { rollout, .. } => format!(
                            "~ update {key} (pod template held: the new template goes out as a canary through Rollout {}/{rollout})\n",
                            m.key.namespace
                        ),
                        Action::Recreate => {
                            format!("± recreate {key} (a run-once object changed in git)\n")
                        }
                        Action::RepairDrift => format!("~ repair {key} (changed outside git)\n"),
                        Action::HoldWeights { rollout, .. } => format!(
                            "~ update {key} (weights of the track Services held: Rollout {}/{rollout} sets them)\n",
                            m.key.namespace
                        ),
                        _ => format!("~ update {key}\n"),
                    };
                    text.push_str(&self.colors.paint("33;1", &header));
                    let diff = if is_secret(&m.key) {
                        let s = secret_changes(live.as_ref(), &after);
                        text.push_str(&format!("  {}\n", s.replace('\n', "\n  ")));
                        s
                    } else {
                        let before = live.clone().map(|l| yaml(&clean(l))).unwrap_or_default();
                        self.diff_lines(text, &before, &yaml(&clean(after)))
                    };
                    if let Action::HoldTemplate { rollout, .. } = action {
                        // What the canary will run: the template git has against the live one.
                        // Git's side as the server would store it (a dry run of git's own body),
                        // so fields the server fills in (imagePullPolicy, dnsPolicy, …) are on
                        // both sides and only real changes show.
                        let template = |v: Option<&Value>| {
                            v.and_then(|v| v.pointer("/spec/template"))
                                .map(yaml)
                                .unwrap_or_default()
                        };
                        let git = match self.dry_run(m).await {
                            Ok(Ok(v)) => v,
                            _ => m.value(),
                        };
                        text.push_str("  canary pod template (stable → git):\n");
                        self.template_diff(text, &template(live.as_ref()), &template(Some(&git)));
                        r.canary.push(json!({"object": key, "rollout": format!("{}/{rollout}", m.key.namespace)}));
                    }
                    r.update
                        .push(json!({"object": key, "action": verb(action), "diff": diff}));
                }
            }
        }
        for h in p
            .handoffs
            .iter()
            .filter(|h| !p.apply.iter().any(|(i, _)| *i == h.index))
        {
            let key = self.desired[h.index].key.to_string();
            text.push_str(&self.colors.paint(
                "36;1",
                &format!(
                    "» canary {key}: its new pod template goes out through Rollout {}\n",
                    h.rollout
                ),
            ));
            r.canary
                .push(json!({"object": key, "rollout": h.rollout.to_string()}));
        }
        for i in &p.drift_kept {
            let key = self.desired[*i].key.to_string();
            text.push_str(&self.colors.paint(
                "33",
                &format!("! drift {key}: changed outside git, left as it is (selfHeal is off)\n"),
            ));
        }
        let allowed = p.prune_decision == plan::PruneDecision::Allowed;
        for e in &p.prune {
            let key = plan::entry_key(e).to_string();
            let line = if allowed {
                format!("- delete {key}\n")
            } else {
                format!(
                    "- delete {key} (not done: {})\n",
                    p.prune_decision.explain(p.prune.len())
                )
            };
            text.push_str(&self.colors.paint("31;1", &line));
            if allowed {
                r.delete.push(key);
            }
        }
        r.unchanged = p.unchanged.len() + p.completed.len();
        r.prune = p.prune_decision.reason();
        r.summary = format!(
            "Plan: {} to create, {} to update, {} to delete, {} unchanged.",
            r.create.len(),
            r.update.len(),
            r.delete.len(),
            r.unchanged
        );
        if !r.canary.is_empty() {
            r.summary.push_str(&format!(
                " {} pod template change(s) go out as a canary.",
                r.canary.len()
            ));
        }
        r
    }
}

fn verb(a: &Action) -> &'static str {
    match a {
        Action::Create => "create",
        Action::Update { .. } => "update",
        Action::RepairDrift => "repair",
        Action::HoldTemplate { .. } => "update",
        Action::HoldWeights { repair: false, .. } => "update",
        Action::HoldWeights { repair: true, .. } => "repair",
        Action::Recreate => "recreate",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_never_appear_only_key_names() {
        let before = json!({"data": {"user": "YWRtaW4=", "old": "eA=="}});
        let after = json!({"data": {"user": "cm9vdA==", "new": "c2VjcmV0"}, "stringData": {"token": "hunter2"}});
        let s = secret_changes(Some(&before), &after);
        for value in ["YWRtaW4=", "cm9vdA==", "c2VjcmV0", "hunter2", "eA=="] {
            assert!(!s.contains(value), "{value} leaked: {s}");
        }
        assert!(s.contains("~ key user (value changed)"), "{s}");
        assert!(
            s.contains("+ key new") && s.contains("+ key token") && s.contains("- key old"),
            "{s}"
        );
        let hidden = without_secret_values(after);
        assert!(!hidden.to_string().contains("hunter2"));
    }
}
