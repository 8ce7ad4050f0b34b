//! `fledge freeze CONFIGREPO --reason …` and `fledge unfreeze CONFIGREPO`: the andon cord, set
//! on `ConfigRepo.spec.freeze` with the field manager `fledge-freeze` (a merge patch, so sync,
//! `fledge run --repo` and `kubectl apply` of the ConfigRepo never lift it). The agent acts on
//! it: see `controller/freeze.rs` (sync) and `controller/rollouts/freeze.rs` (rollouts).

use anyhow::{Context, bail};
use fledge::cli::FreezeArgs;
use fledge::crd::{ConfigRepo, FreezeSpec};
use fledge::labels::FREEZE_FIELD_MANAGER;
use fledge::limits::escape_controls;
use kube::api::{Api, Patch, PatchParams};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Who runs the command: `$USER`, else the kubeconfig's current user, else `unknown`.
fn who(kubeconfig: Option<&Path>) -> String {
    if let Ok(u) = std::env::var("USER")
        && !u.trim().is_empty()
    {
        return u.trim().to_owned();
    }
    let kc = match kubeconfig {
        Some(p) => kube::config::Kubeconfig::read_from(p).ok(),
        None => kube::config::Kubeconfig::read().ok(),
    };
    kc.and_then(|kc| {
        let current = kc.current_context.clone()?;
        kc.contexts
            .iter()
            .find(|c| c.name == current)
            .and_then(|c| c.context.as_ref())
            .and_then(|c| c.user.clone())
    })
    .unwrap_or_else(|| "unknown".into())
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FREEZE_FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// `fledge freeze`.
pub async fn freeze_cmd(args: FreezeArgs, kubeconfig: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let reason = args.reason.trim();
    if reason.is_empty() {
        bail!("--reason must say why the line is stopped");
    }
    if reason.chars().any(char::is_control) || reason.chars().count() > 512 {
        bail!("--reason must be one line of at most 512 characters");
    }
    let by = args
        .by
        .map(|b| b.trim().to_owned())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| who(kubeconfig.as_deref()));
    if by.chars().any(char::is_control) || by.chars().count() > 128 {
        bail!("--by must be a name of at most 128 characters");
    }
    let since = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .ok();
    let spec = FreezeSpec {
        reason: reason.to_owned(),
        by: by.clone(),
        since,
        abort: args.abort,
        all: args.all,
    };
    let client = crate::kube_client(kubeconfig.as_deref()).await?;
    let api: Api<ConfigRepo> = Api::all(client);
    let name = &args.config_repo;
    // Every field spelled out, so that a new freeze replaces an earlier one (a merge patch
    // would keep an earlier `abort: true` that this one leaves out), in one write.
    let body = serde_json::json!({"spec": {"freeze": {
        "reason": spec.reason,
        "by": spec.by,
        "since": spec.since,
        "abort": spec.abort,
        "all": spec.all,
    }}});
    api.patch(name, &params(), &Patch::Merge(&body))
        .await
        .with_context(|| format!("freezing ConfigRepo {}", escape_controls(name)))?;
    let mode = match (args.abort, args.all) {
        (false, false) => "canaries in flight pause; plain configuration still syncs",
        (true, false) => "canaries in flight abort; plain configuration still syncs",
        (false, true) => "canaries in flight pause; nothing is applied",
        (true, true) => "canaries in flight abort; nothing is applied",
    };
    println!(
        "configrepo {} frozen by {}: {} ({mode}; lift with `fledge unfreeze {}`)",
        escape_controls(name),
        escape_controls(&by),
        escape_controls(reason),
        escape_controls(name),
    );
    Ok(ExitCode::SUCCESS)
}

/// `fledge unfreeze`.
pub async fn unfreeze_cmd(name: String, kubeconfig: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let client = crate::kube_client(kubeconfig.as_deref()).await?;
    let api: Api<ConfigRepo> = Api::all(client);
    let repo = api
        .get(&name)
        .await
        .with_context(|| format!("reading ConfigRepo {}", escape_controls(&name)))?;
    let body = serde_json::json!({"spec": {"freeze": null}});
    api.patch(&name, &params(), &Patch::Merge(&body))
        .await
        .with_context(|| format!("unfreezing ConfigRepo {}", escape_controls(&name)))?;
    let git = repo.status.as_ref().and_then(|s| s.git_freeze.as_ref());
    match (&repo.spec.freeze, git) {
        (_, Some(g)) => println!(
            "configrepo {}: the CLI freeze is lifted, but it stays frozen from git {} (remove `freeze:` from the bundle)",
            escape_controls(&name),
            g.message
        ),
        (Some(_), None) => println!("configrepo {} unfrozen", escape_controls(&name)),
        (None, None) => println!("configrepo {} was not frozen", escape_controls(&name)),
    }
    Ok(ExitCode::SUCCESS)
}
