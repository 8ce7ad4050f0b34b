//! Rollouts with real traffic, replicas router: a config repo with a served Deployment (8 pods of
//! the demo app run by the env's pod runner), its Service, an HTTPRoute on the env's Traefik
//! gateway and an AnalysisTemplate against the env's Prometheus. A steady load goes through the
//! gateway for the whole test; the request shares are measured from the answers (each says which
//! track and version served it). A healthy change goes 10 → 33 → 100; 5% errors are stopped at
//! the first analysis; +200 ms is stopped by the baseline comparison although the p99 threshold
//! passes; an agent killed with SIGKILL during an analysis step is resumed by a new one.

mod support;

use fledge::crd::{Phase, Rollout, RolloutStatus, TeardownCause, VerdictOutcome};
use fledge::rollout::replicas::canary_pods;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use std::time::Duration;
use support::dataplane::{gateway, wait_serving};
use support::rollout::{rollout, rollout_events, rollout_where, version};
use support::sync::{
    Setup, agent_command, bundle, create_repo, is, ns_file, setup, start_agent, status_where,
};
use support::traffic::{
    HEALTHY, Load, Seen, StatusLog, Tally, app_deployment, app_route, app_service, golden_template,
};
use support::{GitRemote, eventually};

/// Stable pods: with the replicas router 10% is 1 canary + 1 baseline beside them (10 pods), 33%
/// is 8 + 8 (24 pods).
const REPLICAS: u32 = 8;
/// Requests a second through the gateway, all test long (they are also what Prometheus sees).
const RPS: f64 = 100.0;
/// Answers per share measurement: at 10% a ±5 point band is over 3 standard deviations wide
/// even for a random balancer (Traefik's round robin is much tighter).
const SAMPLE: usize = 400;
/// Each analysis: 4 s warm-up, then a 10 s window sampled every 2 s.
const STEPS: &str = "[{setWeight: 10}, {analysis: {template: golden, warmup: 4s, duration: 10s}}, {setWeight: 33}, {analysis: {template: golden, warmup: 4s, duration: 10s}}]";
const FILES: &str =
    "[ns.yaml, golden.yaml, web.yaml, web-svc.yaml, web-route.yaml, web-rollout.yaml]";

/// The app's repo: namespace, template, Deployment `web` (v1, healthy), Service, route, Rollout
/// with `steps`.
fn remote(env: &support::Env, ns: &str, host: &str, steps: &str) -> GitRemote {
    GitRemote::new(&[
        ("fledge.yaml", bundle(ns, FILES)),
        ("ns.yaml", ns_file(ns)),
        (
            "golden.yaml",
            golden_template("golden", env.prometheus_url()),
        ),
        ("web.yaml", app_deployment("web", REPLICAS, "v1", HEALTHY)),
        ("web-svc.yaml", app_service("web")),
        ("web-route.yaml", app_route("web", host)),
        ("web-rollout.yaml", rollout("web", steps)),
    ])
}

/// Commits v2 of the pod template with the demo app's settings `env`.
fn commit_v2(remote: &GitRemote, env: &[(&str, &str)], msg: &str) {
    remote.commit(
        &[("web.yaml", app_deployment("web", REPLICAS, "v2", env))],
        &[],
        msg,
    );
}

/// The initial sync is done, the 8 stable pods serve, and the load (started here) reaches them
/// through the gateway: all of it to stable v1.
async fn serving_v1(s: &Setup, host: &str) -> Load {
    status_where(&s.client, &s.repo, "initial sync", 90, |st| {
        is(st, "Ready", fledge::crd::ConditionStatus::True)
    })
    .await;
    wait_serving(&s.client, &s.ns, "app=web", REPLICAS as usize).await;
    let load = Load::start(gateway(&s.env, host, "/"), RPS);
    load.share_settles(
        "all traffic on stable v1",
        300,
        Duration::from_secs(60),
        |t| t.track_share("stable") == 1.0 && t.version_share("v1") == 1.0,
    )
    .await;
    load
}

async fn get(api: &Api<Deployment>, name: &str) -> Option<Deployment> {
    api.get_opt(name).await.ok().flatten()
}

