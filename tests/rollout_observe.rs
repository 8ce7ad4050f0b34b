//! Observability of a rollout against the real control plane and the env's real Prometheus:
//! `kubectl get fro` (the real kubectl of the env) shows phase, step k/n, set/actual weight and
//! the last score from the status; the Rollout carries conditions (`Progressing`, `Healthy`,
//! `Paused`, `Aborted`); the agent's metrics count the step durations, the verdict and the phase.

mod support;

use fledge::crd::{Condition, ConditionStatus, Phase, RolloutStatus};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use std::time::Duration;
use support::eventually;
use support::rollout::{constant_template, deployment, fledge, rollout, rollout_where};
use support::sync::{Setup, bundle, create_repo, is, ns_file, setup, start_agent, status_where};
use support::{Env, GitRemote};

/// `kubectl get fro -n ns` as `column → value` for the row of `name`.
fn kubectl_get_fro(env: &Env, ns: &str, name: &str) -> Vec<(String, String)> {
    let out = env
        .kubectl()
        .args(["get", "fro", "-n", ns])
        .output()
        .expect("running kubectl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl get fro: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    // kubectl left-aligns each cell under its header word; an empty cell is blank.
    let starts: Vec<(usize, &str)> = header
        .split_whitespace()
        .scan(0, |from, word| {
            let at = *from + header[*from..].find(word)?;
            *from = at + word.len();
            Some((at, word))
        })
        .collect();
    let row = lines
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{text}"));
    starts
        .iter()
        .enumerate()
        .map(|(i, (at, word))| {
            let end = starts.get(i + 1).map_or(row.len(), |(next, _)| *next);
            let value = row.get(*at..end.min(row.len())).unwrap_or("").trim();
            ((*word).to_owned(), value.to_owned())
        })
        .collect()
}

fn cell<'a>(row: &'a [(String, String)], col: &str) -> &'a str {
    row.iter()
        .find(|(c, _)| c == col)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no column {col} in {row:?}"))
}

fn condition<'a>(st: &'a RolloutStatus, t: &str) -> &'a Condition {
    st.conditions
        .iter()
        .find(|c| c.type_ == t)
        .unwrap_or_else(|| panic!("no condition {t}: {:#?}", st.conditions))
}

