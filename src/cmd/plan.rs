//! `fledge plan`: what a bundle would change in the live cluster. It reads the live objects and
//! the ConfigRepo's inventory and policy, and calls the same planner as the agent
//! ([`fledge::plan::plan`]), so the PR check and the agent make the same create/update/prune
//! decisions. Server-side dry runs (creates included) give the diff text and catch what the API
//! server or a webhook would refuse. Secret values are never printed: only which keys change.

use anyhow::Context;
use fledge::apply::{ApplyError, Category, Cluster, Manifest, live_of_meta};
use fledge::cli::{PlanArgs, PlanFormat, SourceArgs, default_repo_name};
use fledge::controller::{inventory, policy};
use fledge::crd::{ConfigRepo, InventoryEntry};
use fledge::labels::{CONTENT_HASH_ANNOTATION, TEMPLATE_HASH_ANNOTATION};
use fledge::limits::escape_controls;
use fledge::plan::{self, Action, Live, Policy};
use fledge::render::{self, ObjectKey, RenderOptions};
use futures_util::StreamExt;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

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

/// Reads one object; a kind the cluster does not serve yet reads as absent.
async fn read(
    cluster: &Cluster,
    api_version: &str,
    k: &ObjectKey,
) -> anyhow::Result<Option<DynamicObject>> {
    match cluster
        .get(api_version, &k.kind, &k.namespace, &k.name)
        .await
    {
        Ok(o) => Ok(o),
        Err(e) if e.category == Category::UnknownKind => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {k}: {e}")),
    }
}

pub async fn plan_cmd(
    args: PlanArgs,
    kubeconfig: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_repo_name(&args.path));
    let client = crate::kube_client(kubeconfig).await?;
    let scopes = render::discover(&client).await.context("API discovery")?;
    let source = SourceArgs {
        repo: args.repo.clone(),
        path: args.path.clone(),
        rev: args.rev.clone(),
        discover: false,
        cache_dir: args.cache_dir.clone(),
        max_objects: 50_000,
        name: Some(name.clone()),
    };
    let opts = RenderOptions {
        config_repo: Some(name.clone()),
        scopes,
        ..RenderOptions::default()
    };
    let desired = tokio::task::block_in_place(|| {
        crate::cmd::render::with_tree(&source, |tree| render::render(tree, &args.path, &opts))
    })?;
    let desired: Vec<Arc<Manifest>> = match desired {
        Ok(d) => d
            .objects
            .into_iter()
            .map(|o| Arc::new(Manifest::from_rendered(o)))
            .collect(),
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {}", escape_controls(&e.to_string()));
            }
            eprintln!("render failed: nothing would be applied or pruned");
            return Ok(ExitCode::FAILURE);
        }
    };
    let cluster = Cluster::new(client.clone());
    // The ConfigRepo gives the inventory and the policy (none yet: nothing is in an inventory).
    let repo = match Api::<ConfigRepo>::all(client.clone()).get_opt(&name).await {
        Ok(r) => r,
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => anyhow::bail!(
            "reading ConfigRepo {name} (its inventory): {}",
            fledge::apply::kube_message(&e)
        ),
    };
    let inventory: Vec<InventoryEntry> = match &repo {
        Some(r) => inventory::read(&client, &args.namespace, r.status.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("{e} (the agent's namespace is set by --namespace)"))?,
        None => Vec::new(),
    };
    let policy = repo.as_ref().map(policy).unwrap_or_else(Policy::default);
    // The live objects: desired ones and inventory members, `--concurrency` at a time.
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
    let lives: Vec<anyhow::Result<Option<DynamicObject>>> = futures_util::stream::iter(&wanted)
        .map(|(av, k)| read(&cluster, av, k))
        .buffered(args.concurrency.max(1))
        .collect()
        .await;
    let mut live_objects: BTreeMap<ObjectKey, DynamicObject> = BTreeMap::new();
    let mut view: BTreeMap<ObjectKey, Live> = BTreeMap::new();
    for ((_, k), o) in wanted.iter().zip(lives) {
        if let Some(o) = o? {
            view.insert(k.clone(), live_of_meta(&o.metadata, &name));
            live_objects.insert(k.clone(), o);
        }
    }
    let p = plan::plan(&desired, &view, &inventory, &policy);
    let report = Report::new(&args, &cluster, &desired, &live_objects);
    report.print(&p, &name).await
}

/// Writes the plan as text or JSON.
struct Report<'a> {
    args: &'a PlanArgs,
    cluster: &'a Cluster,
    desired: &'a [Arc<Manifest>],
    live: &'a BTreeMap<ObjectKey, DynamicObject>,
    colors: Colors,
    crds_in_bundle: BTreeSet<(String, String)>,
    namespaces_in_bundle: BTreeSet<String>,
}

impl<'a> Report<'a> {
    fn new(
        args: &'a PlanArgs,
        cluster: &'a Cluster,
        desired: &'a [Arc<Manifest>],
        live: &'a BTreeMap<ObjectKey, DynamicObject>,
    ) -> Report<'a> {
        Report {
            args,
            cluster,
            desired,
            live,
            colors: Colors {
                on: args.output == PlanFormat::Text
                    && !args.no_color
                    && std::io::stdout().is_terminal(),
            },
            crds_in_bundle: bundle_crds(desired),
            namespaces_in_bundle: bundle_namespaces(desired),
        }
    }

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

    async fn print(&self, p: &plan::Plan, name: &str) -> anyhow::Result<ExitCode> {
        let mut text = String::new();
        let (mut creates, mut updates, mut canaries, mut deletes, mut refused) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
                    refused.push(json!({"object": key, "error": e.message}));
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
                            &mut text,
                            &m.key,
                            after.unwrap_or_else(|_| m.value()),
                            "+ ",
                            "32",
                        );
                    }
                    creates.push(key);
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
                        self.diff_lines(&mut text, &before, &yaml(&clean(after)))
                    };
                    if let Action::HoldTemplate { rollout, .. } = action {
                        canaries.push(json!({"object": key, "rollout": format!("{}/{rollout}", m.key.namespace)}));
                    }
                    updates.push(json!({"object": key, "action": verb(action), "diff": diff}));
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
            canaries.push(json!({"object": key, "rollout": h.rollout.to_string()}));
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
                deletes.push(key);
            }
        }
        let mut summary = format!(
            "Plan: {} to create, {} to update, {} to delete, {} unchanged.",
            creates.len(),
            updates.len(),
            deletes.len(),
            p.unchanged.len() + p.completed.len()
        );
        if !canaries.is_empty() {
            summary.push_str(&format!(
                " {} pod template change(s) go out as a canary.",
                canaries.len()
            ));
        }
        match self.args.output {
            PlanFormat::Text => {
                print!("{text}");
                println!("{summary}");
                if !refused.is_empty() {
                    println!(
                        "{} object(s) would be refused by the API server.",
                        refused.len()
                    );
                }
            }
            PlanFormat::Json => println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "configRepo": name, "create": creates, "update": updates, "canary": canaries,
                    "delete": deletes, "refused": refused, "unchanged": p.unchanged.len(),
                    "prune": p.prune_decision.reason(), "summary": summary
                }))?
            ),
        }
        Ok(if !refused.is_empty() {
            ExitCode::FAILURE
        } else if creates.len() + updates.len() + deletes.len() + canaries.len() == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(2)
        })
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
