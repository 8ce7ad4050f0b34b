//! The rollout controller against the real control plane, driven by the sync agent in-process:
//! a pod-template change in git goes out as a canary beside a fresh baseline (replicas router),
//! is promoted to stable, or is aborted by `fledge abort` while paused; and an agent stopped
//! mid-rollout and started again resumes to the same end with the same canary.

mod support;

use fledge::crd::{Phase, Rollout};
use fledge::crd::{TeardownCause, VerdictOutcome};
use fledge::rollout::replicas::canary_pods;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use std::time::Duration;
use support::rollout::{
    constant_template, deployment, fledge, rollout, rollout_events, rollout_where, synced,
    track_labels, version,
};
use support::sync::{Setup, bundle, create_repo, events_about, ns_file, setup, start_agent};
use support::{GitRemote, eventually};

const FILES: &str = "[ns.yaml, web.yaml, web-rollout.yaml]";
const FILES_WITH_TEMPLATE: &str = "[ns.yaml, golden.yaml, web.yaml, web-rollout.yaml]";

fn remote(ns: &str, steps: &str) -> GitRemote {
    GitRemote::new(&[
        ("fledge.yaml", bundle(ns, FILES)),
        ("ns.yaml", ns_file(ns)),
        ("web.yaml", deployment("web", 3, "v1")),
        ("web-rollout.yaml", rollout("web", steps)),
    ])
}

/// `d` (a Deployment of [`deployment`]) with one more env var.
fn with_env(d: String, name: &str, value: &str) -> String {
    d + &format!("        - {{name: {name}, value: \"{value}\"}}\n")
}

/// The env var names of a Deployment's first container.
fn env_names(d: &Deployment) -> Vec<String> {
    let c = &d
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    c.env.iter().flatten().map(|e| e.name.clone()).collect()
}