async fn status(client: &kube::Client, ns: &str) -> RolloutStatus {
    Api::<Rollout>::namespaced(client.clone(), ns)
        .get("web")
        .await
        .expect("reading the Rollout")
        .status
        .unwrap_or_default()
}

/// The rollout serves at `weight` (set and achieved); the canary's pods run.
async fn at_weight(s: &Setup, weight: i32) -> RolloutStatus {
    let st = rollout_where(
        &s.client,
        &s.ns,
        "web",
        &format!("canary at {weight}%"),
        90,
        |st| st.set_weight == Some(weight) && st.actual_weight == Some(weight),
    )
    .await;
    let pods = canary_pods(REPLICAS as i32, weight, true) as usize;
    wait_serving(&s.client, &s.ns, "app=web,fledge.dev/track=canary", pods).await;
    st
}

/// Measures the request shares at `weight`: canary and baseline each `weight` ±5 points, stable
/// the rest; every canary answer is v2 and every other v1. Checks the rollout was still at this
/// weight once the sample was complete (the measurement belongs to this step).
async fn measure_at(s: &Setup, load: &Load, weight: i32) -> Tally {
    let w = f64::from(weight) / 100.0;
    let t = load
        .share_settles(
            &format!("canary and baseline at {weight}% each"),
            SAMPLE,
            Duration::from_secs(40),
            |t| {
                (t.track_share("canary") - w).abs() <= 0.05
                    && (t.track_share("baseline") - w).abs() <= 0.05
                    && t.version_share("v2") == t.track_share("canary")
            },
        )
        .await;
    let st = status(&s.client, &s.ns).await;
    assert_eq!(
        st.set_weight,
        Some(weight),
        "the step moved on during the measurement: {st:#?}"
    );
    t
}

/// Traffic back on (or moved to) stable only, all of it `version`.
async fn all_stable(load: &Load, version: &str) -> Tally {
    load.share_settles(
        &format!("all traffic on stable {version}"),
        300,
        Duration::from_secs(60),
        |t| t.track_share("stable") == 1.0 && t.version_share(version) == 1.0,
    )
    .await
}

async fn canary_and_baseline_gone(deployments: &Api<Deployment>) {
    eventually(
        "canary and baseline gone",
        Duration::from_secs(30),
        || async {
            (get(deployments, "web-canary").await.is_none()
                && get(deployments, "web-baseline").await.is_none())
            .then_some(())
        },
    )
    .await;
}

fn promoted(s: &RolloutStatus) -> bool {
    s.phase == Phase::Healthy
        && s.handoff
            .as_ref()
            .is_some_and(|h| s.stable_template_hash.as_deref() == Some(h.template_hash.as_str()))
}

