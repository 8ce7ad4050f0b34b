//! `fledge plan`: what a bundle would change in the live cluster. It reads the live objects and
//! the ConfigRepo's inventory and policy, and calls the same planner as the agent
//! ([`fledge::plan::plan`]) and the same report as the pull-request plan check
//! ([`fledge::plan::report`]), so the PR check and the agent make the same create/update/prune
//! decisions. Server-side dry runs (creates included) give the diff text and catch what the API
//! server or a webhook would refuse. Secret values are never printed: only which keys change.

use anyhow::Context;
use fledge::apply::{Cluster, Manifest};
use fledge::cli::{PlanArgs, PlanFormat, SourceArgs, default_repo_name};
use fledge::limits::escape_controls;
use fledge::plan::report::{self, Report, ReportError};
use fledge::plan::{self};
use fledge::render::{self, RenderOptions};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

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
    let (inventory, policy) = report::inputs(&client, &name, &args.namespace)
        .await
        .map_err(|e| match e {
            ReportError::Inventory(e) => {
                anyhow::anyhow!("{e} (the agent's namespace is set by --namespace)")
            }
            e => e.into(),
        })?;
    let live = report::read_live(&cluster, &name, &desired, &inventory, args.concurrency).await?;
    let p = plan::plan(&desired, &live.view, &inventory, &policy);
    let colors =
        args.output == PlanFormat::Text && !args.no_color && std::io::stdout().is_terminal();
    let r = Report::new(&cluster, &desired, &live, &p, colors).await;
    print(&r, args.output, &name)
}

/// Writes the report as text or JSON; the exit code says whether anything would change.
fn print(r: &Report, format: PlanFormat, name: &str) -> anyhow::Result<ExitCode> {
    match format {
        PlanFormat::Text => {
            print!("{}", r.text);
            println!("{}", r.summary);
            if !r.refused.is_empty() {
                println!(
                    "{} object(s) would be refused by the API server.",
                    r.refused.len()
                );
            }
        }
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&r.to_json(name))?),
    }
    Ok(if !r.refused.is_empty() {
        ExitCode::FAILURE
    } else if r.create.len() + r.update.len() + r.delete.len() + r.canary.len() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
