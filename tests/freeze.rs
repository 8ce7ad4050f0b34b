//! The andon cord against the real control plane, with the agent in-process: `fledge freeze`
//! (and `unfreeze`) and a `freeze:` field in the bundle pushed in a commit. While frozen, a
//! canary in flight pauses where it is (reason `Frozen`, weights and workloads unchanged), a new
//! template change in git is not started, plain configuration still applies (not with `--all`),
//! and status, printer column, Event and metric say who froze it and why; `--abort` takes the
//! canary down with no git revert; the unfreeze moves things on again.

mod support;

use fledge::crd::{ConditionStatus, ConfigRepo, FreezeSource, PauseReason, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use std::time::Duration;
use support::rollout::{deployment, fledge, rollout, rollout_where, version};
use support::sync::{
    Setup, bundle, cm_file, create_repo, events_about, is, ns_file, setup, start_agent,
    status_where,
};
use support::{GitRemote, eventually};

const FILES: &str = "[ns.yaml, cm.yaml, web.yaml, web-rollout.yaml]";
/// Canary at 50%, then an indefinite pause: mid-flight until `promote`.
const STEPS: &str = "[{setWeight: 50}, {pause: {}}]";

fn remote(ns: &str, git_revert: bool) -> GitRemote {
    let ro = rollout("web", STEPS).replace("gitRevert: false", &format!("gitRevert: {git_revert}"));
    GitRemote::new(&[
        ("fledge.yaml", bundle(ns, FILES)),
        ("ns.yaml", ns_file(ns)),
        ("cm.yaml", cm_file("cm-plain", "1")),
        ("web.yaml", deployment("web", 4, "v1")),
        ("web-rollout.yaml", ro),
    ])
}

async fn get(api: &Api<Deployment>, name: &str) -> Option<Deployment> {
    api.get_opt(name).await.ok().flatten()
}

async fn cm_value(cms: &Api<ConfigMap>) -> Option<String> {
    cms.get_opt("cm-plain")
        .await
        .ok()
        .flatten()?
        .data?
        .get("value")
        .cloned()
}

/// Synced, stable v1 available, then v2 pushed and its canary at the indefinite pause step.
/// Returns the v2 commit.
async fn canary_in_flight(s: &Setup, remote: &GitRemote) -> String {
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);
    status_where(&s.client, &s.repo, "initial sync", 90, |st| {
        is(st, "Ready", ConditionStatus::True)
    })
    .await;
    eventually("stable available", Duration::from_secs(60), || async {
        let d = get(&deployments, "web").await?;
        (d.status?.available_replicas == Some(4)).then_some(())
    })
    .await;
    let v2 = remote.commit(&[("web.yaml", deployment("web", 4, "v2"))], &[], "web v2");
    rollout_where(
        &s.client,
        &s.ns,
        "web",
        "v2 canary at the pause step",
        90,
        |st| {
            st.phase == Phase::Paused
                && st.pause_reason == Some(PauseReason::PauseStep)
                && st.canary_revision.as_deref() == Some(v2.as_str())
        },
    )
    .await;
    v2
}

/// The Rollout is paused by the freeze on the v2 canary, 50% set, canary Deployment on v2.
async fn frozen_on(s: &Setup, v2: &str, who: &str) -> fledge::crd::RolloutStatus {
    let st = rollout_where(&s.client, &s.ns, "web", "Paused, reason Frozen", 60, |st| {
        st.phase == Phase::Paused && st.pause_reason == Some(PauseReason::Frozen)
    })
    .await;
    assert_eq!(st.canary_revision.as_deref(), Some(v2), "{st:#?}");
    assert_eq!(
        st.set_weight,
        Some(50),
        "traffic stays where it is: {st:#?}"
    );
    assert_eq!(st.current_step, Some(1));
    let reason = st.reason.clone().unwrap_or_default();
    assert!(reason.contains(who), "{reason}");
    st
}