/// The value of one sample line of the agent's metrics (`None` when absent).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_fro_conditions_and_metrics_follow_a_rollout() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("roobs", "roobs").await;
    let steps = "[{setWeight: 33}, {analysis: {template: golden, duration: 3s}}, {pause: {}}]";
    let remote = GitRemote::new(&[
        (
            "fledge.yaml",
            bundle(&ns, "[ns.yaml, golden.yaml, web.yaml, web-rollout.yaml]"),
        ),
        ("ns.yaml", ns_file(&ns)),
        (
            "golden.yaml",
            constant_template("golden", env.prometheus_url(), 0.001, 0.01),
        ),
        ("web.yaml", deployment("web", 3, "v1")),
        ("web-rollout.yaml", rollout("web", steps)),
    ]);
    let agent = start_agent(
        &env,
        &agent_ns.name,
        &format!("fledge.test/agent={id}"),
        None,
    )
    .await;
    create_repo(&client, &repo, &id, &remote.url(), ".").await;
    status_where(&client, &repo, "initial sync", 90, |s| {
        is(s, "Ready", ConditionStatus::True)
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    eventually("stable available", Duration::from_secs(60), || async {
        let d = deployments.get("web").await.ok()?;
        (d.status?.available_replicas == Some(3)).then_some(())
    })
    .await;
    let st = rollout_where(&client, &ns, "web", "Healthy at first", 30, |s| {
        s.phase == Phase::Healthy && !s.conditions.is_empty()
    })
    .await;
    assert_eq!(condition(&st, "Healthy").status, ConditionStatus::True);
    assert_eq!(condition(&st, "Progressing").status, ConditionStatus::False);
    // The phase gauge is set on every pass, also for a Rollout that never changed phase.
    let metrics = agent.agent.metrics.encode();
    let healthy =
        format!("fledge_rollout_phase{{namespace=\"{ns}\",rollout=\"web\",phase=\"Healthy\"}}");
    assert_eq!(sample(&metrics, &healthy), Some(1.0), "{metrics}");

    // A template change runs setWeight, a passing analysis, then waits at the pause step.
    remote.commit(&[("web.yaml", deployment("web", 3, "v2"))], &[], "web v2");
    let st = rollout_where(&client, &ns, "web", "paused at the last step", 120, |s| {
        s.phase == Phase::Paused && s.current_step == Some(2) && s.last_score.is_some()
    })
    .await;
    let paused = condition(&st, "Paused");
    assert_eq!(
        (paused.status, paused.reason.as_str()),
        (ConditionStatus::True, "PauseStep")
    );
    assert_eq!(condition(&st, "Progressing").status, ConditionStatus::True);
    assert_eq!(condition(&st, "Healthy").status, ConditionStatus::False);
    assert_eq!(condition(&st, "Aborted").status, ConditionStatus::False);

    // `kubectl get fro` shows what the status says, in the default columns.
    let row = kubectl_get_fro(&env, &ns, "web");
    let now = support::rollout::rollout_where(&client, &ns, "web", "read back", 5, |_| true).await;
    assert_eq!(now.phase, Phase::Paused, "still paused: {now:#?}");
    assert_eq!(cell(&row, "PHASE"), "Paused", "{row:?}");
    assert_eq!(cell(&row, "STEP"), "3/3", "{row:?}");
    assert_eq!(Some(cell(&row, "WEIGHT")), st.weight.as_deref(), "{row:?}");
    assert!(
        cell(&row, "WEIGHT").starts_with("33/"),
        "set weight 33: {row:?}"
    );
    assert_eq!(
        cell(&row, "SCORE").parse::<f64>().ok(),
        st.last_score,
        "{row:?}"
    );
    assert!(!cell(&row, "AGE").is_empty());

    let metrics = agent.agent.metrics.encode();
    let paused_series =
        format!("fledge_rollout_phase{{namespace=\"{ns}\",rollout=\"web\",phase=\"Paused\"}}");
    assert_eq!(sample(&metrics, &paused_series), Some(1.0), "{metrics}");
    assert_eq!(sample(&metrics, &healthy), Some(0.0), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "fledge_rollout_analysis_verdicts_total{result=\"Pass\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
    for kind in ["setWeight", "analysis"] {
        let count = format!("fledge_rollout_step_duration_seconds_count{{step_kind=\"{kind}\"}}");
        assert_eq!(sample(&metrics, &count), Some(1.0), "{kind}: {metrics}");
    }
    // The analysis step ran at least its 3 s window.
    let analysis_sum = sample(
        &metrics,
        "fledge_rollout_step_duration_seconds_sum{step_kind=\"analysis\"}",
    )
    .unwrap_or_default();
    assert!(analysis_sum >= 3.0, "{metrics}");
    assert!(
        sample(&metrics, "fledge_rollout_reaction_seconds_count").unwrap_or_default() >= 1.0,
        "{metrics}"
    );

    // Promoted by hand: Healthy again, the pause step's duration counted.
    let (ok, out, err) = fledge(&env, &["promote", &format!("{ns}/web")]);
    assert!(ok, "{out}{err}");
    let st = rollout_where(&client, &ns, "web", "promoted", 120, |s| {
        s.phase == Phase::Healthy && s.canary_template_hash.is_none()
    })
    .await;
    assert_eq!(condition(&st, "Healthy").status, ConditionStatus::True);
    assert_eq!(condition(&st, "Paused").status, ConditionStatus::False);
    let row = kubectl_get_fro(&env, &ns, "web");
    assert_eq!(cell(&row, "PHASE"), "Healthy", "{row:?}");
    let metrics = agent.agent.metrics.encode();
    assert_eq!(sample(&metrics, &healthy), Some(1.0), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "fledge_rollout_step_duration_seconds_count{step_kind=\"pause\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}