async fn get(api: &Api<Deployment>, name: &str) -> Option<Deployment> {
    api.get_opt(name).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_change_goes_out_as_canary_and_baseline_and_is_promoted() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("ro", "ro").await;
    let remote = remote(&ns, "[{setWeight: 33}, {pause: {duration: 2s}}]");
    // v1 has an env var that v2 removes; v2 adds another.
    remote.commit(
        &[(
            "web.yaml",
            with_env(deployment("web", 3, "v1"), "LEGACY", "1"),
        )],
        &[],
        "web v1 with LEGACY",
    );
    let agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    synced(&client, &repo, &deployments).await;
    let st = rollout_where(&client, &ns, "web", "Healthy at first", 30, |s| {
        s.phase == Phase::Healthy
    })
    .await;
    assert!(st.canary_template_hash.is_none(), "{st:#?}");
    // Every rollout worker takes Rollouts off the queue, not one: kube's store readiness wakes
    // only the last of several waiters, and when each worker awaited it the controller ran one
    // pass at a time (seconds of queueing with hundreds of rollouts; docs/performance.md).
    eventually(
        "all 4 rollout workers running",
        Duration::from_secs(30),
        || async {
            let text = agent.agent.metrics.encode();
            text.lines()
                .any(|l| l == "fledge_rollout_workers 4")
                .then_some(())
        },
    )
    .await;

    remote.commit(
        &[(
            "web.yaml",
            with_env(deployment("web", 3, "v2"), "FEATURE", "on"),
        )],
        &[],
        "web v2: FEATURE on, LEGACY gone",
    );
    // Canary (new template) and baseline (stable template), same size, told apart by the track.
    let want = canary_pods(3, 33, true);
    let (canary, baseline) = eventually("canary and baseline", Duration::from_secs(60), || async {
        let c = get(&deployments, "web-canary").await?;
        let b = get(&deployments, "web-baseline").await?;
        (c.spec.as_ref()?.replicas == Some(want) && b.spec.as_ref()?.replicas == Some(want))
            .then_some((c, b))
    })
    .await;
    assert_eq!(version(&canary).as_deref(), Some("v2"));
    assert_eq!(version(&baseline).as_deref(), Some("v1"));
    let canary_track = Some("canary".to_owned());
    assert_eq!(track_labels(&canary), (canary_track.clone(), canary_track));
    let baseline_track = Some("baseline".to_owned());
    assert_eq!(
        track_labels(&baseline),
        (baseline_track.clone(), baseline_track)
    );
    assert_eq!(
        version(&get(&deployments, "web").await.unwrap()).as_deref(),
        Some("v1"),
        "stable held"
    );

    // Promotion: stable on v2, canary and baseline gone, Healthy.
    let st = rollout_where(&client, &ns, "web", "promoted and Healthy", 120, |s| {
        s.phase == Phase::Healthy
            && s.handoff.as_ref().is_some_and(|h| {
                s.stable_template_hash.as_deref() == Some(h.template_hash.as_str())
            })
    })
    .await;
    assert!(st.failed_template_hash.is_none(), "{st:#?}");
    eventually(
        "canary and baseline gone",
        Duration::from_secs(30),
        || async {
            (get(&deployments, "web-canary").await.is_none()
                && get(&deployments, "web-baseline").await.is_none())
            .then_some(())
        },
    )
    .await;
    let stable = get(&deployments, "web").await.unwrap();
    assert_eq!(version(&stable).as_deref(), Some("v2"));
    // Exactly git's v2 template: the env var v2 removed did not survive the promotion.
    assert_eq!(env_names(&stable), ["VERSION", "FEATURE"]);
    let hash = stable
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("fledge.dev/template-hash"))
        .cloned();
    assert_eq!(hash, st.handoff.map(|h| h.template_hash));
    let generation = stable.metadata.generation;
    // The promotion is fledge's own doing: a sync pass after it finds no drift.
    agent.agent.reconcile(&repo, false).await;
    let drift = events_about(&client, &repo, "DriftDetected").await;
    assert!(
        drift.is_empty(),
        "the promotion was taken for drift: {drift:?}"
    );
    let stable = get(&deployments, "web").await.unwrap();
    assert_eq!(env_names(&stable), ["VERSION", "FEATURE"]);
    assert_eq!(
        stable.metadata.generation, generation,
        "sync's pass rolled stable again"
    );
    let (ok, out, err) = fledge(&env, &["status", "-n", &ns]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains("web") && l.contains("Healthy")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fledge_abort_while_paused_rolls_back_and_keeps_stable() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("roab", "roab").await;
    let remote = remote(&ns, "[{setWeight: 33}, {pause: {}}]");
    let _agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    synced(&client, &repo, &deployments).await;
    let stable_before = get(&deployments, "web").await.unwrap();

    remote.commit(&[("web.yaml", deployment("web", 3, "v2"))], &[], "web v2");
    let st = rollout_where(&client, &ns, "web", "paused at the pause step", 90, |s| {
        s.phase == Phase::Paused && s.current_step == Some(1)
    })
    .await;
    assert_eq!(st.step_progress.as_deref(), Some("2/2"));
    assert!(get(&deployments, "web-canary").await.is_some());
    let (ok, out, err) = fledge(&env, &["status"]);
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(&ns) && l.contains("Paused") && l.contains("2/2")),
        "{out}"
    );

    let (ok, out, err) = fledge(&env, &["abort", &format!("{ns}/web")]);
    assert!(ok, "{out}{err}");
    let st = rollout_where(&client, &ns, "web", "RolledBack", 60, |s| {
        s.phase == Phase::RolledBack
    })
    .await;
    let failed = st.handoff.as_ref().map(|h| h.template_hash.clone());
    assert!(failed.is_some());
    assert_eq!(st.failed_template_hash, failed, "{st:#?}");
    eventually(
        "canary and baseline gone",
        Duration::from_secs(30),
        || async {
            (get(&deployments, "web-canary").await.is_none()
                && get(&deployments, "web-baseline").await.is_none())
            .then_some(())
        },
    )
    .await;
    let stable = get(&deployments, "web").await.unwrap();
    assert_eq!(version(&stable).as_deref(), Some("v1"));
    let template = |d: &Deployment| d.spec.as_ref().map(|s| s.template.clone());
    assert_eq!(
        template(&stable),
        template(&stable_before),
        "the stable template is untouched"
    );
    let hash = |d: &Deployment| {
        d.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("fledge.dev/template-hash"))
            .cloned()
    };
    assert_eq!(hash(&stable), hash(&stable_before));
    assert_ne!(hash(&stable), failed);
    let rollouts = Api::<Rollout>::namespaced(client.clone(), &ns);
    let handled = rollouts
        .get("web")
        .await
        .unwrap()
        .status
        .and_then(|s| s.handled_request);
    assert!(handled.is_some_and(|h| h.starts_with("abort@")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_stopped_mid_rollout_resumes_with_the_same_canary() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("rocr", "rocr").await;
    let remote = remote(&ns, "[{setWeight: 33}, {pause: {duration: 4s}}]");
    let selector = format!("fledge.test/agent={id}");
    let agent = start_agent(&env, &agent_ns.name, &selector, None).await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    synced(&client, &repo, &deployments).await;

    remote.commit(&[("web.yaml", deployment("web", 3, "v2"))], &[], "web v2");
    let uid = eventually("a canary", Duration::from_secs(60), || async {
        get(&deployments, "web-canary").await?.metadata.uid
    })
    .await;
    // Stop the agent mid-rollout (its tasks are aborted, nothing is cleaned up), start another.
    drop(agent);
    let _agent = start_agent(&env, &agent_ns.name, &selector, None).await;
    let rollouts = Api::<Rollout>::namespaced(client.clone(), &ns);
    let st = eventually(
        "promoted by the new agent",
        Duration::from_secs(120),
        || async {
            if let Some(c) = get(&deployments, "web-canary").await {
                assert_eq!(
                    c.metadata.uid.as_ref(),
                    Some(&uid),
                    "a second canary was created"
                );
            }
            let s = rollouts.get("web").await.ok()?.status?;
            let done = s.phase == Phase::Healthy
                && s.handoff.as_ref().is_some_and(|h| {
                    s.stable_template_hash.as_deref() == Some(h.template_hash.as_str())
                });
            done.then_some(s)
        },
    )
    .await;
    assert_eq!(st.attempt, 1, "{st:#?}");
    eventually(
        "canary and baseline gone",
        Duration::from_secs(30),
        || async {
            (get(&deployments, "web-canary").await.is_none()
                && get(&deployments, "web-baseline").await.is_none())
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        version(&get(&deployments, "web").await.unwrap()).as_deref(),
        Some("v2")
    );
}

/// A rollout whose analysis step judges a constant metric through the env's real Prometheus.
fn remote_with_analysis(env: &support::Env, ns: &str, value: f64) -> GitRemote {
    let steps = "[{setWeight: 33}, {analysis: {template: golden, duration: 3s}}]";
    let rollout = rollout("web", steps).replace("gitRevert: false", "gitRevert: true");
    GitRemote::new(&[
        ("fledge.yaml", bundle(ns, FILES_WITH_TEMPLATE)),
        ("ns.yaml", ns_file(ns)),
        (
            "golden.yaml",
            constant_template("golden", env.prometheus_url(), value, 0.01),
        ),
        ("web.yaml", deployment("web", 3, "v1")),
        ("web-rollout.yaml", rollout),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_analysis_step_promotes_with_the_verdict_recorded() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("ropa", "ropa").await;
    let remote = remote_with_analysis(&env, &ns, 0.001);
    let _agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    synced(&client, &repo, &deployments).await;

    remote.commit(&[("web.yaml", deployment("web", 3, "v2"))], &[], "web v2");
    let st = rollout_where(
        &client,
        &ns,
        "web",
        "promoted after the analysis",
        120,
        |s| {
            s.phase == Phase::Healthy
                && !s.analyses.is_empty()
                && s.handoff.as_ref().is_some_and(|h| {
                    s.stable_template_hash.as_deref() == Some(h.template_hash.as_str())
                })
        },
    )
    .await;
    let a = st.analyses.last().unwrap();
    assert_eq!(
        (a.verdict, a.template.as_str(), a.step),
        (VerdictOutcome::Pass, "golden", 1),
        "{st:#?}"
    );
    assert_eq!(
        a.metrics.first().map(|m| m.name.as_str()),
        Some("error-ratio")
    );
    assert_eq!(
        version(&get(&deployments, "web").await.unwrap()).as_deref(),
        Some("v2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_analysis_step_rolls_back_naming_the_metric() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("rofa", "rofa").await;
    let remote = remote_with_analysis(&env, &ns, 0.5);
    let _agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    synced(&client, &repo, &deployments).await;

    remote.commit(&[("web.yaml", deployment("web", 3, "v2"))], &[], "web v2");
    let st = rollout_where(
        &client,
        &ns,
        "web",
        "rolled back by the analysis",
        120,
        |s| s.phase == Phase::RolledBack,
    )
    .await;
    assert_eq!(
        st.teardown.as_ref().map(|t| t.cause),
        Some(TeardownCause::AnalysisFailed),
        "{st:#?}"
    );
    let a = st.analyses.last().unwrap();
    assert_eq!(a.verdict, VerdictOutcome::Fail, "{st:#?}");
    assert!(
        a.metrics
            .iter()
            .any(|m| m.name == "error-ratio" && m.result != "pass"),
        "{st:#?}"
    );
    assert_eq!(
        st.failed_template_hash,
        st.handoff.as_ref().map(|h| h.template_hash.clone())
    );
    eventually(
        "canary and baseline gone",
        Duration::from_secs(30),
        || async {
            (get(&deployments, "web-canary").await.is_none()
                && get(&deployments, "web-baseline").await.is_none())
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        version(&get(&deployments, "web").await.unwrap()).as_deref(),
        Some("v1")
    );
    // No forge for this ConfigRepo (a local remote): the git rollback says so instead of
    // failing silently (tests/rollback_loop.rs has the whole rollback against Gitea).
    let evs = eventually(
        "the rollback and git-rollback events",
        Duration::from_secs(30),
        || async {
            let evs = rollout_events(&client, &ns, "web").await;
            let has = |r: &str| evs.iter().any(|(reason, _)| reason == r);
            (has("RolloutRolledBack") && has("GitRollbackNotConfigured")).then_some(evs)
        },
    )
    .await;
    assert!(
        evs.iter()
            .any(|(r, n)| r == "GitRollbackNotConfigured" && n.contains("not configured")),
        "{evs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_process_killed_after_the_canary_and_during_promotion_finishes_the_same() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("rokl", "rokl").await;
    let remote = remote(&ns, "[{setWeight: 33}, {pause: {duration: 2s}}]");
    let selector = format!("fledge.test/agent={id}");
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);

    // 1. The agent process dies right after it applied the canary.
    let commit_v2 = async {
        synced(&client, &repo, &deployments).await;
        remote.commit(&[("web.yaml", deployment("web", 3, "v2"))], &[], "web v2");
    };
    support::sync::run_until_failpoint(
        &env,
        &agent_ns.name,
        &id,
        "rollout-after-canary",
        commit_v2,
    )
    .await;
    let uid = get(&deployments, "web-canary")
        .await
        .and_then(|c| c.metadata.uid);
    assert!(uid.is_some(), "the crash came after the canary was applied");

    // 2. A new process resumes from the status and dies right after promoting stable.
    support::sync::run_until_failpoint(&env, &agent_ns.name, &id, "rollout-after-promote", async {
    })
    .await;
    let canary_now = get(&deployments, "web-canary")
        .await
        .and_then(|c| c.metadata.uid);
    assert!(
        canary_now.is_none() || canary_now == uid,
        "a second canary was created"
    );
    let rollouts = Api::<Rollout>::namespaced(client.clone(), &ns);
    let st = rollouts
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert_eq!(st.phase, Phase::Promoting, "{st:#?}");

    // 3. An agent without crash points finishes: the same end as an uncrashed run.
    let _agent = start_agent(&env, &agent_ns.name, &selector, None).await;
    let st = rollout_where(&client, &ns, "web", "promoted and Healthy", 120, |s| {
        s.phase == Phase::Healthy
            && s.handoff.as_ref().is_some_and(|h| {
                s.stable_template_hash.as_deref() == Some(h.template_hash.as_str())
            })
    })
    .await;
    assert!(st.failed_template_hash.is_none(), "{st:#?}");
    eventually(
        "canary and baseline gone",
        Duration::from_secs(30),
        || async {
            (get(&deployments, "web-canary").await.is_none()
                && get(&deployments, "web-baseline").await.is_none())
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        version(&get(&deployments, "web").await.unwrap()).as_deref(),
        Some("v2")
    );
}

#[test]
fn the_binary_named_kubectl_fledge_is_the_kubectl_plugin() {
    let dir = std::env::temp_dir().join(support::unique("plugin"));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = dir.join("kubectl-fledge");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_fledge"), &plugin).unwrap();
    let out = std::process::Command::new(&plugin)
        .args(["promote", "--help"])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        help.contains("Usage: kubectl fledge promote [OPTIONS] <ROLLOUT>"),
        "{help}"
    );
    assert!(help.contains("--full"), "{help}");
}
