//! `fledge plan`.

use anyhow::Context;
use fledge::apply::{Cluster, Manifest};
use fledge::cli::{PlanArgs, PlanFormat, SourceArgs, default_repo_name};
use fledge::controller::inventory;
use fledge::crd::ConfigRepo;
use fledge::labels::CONTENT_HASH_ANNOTATION;
use fledge::render::{self, RenderOptions, RenderedObject};
use futures_util::StreamExt;
use kube::api::Api;
use serde_json::Value;
use std::io::IsTerminal;
use std::process::ExitCode;

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

/// What applying one object would do.
enum Verdict {
    Create,
    Unchanged,
    /// The live object and the server's dry-run answer, both as cleaned YAML.
    Update {
        before: String,
        after: String,
    },
}

/// Reads `o` from the cluster; when its content hash differs, asks the server what an apply
/// would make of it (a dry run), so defaults the server fills in never show as a change.
async fn verdict(cluster: &Cluster, o: &RenderedObject) -> anyhow::Result<Verdict> {
    let live = cluster
        .get(&o.api_version, &o.key.kind, &o.key.namespace, &o.key.name)
        .await
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", o.key))?;
    let Some(live) = live else {
        return Ok(Verdict::Create);
    };
    let hash = live
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONTENT_HASH_ANNOTATION));
    if hash == Some(&o.hash) {
        return Ok(Verdict::Unchanged);
    }
    let after = cluster
        .apply_one(&Manifest::of(o), true, true)
        .await
        .map_err(|e| anyhow::anyhow!("dry run of {}: {e}", o.key))?;
    let (before, after) = (
        yaml(&clean(serde_json::to_value(&live)?)),
        yaml(&clean(serde_json::to_value(&after)?)),
    );
    Ok(if before == after {
        Verdict::Unchanged
    } else {
        Verdict::Update { before, after }
    })
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
    let desired = match desired {
        Ok(d) => d,
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("error: {e}");
            }
            eprintln!("render failed: nothing would be applied or pruned");
            return Ok(ExitCode::FAILURE);
        }
    };
    let cluster = Cluster::new(client.clone());
    let colors = Colors {
        on: args.output == PlanFormat::Text && !args.no_color && std::io::stdout().is_terminal(),
    };
    let (mut creates, mut updates, mut unchanged, mut deletes) =
        (Vec::new(), Vec::new(), 0usize, Vec::new());
    let mut text = String::new();
    // Each object's verdict, read from the cluster `--concurrency` at a time (in order).
    let verdicts: Vec<anyhow::Result<Verdict>> = futures_util::stream::iter(&desired.objects)
        .map(|o| verdict(&cluster, o))
        .buffered(args.concurrency.max(1))
        .collect()
        .await;
    for (o, v) in desired.objects.iter().zip(verdicts) {
        match v? {
            Verdict::Unchanged => unchanged += 1,
            Verdict::Create => {
                creates.push(o.key.to_string());
                text.push_str(&colors.paint("32;1", &format!("+ create {}\n", o.key)));
                for line in yaml(&clean(o.object.clone())).lines() {
                    text.push_str(&colors.paint("32", &format!("+ {line}\n")));
                }
            }
            Verdict::Update { before, after } => {
                let diff = similar::TextDiff::from_lines(&before, &after);
                let unified = diff
                    .unified_diff()
                    .context_radius(3)
                    .header("live", "git")
                    .to_string();
                text.push_str(&colors.paint("33;1", &format!("~ update {}\n", o.key)));
                for line in unified.lines() {
                    let painted = match line.chars().next() {
                        Some('+') if !line.starts_with("+++") => colors.paint("32", line),
                        Some('-') if !line.starts_with("---") => colors.paint("31", line),
                        Some('@') => colors.paint("36", line),
                        _ => line.to_owned(),
                    };
                    text.push_str(&format!("  {painted}\n"));
                }
                updates.push(serde_json::json!({"object": o.key.to_string(), "diff": unified}));
            }
        }
    }
    // No ConfigRepo (or fledge's CRDs not installed at all): nothing is in an inventory.
    let repo = match Api::<ConfigRepo>::all(client.clone()).get_opt(&name).await {
        Ok(r) => r,
        Err(kube::Error::Api(s)) if s.code == 404 => None,
        Err(e) => anyhow::bail!(
            "reading ConfigRepo {name} (its inventory): {}",
            fledge::apply::kube_message(&e)
        ),
    };
    if let Some(repo) = repo {
        let inventory = inventory::read(&client, &args.namespace, repo.status.as_ref())
            .await
            .map_err(|e| anyhow::anyhow!("{e} (the agent's namespace is set by --namespace)"))?;
        let wanted: std::collections::BTreeSet<String> =
            desired.objects.iter().map(|o| o.key.to_string()).collect();
        for e in inventory {
            let key = fledge::plan::entry_key(&e).to_string();
            if !wanted.contains(&key) {
                text.push_str(&colors.paint("31;1", &format!("- delete {key}\n")));
                deletes.push(key);
            }
        }
    }
    let changes = creates.len() + updates.len() + deletes.len();
    let summary = format!(
        "Plan: {} to create, {} to update, {} to delete, {unchanged} unchanged.",
        creates.len(),
        updates.len(),
        deletes.len()
    );
    match args.output {
        PlanFormat::Text => {
            print!("{text}");
            println!("{summary}");
        }
        PlanFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "configRepo": name, "create": creates, "update": updates, "delete": deletes, "unchanged": unchanged, "summary": summary
            }))?
        ),
    }
    Ok(if changes == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
