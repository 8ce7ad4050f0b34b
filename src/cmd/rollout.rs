//! `fledge promote|abort|retry|pause|resume NAMESPACE/NAME` (a request annotation on the
//! Rollout, acted on once by the rollout controller) and `fledge status` (a table of rollouts).

use anyhow::{Context, bail};
use fledge::crd::Rollout;
use fledge::limits::escape_controls;
use fledge::rollout::{REQUEST_ANNOTATION, Request, Verb};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::path::PathBuf;
use std::process::ExitCode;

/// Splits `NAMESPACE/NAME`.
fn parse_target(target: &str) -> anyhow::Result<(&str, &str)> {
    match target.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns, name))
        }
        _ => bail!("expected NAMESPACE/NAME, got {:?}", escape_controls(target)),
    }
}

/// A fresh nonce: milliseconds since the epoch and the process id.
fn nonce() -> String {
    let ms = jiff::Timestamp::now().as_millisecond();
    format!("{ms}-{}", std::process::id())
}

/// Sets the request annotation `<verb>@<nonce>` on the Rollout.
pub async fn request_cmd(
    verb: Verb,
    target: String,
    kubeconfig: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let (ns, name) = parse_target(&target)?;
    let client = crate::kube_client(kubeconfig.as_deref()).await?;
    let api: Api<Rollout> = Api::namespaced(client, ns);
    let request = Request {
        verb,
        nonce: nonce(),
    };
    let body =
        serde_json::json!({"metadata": {"annotations": {REQUEST_ANNOTATION: request.to_string()}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&body))
        .await
        .with_context(|| format!("requesting {} of rollout {ns}/{name}", verb.as_str()))?;
    println!(
        "rollout {ns}/{name}: {} requested ({request})",
        verb.as_str()
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints a table of the rollouts in `namespace` (all namespaces when `None`); with `watch`,
/// again every 2 seconds (redrawn in place on a TTY) until interrupted.
pub async fn status_cmd(
    namespace: Option<String>,
    watch: bool,
    kubeconfig: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let client = crate::kube_client(kubeconfig.as_deref()).await?;
    let api: Api<Rollout> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let tty = std::io::stdout().is_terminal();
    loop {
        let list = api
            .list(&ListParams::default())
            .await
            .context("listing rollouts")?;
        let text = table(&list.items, jiff::Timestamp::now());
        if watch && tty {
            print!("\x1b[2J\x1b[H{text}");
        } else {
            print!("{text}");
        }
        if !watch {
            return Ok(ExitCode::SUCCESS);
        }
        if !tty {
            println!();
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

/// The status table.
pub fn table(rollouts: &[Rollout], now: jiff::Timestamp) -> String {
    let mut rows = vec![[
        "NAMESPACE".to_owned(),
        "NAME".into(),
        "PHASE".into(),
        "STEP".into(),
        "WEIGHT(SET/ACTUAL)".into(),
        "SCORE".into(),
        "AGE".into(),
        "REASON".into(),
    ]];
    for r in rollouts {
        let st = r.status.clone().unwrap_or_default();
        let weight = match (st.set_weight, st.actual_weight) {
            (Some(s), Some(a)) => format!("{s}/{a}"),
            (Some(s), None) => format!("{s}/-"),
            (None, Some(a)) => format!("-/{a}"),
            (None, None) => "-".into(),
        };
        let age = r
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| age(now.duration_since(t.0).as_secs()))
            .unwrap_or_else(|| "-".into());
        rows.push([
            r.namespace().unwrap_or_default(),
            r.name_any(),
            format!("{:?}", st.phase),
            st.step_progress.clone().unwrap_or_else(|| "-".into()),
            weight,
            st.last_score
                .map(|s| format!("{s:.1}"))
                .unwrap_or_else(|| "-".into()),
            age,
            escape_controls(st.reason.as_deref().unwrap_or("")).into_owned(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `kubectl`-style age: `45s`, `12m`, `3h`, `5d`.
fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_namespace_slash_name() {
        assert_eq!(parse_target("shop/web").ok(), Some(("shop", "web")));
        assert!(parse_target("web").is_err());
        assert!(parse_target("/web").is_err());
        assert!(parse_target("a/b/c").is_err());
    }

    #[test]
    fn the_nonce_makes_a_valid_request() {
        let r = Request {
            verb: Verb::Abort,
            nonce: nonce(),
        };
        assert_eq!(Request::parse(&r.to_string()), Ok(r));
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(
            (age(5), age(125), age(7300), age(200000)),
            ("5s".into(), "2m".into(), "2h".into(), "2d".into())
        );
    }
}