/// The per-metric result `metric` of the newest analysis.
fn metric(st: &RolloutStatus, name: &str) -> fledge::crd::MetricSummary {
    st.analyses
        .last()
        .and_then(|a| a.metrics.iter().find(|m| m.name == name))
        .cloned()
        .unwrap_or_else(|| panic!("no result for metric {name}: {st:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_change_moves_real_traffic_10_33_100() {
    let s = setup("rtgood", "rtgood").await;
    let host = format!("{}.test", s.ns);
    // A 16 s first window: several sampling rounds to watch in the status even when a busy
    // machine delays Prometheus's discovery of the new pods.
    let steps = STEPS.replacen("duration: 10s", "duration: 16s", 1);
    let remote = remote(&s.env, &s.ns, &host, &steps);
    let _agent = start_agent(
        &s.env,
        &s.agent_ns.name,
        &format!("fledge.test/agent={}", s.id),
        None,
    )
    .await;
    create_repo(&s.client, &s.repo, &s.id, &remote.url(), ".").await;
    let load = serving_v1(&s, &host).await;
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);

    let statuses = StatusLog::start(&s.client, &s.ns, "web");
    commit_v2(&remote, HEALTHY, "web v2");
    at_weight(&s, 10).await;
    let canary = get(&deployments, "web-canary").await.expect("a canary");
    let baseline = get(&deployments, "web-baseline").await.expect("a baseline");
    assert_eq!(version(&canary).as_deref(), Some("v2"));
    assert_eq!(version(&baseline).as_deref(), Some("v1"));
    let ten = measure_at(&s, &load, 10).await;
    let st = at_weight(&s, 33).await;
    // While its window ran, the first analysis showed its samples and per-metric values so far
    // in the status, before any verdict.
    let running = statuses
        .all()
        .into_iter()
        .filter_map(|st| {
            st.analysis
                .filter(|a| a.step == 1 && st.analyses.is_empty())
        })
        .find(|a| a.samples >= 2 && a.metrics.len() == 3)
        .unwrap_or_else(|| {
            let runs: Vec<_> = statuses
                .all()
                .into_iter()
                .map(|s| (s.analysis, s.analyses.len()))
                .collect();
            panic!("no running analysis with samples in {runs:#?}")
        });
    let names: Vec<_> = running.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["error-ratio", "latency-p99", "latency-p99-vs-baseline"]
    );
    assert_eq!(
        running.metrics[0].canary,
        Some(0.0),
        "no errors: {running:?}"
    );
    assert!(
        running.metrics[1]
            .canary
            .is_some_and(|p99| p99 > 0.02 && p99 < 1.0),
        "the canary's p99 so far, above its 20 ms: {running:?}"
    );
    let first = st.analyses.first().expect("the first analysis recorded");
    assert_eq!(
        (first.step, first.verdict),
        (1, VerdictOutcome::Pass),
        "{st:#?}"
    );
    let thirty_three = measure_at(&s, &load, 33).await;

    let st = rollout_where(
        &s.client,
        &s.ns,
        "web",
        "promoted and Healthy",
        120,
        promoted,
    )
    .await;
    let hundred = all_stable(&load, "v2").await;
    canary_and_baseline_gone(&deployments).await;
    let stable = get(&deployments, "web").await.unwrap();
    assert_eq!(version(&stable).as_deref(), Some("v2"), "stable runs v2");
    let verdicts: Vec<_> = st.analyses.iter().map(|a| (a.step, a.verdict)).collect();
    assert_eq!(
        verdicts,
        [(1, VerdictOutcome::Pass), (3, VerdictOutcome::Pass)],
        "{st:#?}"
    );
    eprintln!(
        "measured canary share: 10% step {:.3} (baseline {:.3}), 33% step {:.3} (baseline {:.3}), promoted v2 {:.3}",
        ten.track_share("canary"),
        ten.track_share("baseline"),
        thirty_three.track_share("canary"),
        thirty_three.track_share("baseline"),
        hundred.version_share("v2"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_errors_are_stopped_at_the_first_analysis() {
    let s = setup("rterr", "rterr").await;
    let host = format!("{}.test", s.ns);
    // A 40 s window: the breach of the critical error threshold ends it long before.
    let remote = remote(
        &s.env,
        &s.ns,
        &host,
        &STEPS.replacen("duration: 10s", "duration: 40s", 1),
    );
    let _agent = start_agent(
        &s.env,
        &s.agent_ns.name,
        &format!("fledge.test/agent={}", s.id),
        None,
    )
    .await;
    create_repo(&s.client, &s.repo, &s.id, &remote.url(), ".").await;
    let load = serving_v1(&s, &host).await;
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);
    let seen = Seen::deployments(&s.client, &s.ns);

    let bad = [
        ("LATENCY_MS", "20"),
        ("LATENCY_JITTER_MS", "0"),
        ("ERROR_RATE", "0.05"),
    ];
    commit_v2(&remote, &bad, "web v2 with 5% errors");
    at_weight(&s, 10).await;
    let window = rollout_where(
        &s.client,
        &s.ns,
        "web",
        "the first analysis window",
        60,
        |st| st.analysis.as_ref().is_some_and(|a| a.end.is_some()),
    )
    .await
    .analysis
    .unwrap();
    let end: jiff::Timestamp = window.end.as_deref().unwrap().parse().unwrap();
    let st = rollout_where(&s.client, &s.ns, "web", "RolledBack", 90, |st| {
        st.phase == Phase::RolledBack
    })
    .await;
    let now = jiff::Timestamp::now();
    assert!(
        end.duration_since(now) > jiff::SignedDuration::from_secs(15),
        "rolled back at {now}, the window ends at {end}: the breach should have decided it while sampling"
    );
    assert_eq!(
        st.teardown.as_ref().map(|t| t.cause),
        Some(TeardownCause::AnalysisFailed),
        "{st:#?}"
    );
    let [a] = st.analyses.as_slice() else {
        panic!("exactly one analysis ran: {st:#?}");
    };
    assert_eq!((a.step, a.verdict), (1, VerdictOutcome::Fail), "{st:#?}");
    // Named, with the judge that caught it: the threshold, breached in real samples.
    assert!(
        a.reason.contains("critical metric error-ratio high")
            && a.reason.contains("above max 0.01"),
        "{st:#?}"
    );
    let errors = metric(&st, "error-ratio");
    assert_eq!(errors.result, "high", "{st:#?}");
    // The median of the samples so far: it can still be 0 when the breach ends the run early
    // (the first samples' rate windows may hold no error yet); the breach is in the reason above.
    assert!(
        errors.canary.is_some_and(|r| (0.0..0.2).contains(&r)),
        "the median of the canary's error-ratio samples: {errors:?}"
    );
    assert!(
        st.teardown
            .as_ref()
            .is_some_and(|t| t.message.contains("error-ratio")),
        "{st:#?}"
    );
    let events = eventually("the rollback event", Duration::from_secs(30), || async {
        let evs = rollout_events(&s.client, &s.ns, "web").await;
        evs.iter()
            .any(|(r, n)| r == "RolloutAborted" && n.contains("error-ratio"))
            .then_some(evs)
    })
    .await;
    assert!(!events.is_empty());
    assert_eq!(
        seen.max_replicas("web-canary"),
        1,
        "the canary never went past 10%"
    );

    all_stable(&load, "v1").await;
    canary_and_baseline_gone(&deployments).await;
    assert_eq!(
        version(&get(&deployments, "web").await.unwrap()).as_deref(),
        Some("v1")
    );
    // The errors were real answers of the canary, seen at the gateway; stable served none.
    let answers = load.all();
    let errors_of = |track: &str| {
        answers
            .iter()
            .filter(|r| r.track.as_deref() == Some(track) && r.status == Some(500))
            .count()
    };
    assert!(errors_of("canary") > 0, "the canary answered 500s");
    assert_eq!(errors_of("stable"), 0);
    assert_eq!(errors_of("baseline"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_ms_slower_is_stopped_by_the_baseline_comparison_not_the_threshold() {
    let s = setup("rtslow", "rtslow").await;
    let host = format!("{}.test", s.ns);
    let remote = remote(&s.env, &s.ns, &host, STEPS);
    let _agent = start_agent(
        &s.env,
        &s.agent_ns.name,
        &format!("fledge.test/agent={}", s.id),
        None,
    )
    .await;
    create_repo(&s.client, &s.repo, &s.id, &remote.url(), ".").await;
    let load = serving_v1(&s, &host).await;
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);

    let slow = [
        ("LATENCY_MS", "220"),
        ("LATENCY_JITTER_MS", "0"),
        ("ERROR_RATE", "0"),
    ];
    commit_v2(&remote, &slow, "web v2, 200 ms slower");
    at_weight(&s, 10).await;
    let st = rollout_where(&s.client, &s.ns, "web", "RolledBack", 90, |st| {
        st.phase == Phase::RolledBack
    })
    .await;
    assert_eq!(
        st.teardown.as_ref().map(|t| t.cause),
        Some(TeardownCause::AnalysisFailed),
        "{st:#?}"
    );
    let [a] = st.analyses.as_slice() else {
        panic!("exactly one analysis ran: {st:#?}");
    };
    assert_eq!((a.step, a.verdict), (1, VerdictOutcome::Fail), "{st:#?}");
    assert!(a.reason.contains("latency-p99-vs-baseline"), "{st:#?}");
    // The same samples, two judges: the threshold-only gate (p99 ≤ 1 s) passed the slow canary,
    // the comparison with the baseline failed it.
    let threshold = metric(&st, "latency-p99");
    assert_eq!(threshold.result, "pass", "{st:#?}");
    let p99 = threshold.canary.expect("the canary's p99");
    assert!(p99 > 0.2 && p99 <= 1.0, "canary p99 {p99} s");
    let compare = metric(&st, "latency-p99-vs-baseline");
    assert_eq!(compare.result, "high", "{st:#?}");
    let (c, b) = (compare.canary.unwrap(), compare.baseline.unwrap());
    // The baseline's p99 of 20 ms requests reaches 75 ms on a loaded machine; 220 ms is well
    // above that.
    assert!(c > 0.2 && b < 0.15, "canary p99 {c} s vs baseline {b} s");
    assert_eq!(metric(&st, "error-ratio").result, "pass", "{st:#?}");

    all_stable(&load, "v1").await;
    canary_and_baseline_gone(&deployments).await;
    assert_eq!(
        version(&get(&deployments, "web").await.unwrap()).as_deref(),
        Some("v1")
    );
}

/// `fledge run` as a child process that is killed (SIGKILL) when dropped.
struct AgentProcess(std::process::Child);

impl AgentProcess {
    fn start(s: &Setup) -> AgentProcess {
        let child = agent_command(&s.env, &s.agent_ns.name, &s.id)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawning fledge run");
        AgentProcess(child)
    }

    /// `kill -9`, and reaps it.
    fn kill9(&mut self) {
        self.0.kill().expect("SIGKILL to the agent");
        let status = self.0.wait().expect("reaping the agent");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "the agent died of SIGKILL");
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_during_an_analysis_is_resumed_with_the_same_canary_and_run() {
    let s = setup("rtkill", "rtkill").await;
    let host = format!("{}.test", s.ns);
    let remote = remote(&s.env, &s.ns, &host, STEPS);
    let mut agent = AgentProcess::start(&s);
    create_repo(&s.client, &s.repo, &s.id, &remote.url(), ".").await;
    let load = serving_v1(&s, &host).await;
    let deployments = Api::<Deployment>::namespaced(s.client.clone(), &s.ns);
    let seen = Seen::deployments(&s.client, &s.ns);

    commit_v2(&remote, HEALTHY, "web v2");
    at_weight(&s, 10).await;
    // Kill it while the first analysis samples its window (started, not yet judged).
    let st = rollout_where(
        &s.client,
        &s.ns,
        "web",
        "the first analysis running",
        60,
        |st| {
            let now = jiff::Timestamp::now();
            let running =
                |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok());
            st.analysis.as_ref().is_some_and(|a| {
                a.step == 1
                    && running(&a.start).is_some_and(|t| t <= now)
                    && running(&a.end).is_some_and(|t| t > now + jiff::SignedDuration::from_secs(2))
            })
        },
    )
    .await;
    agent.kill9();
    let run = st.analysis.clone().unwrap();
    let canary_uid = get(&deployments, "web-canary")
        .await
        .and_then(|d| d.metadata.uid)
        .expect("a canary");

    let _agent = AgentProcess::start(&s);
    let st = rollout_where(
        &s.client,
        &s.ns,
        "web",
        "promoted by the new agent",
        120,
        promoted,
    )
    .await;
    all_stable(&load, "v2").await;
    canary_and_baseline_gone(&deployments).await;
    assert_eq!(
        version(&get(&deployments, "web").await.unwrap()).as_deref(),
        Some("v2")
    );
    assert_eq!(
        seen.uids("web-canary"),
        [canary_uid],
        "exactly one canary Deployment, ever"
    );
    assert_eq!(st.attempt, 1, "{st:#?}");
    // One verdict per analysis step; the one killed mid-window was judged once, for the same
    // run and window the first agent had opened.
    let runs: Vec<_> = st
        .analyses
        .iter()
        .map(|a| (a.step, a.run_id.as_str(), a.verdict))
        .collect();
    assert_eq!(
        runs,
        [
            (1, run.run_id.as_str(), VerdictOutcome::Pass),
            (3, "1-3-0", VerdictOutcome::Pass)
        ],
        "{st:#?}"
    );
}