/// Over a few seconds of rollout passes, the v3 template handed off meanwhile is not started:
/// the canary stays v2 and frozen.
async fn v3_not_started(s: &Setup, v2: &str, v3: &str) {
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);
    rollout_where(
        &s.client,
        &s.ns,
        "web",
        "the v3 hand-off recorded",
        60,
        |st| st.handoff.as_ref().is_some_and(|h| h.revision == v3),
    )
    .await;
    let until = std::time::Instant::now() + Duration::from_secs(4);
    while std::time::Instant::now() < until {
        let st = rollout_where(&s.client, &s.ns, "web", "status", 10, |_| true).await;
        assert_eq!(
            st.canary_revision.as_deref(),
            Some(v2),
            "v3 started: {st:#?}"
        );
        assert_eq!(st.pause_reason, Some(PauseReason::Frozen), "{st:#?}");
        assert!(st.teardown.is_none(), "{st:#?}");
        let canary = get(&deployments, "web-canary").await.expect("canary kept");
        assert_eq!(version(&canary).as_deref(), Some("v2"));
        let stable = get(&deployments, "web").await.expect("stable");
        assert_eq!(version(&stable).as_deref(), Some("v1"), "stable held");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// After the unfreeze: the paused canary moves on; v3 (handed off meanwhile) supersedes it and
/// stops at the pause step; `promote --full` ends the rollout with stable on v3.
async fn resumes_and_ends(s: &Setup, v3: &str) {
    rollout_where(
        &s.client,
        &s.ns,
        "web",
        "v3 canary at the pause step",
        90,
        |st| {
            st.phase == Phase::Paused
                && st.pause_reason == Some(PauseReason::PauseStep)
                && st.canary_revision.as_deref() == Some(v3)
        },
    )
    .await;
    let (ok, out, err) = fledge(&s.env, &["promote", "--full", &format!("{}/web", s.ns)]);
    assert!(ok, "{out}{err}");
    rollout_where(&s.client, &s.ns, "web", "promoted v3", 120, |st| {
        st.phase == Phase::Healthy && st.stable_revision.as_deref() == Some(v3)
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);
    let stable = get(&deployments, "web").await.expect("stable");
    assert_eq!(version(&stable).as_deref(), Some("v3"));
}

fn metric(agent: &support::sync::Running, repo: &str) -> Option<String> {
    let text = agent.agent.metrics.encode();
    let key = format!("fledge_frozen{{repo=\"{repo}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key).map(str::to_owned))
}

/// The agent of `s` following `remote`, once its initial sync is Ready.
async fn synced_agent(s: &Setup, remote: &GitRemote) -> support::sync::Running {
    let agent = start_agent(
        &s.env,
        &s.agent_ns.name,
        &format!("fledge.test/agent={}", s.id),
        None,
    )
    .await;
    create_repo(&s.client, &s.repo, &s.id, &remote.url(), ".").await;
    status_where(&s.client, &s.repo, "initial sync", 90, |st| {
        is(st, "Ready", ConditionStatus::True)
    })
    .await;
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fledge_freeze_pauses_the_canary_holds_new_changes_and_unfreeze_moves_on() {
    let s = setup("frz", "frz").await;
    let remote = remote(&s.ns, false);
    let agent = start_agent(
        &s.env,
        &s.agent_ns.name,
        &format!("fledge.test/agent={}", s.id),
        None,
    )
    .await;
    create_repo(&s.client, &s.repo, &s.id, &remote.url(), ".").await;
    let v2 = canary_in_flight(&s, &remote).await;
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);
    let canary_replicas = get(&deployments, "web-canary")
        .await
        .and_then(|d| d.spec?.replicas);
    let weight_before = rollout_where(&s.client, &s.ns, "web", "status", 10, |_| true)
        .await
        .actual_weight;
    assert!(weight_before.is_some_and(|w| w > 0));

    let (ok, out, err) = fledge(
        &s.env,
        &[
            "freeze",
            &s.repo,
            "--reason",
            "incident 4711",
            "--by",
            "alice",
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("frozen by alice"), "{out}");
    let st = frozen_on(&s, &v2, "by alice (cli): incident 4711").await;
    assert_eq!(st.actual_weight, weight_before, "{st:#?}");
    assert_eq!(
        get(&deployments, "web-canary")
            .await
            .and_then(|d| d.spec?.replicas),
        canary_replicas,
        "canary size unchanged"
    );

    // Meanwhile git moves on: a new template (held) and plain config (applied).
    let v3 = remote.commit(
        &[
            ("web.yaml", deployment("web", 4, "v3")),
            ("cm.yaml", cm_file("cm-plain", "2")),
        ],
        &[],
        "web v3 and config",
    );
    let cms = Api::<ConfigMap>::namespaced(s.client.clone(), &s.ns);
    eventually("plain config applied", Duration::from_secs(60), || async {
        (cm_value(&cms).await.as_deref() == Some("2")).then_some(())
    })
    .await;
    v3_not_started(&s, &v2, &v3).await;

    // Status, printer column, condition, Event and metric say who and why.
    let st = status_where(&s.client, &s.repo, "status.frozen, v3 applied", 30, |st| {
        st.frozen.is_some() && st.applied_commit.as_deref() == Some(v3.as_str())
    })
    .await;
    let f = st.frozen.clone().unwrap();
    assert_eq!(
        (f.source, f.by.as_str(), f.reason.as_str()),
        (FreezeSource::Cli, "alice", "incident 4711")
    );
    assert!(f.since.is_some());
    assert!(is(&st, "Frozen", ConditionStatus::True), "{st:#?}");
    let out = s
        .env
        .kubectl()
        .args(["get", "configrepo", &s.repo])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().next().is_some_and(|h| h.contains("FROZEN"))
            && table.contains("by alice (cli): incident 4711"),
        "{table}"
    );
    let events = events_about(&s.client, &s.repo, "Frozen").await;
    assert!(
        events
            .iter()
            .any(|(_, n)| n.contains("by alice (cli): incident 4711")),
        "{events:?}"
    );
    assert_eq!(metric(&agent, &s.repo).as_deref(), Some("1"));

    // Re-applying the ConfigRepo (as `fledge run --repo` or a GitOps tool would) keeps it.
    create_repo(&s.client, &s.repo, &s.id, &remote.url(), ".").await;
    let repo = Api::<ConfigRepo>::all(s.client.clone())
        .get(&s.repo)
        .await
        .unwrap();
    assert!(repo.spec.freeze.is_some(), "re-apply lifted the freeze");

    let (ok, out, err) = fledge(&s.env, &["unfreeze", &s.repo]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("unfrozen"), "{out}");
    resumes_and_ends(&s, &v3).await;
    let st = status_where(&s.client, &s.repo, "unfrozen status", 30, |st| {
        st.frozen.is_none()
    })
    .await;
    assert!(!is(&st, "Frozen", ConditionStatus::True));
    eventually("Unfrozen event", Duration::from_secs(30), || async {
        let ev = events_about(&s.client, &s.repo, "Unfrozen").await;
        ev.iter().any(|(_, n)| n.contains("alice")).then_some(())
    })
    .await;
    assert_eq!(metric(&agent, &s.repo).as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_in_the_bundle_pauses_and_holds_until_a_commit_removes_it() {
    let s = setup("frg", "frg").await;
    let remote = remote(&s.ns, false);
    let _agent = start_agent(
        &s.env,
        &s.agent_ns.name,
        &format!("fledge.test/agent={}", s.id),
        None,
    )
    .await;
    create_repo(&s.client, &s.repo, &s.id, &remote.url(), ".").await;
    let v2 = canary_in_flight(&s, &remote).await;

    // A PR pulls the cord: `freeze:` in the bundle, no `by` (the commit's author is used).
    let frozen_bundle = format!(
        "{}freeze:\n  reason: release train 42\n",
        bundle(&s.ns, FILES)
    );
    remote.commit(
        &[
            ("fledge.yaml", frozen_bundle),
            ("cm.yaml", cm_file("cm-plain", "2")),
        ],
        &[],
        "freeze for the release train",
    );
    frozen_on(&s, &v2, "by fledge-test (git): release train 42").await;
    let cms = Api::<ConfigMap>::namespaced(s.client.clone(), &s.ns);
    eventually("plain config applied", Duration::from_secs(60), || async {
        (cm_value(&cms).await.as_deref() == Some("2")).then_some(())
    })
    .await;
    let st = status_where(&s.client, &s.repo, "frozen from git", 30, |st| {
        st.frozen.is_some()
    })
    .await;
    let f = st.frozen.unwrap();
    assert_eq!(
        (f.source, f.by.as_str(), f.reason.as_str()),
        (FreezeSource::Git, "fledge-test", "release train 42")
    );
    assert!(
        events_about(&s.client, &s.repo, "Frozen")
            .await
            .iter()
            .any(|(_, n)| n.contains("(git): release train 42"))
    );

    let v3 = remote.commit(&[("web.yaml", deployment("web", 4, "v3"))], &[], "web v3");
    v3_not_started(&s, &v2, &v3).await;

    // `fledge unfreeze` does not lift a freeze from git, and says so.
    let (ok, out, err) = fledge(&s.env, &["unfreeze", &s.repo]);
    assert!(ok && out.contains("stays frozen from git"), "{out}{err}");

    remote.commit(&[("fledge.yaml", bundle(&s.ns, FILES))], &[], "unfreeze");
    resumes_and_ends(&s, &v3).await;
    status_where(&s.client, &s.repo, "unfrozen", 30, |st| {
        st.frozen.is_none() && st.git_freeze.is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_abort_takes_the_canary_down_without_a_git_revert() {
    let s = setup("fra", "fra").await;
    let remote = remote(&s.ns, true);
    let _agent = start_agent(
        &s.env,
        &s.agent_ns.name,
        &format!("fledge.test/agent={}", s.id),
        None,
    )
    .await;
    create_repo(&s.client, &s.repo, &s.id, &remote.url(), ".").await;
    let v2 = canary_in_flight(&s, &remote).await;
    let attempt = rollout_where(&s.client, &s.ns, "web", "status", 10, |_| true)
        .await
        .attempt;

    let (ok, out, err) = fledge(
        &s.env,
        &[
            "freeze",
            &s.repo,
            "--reason",
            "db migration",
            "--by",
            "carol",
            "--abort",
        ],
    );
    assert!(ok, "{out}{err}");
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);
    let st = rollout_where(
        &s.client,
        &s.ns,
        "web",
        "taken down, Healthy on stable",
        90,
        |st| st.phase == Phase::Healthy && st.reason.as_deref().is_some_and(|r| r.contains("held")),
    )
    .await;
    assert_eq!(st.failed_template_hash, None, "not a verdict: {st:#?}");
    assert!(st.revert_pull_request.is_none());
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
    let events = support::rollout::rollout_events(&s.client, &s.ns, "web").await;
    assert!(
        events
            .iter()
            .any(|(_, n)| n.contains("aborted: frozen by carol (cli, abort): db migration")),
        "{events:?}"
    );
    // No git rollback: no revert branch, no revert commit on the tracked branch.
    let refs = support::git(&remote.bare(), &["for-each-ref", "--format=%(refname)"]);
    assert!(!refs.contains("fledge/rollback"), "{refs}");
    let head = support::git(&remote.bare(), &["log", "-1", "--format=%s", "main"]);
    assert_eq!(head, "web v2");

    let (ok, out, err) = fledge(&s.env, &["unfreeze", &s.repo]);
    assert!(ok, "{out}{err}");
    let st = rollout_where(&s.client, &s.ns, "web", "v2 goes out again", 90, |st| {
        st.phase == Phase::Paused
            && st.pause_reason == Some(PauseReason::PauseStep)
            && st.canary_revision.as_deref() == Some(v2.as_str())
    })
    .await;
    assert!(st.attempt > attempt, "from the first step again: {st:#?}");
    assert!(st.teardown.is_none(), "{st:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeze_all_holds_plain_config_too() {
    let s = setup("frl", "frl").await;
    let remote = remote(&s.ns, false);
    let _agent = synced_agent(&s, &remote).await;
    let (ok, out, err) = fledge(
        &s.env,
        &[
            "freeze",
            &s.repo,
            "--reason",
            "change freeze",
            "--by",
            "dave",
            "--all",
        ],
    );
    assert!(ok, "{out}{err}");
    status_where(&s.client, &s.repo, "frozen with all", 30, |st| {
        st.frozen.as_ref().is_some_and(|f| f.all)
    })
    .await;
    let c = remote.commit(&[("cm.yaml", cm_file("cm-plain", "2"))], &[], "config");
    let st = status_where(&s.client, &s.repo, "fetched, not applied", 60, |st| {
        st.fetched_commit.as_deref() == Some(c.as_str())
    })
    .await;
    let applied = st.conditions.iter().find(|c| c.type_ == "Applied").unwrap();
    assert_eq!(
        (applied.status, applied.reason.as_str()),
        (ConditionStatus::False, "Frozen"),
        "{st:#?}"
    );
    assert!(
        applied
            .message
            .contains("by dave (cli, all): change freeze"),
        "{}",
        applied.message
    );
    assert_ne!(st.applied_commit.as_deref(), Some(c.as_str()));
    let cms = Api::<ConfigMap>::namespaced(s.client.clone(), &s.ns);
    assert_eq!(
        cm_value(&cms).await.as_deref(),
        Some("1"),
        "plain config held"
    );

    let (ok, out, err) = fledge(&s.env, &["unfreeze", &s.repo]);
    assert!(ok, "{out}{err}");
    eventually(
        "config applied after unfreeze",
        Duration::from_secs(60),
        || async { (cm_value(&cms).await.as_deref() == Some("2")).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_freezes_and_changes_a_template_does_not_start_it() {
    let s = setup("frs", "frs").await;
    let remote = remote(&s.ns, false);
    let _agent = synced_agent(&s, &remote).await;
    // The freeze is recorded (status.gitFreeze) before the template is handed to the Rollout.
    let frozen_bundle = format!(
        "{}freeze: {{reason: hold v2, by: erin}}\n",
        bundle(&s.ns, FILES)
    );
    let v2 = remote.commit(
        &[
            ("fledge.yaml", frozen_bundle),
            ("web.yaml", deployment("web", 4, "v2")),
        ],
        &[],
        "freeze and web v2",
    );
    rollout_where(&s.client, &s.ns, "web", "v2 held", 60, |st| {
        st.handoff.as_ref().is_some_and(|h| h.revision == v2)
            && st.reason.as_deref().is_some_and(|r| r.contains("held"))
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);
    let rollouts = Api::<fledge::crd::Rollout>::namespaced(s.client.clone(), &s.ns);
    let st = rollouts
        .get("web")
        .await
        .unwrap()
        .status
        .unwrap_or_default();
    assert_eq!(st.phase, Phase::Healthy, "{st:#?}");
    assert!(
        st.attempt == 0 && st.canary_revision.is_none(),
        "v2 started: {st:#?}"
    );
    assert!(get(&deployments, "web-canary").await.is_none());

    remote.commit(&[("fledge.yaml", bundle(&s.ns, FILES))], &[], "unfreeze");
    rollout_where(&s.client, &s.ns, "web", "v2 goes out", 90, |st| {
        st.canary_revision.as_deref() == Some(v2.as_str())
    })
    .await;
}
