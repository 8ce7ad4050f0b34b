//! An analysis whose metrics start late in its window, against the real control plane and a real
//! Prometheus: a new canary's first scrapes can come seconds after it starts serving (service
//! discovery, the scrape interval, two points for a rate), so a window can end short of samples
//! through no fault of the canary. The window is then extended one interval at a time (at most
//! three) and judged on real samples, instead of standing as `Inconclusive` and sending the
//! rollout into a retry with a new canary that starts late again.
//!
//! The metric's data starts at a moment the test picks inside the window: the query answers only
//! for evaluation times after `fledge_test_data_from`, a gauge served by the test itself and
//! scraped by a test-owned Prometheus.

mod support;

use fledge::crd::{Phase, VerdictOutcome};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use support::rollout::{deployment, rollout, rollout_where, synced, version};
use support::sync::{Setup, bundle, create_repo, ns_file, setup, start_agent};
use support::{GitRemote, Prometheus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves `fledge_test_data_from <value>` on every request; returns its `host:port`.
async fn gauge_server(value: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let body = format!(
                "fledge_test_data_from {}\n",
                f64::from_bits(value.load(Ordering::SeqCst))
            );
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(body.as_bytes()).await;
            });
        }
    });
    addr
}

/// A template whose one critical metric is 0.001 (within its max of 0.01) for every track, but
/// only at evaluation times after `fledge_test_data_from`: before that it has no data. Sampled
/// every second; two samples needed.
fn late_template(prometheus: &str) -> String {
    format!(
        "apiVersion: fledge.dev/v1alpha1\nkind: AnalysisTemplate\nmetadata:\n  name: golden\nspec:\n  prometheus: {{address: \"{prometheus}\"}}\n  interval: 1s\n  minSamples: 2\n  metrics:\n  - name: error-ratio\n    critical: true\n    query: 'label_replace(vector(0.001) and (vector(time()) > max(fledge_test_data_from)), \"track\", \"{{{{track}}}}\", \"\", \"\")'\n    threshold: {{max: 0.01}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_ending_short_of_samples_is_extended_and_judged_on_real_ones() {
    let Setup {
        env,
        client,
        agent_ns,
        ns,
        repo,
        id,
        _cleanup,
    } = setup("rolate", "rolate").await;
    // No data until told otherwise (a moment far in the future).
    let data_from = Arc::new(AtomicU64::new(4.0e9_f64.to_bits()));
    let target = gauge_server(data_from.clone()).await;
    let prom = Prometheus::start(&[target], "1s").await;
    let steps = "[{setWeight: 33}, {analysis: {template: golden, duration: 8s}}]";
    let remote = GitRemote::new(&[
        (
            "fledge.yaml",
            bundle(&ns, "[ns.yaml, golden.yaml, web.yaml, web-rollout.yaml]"),
        ),
        ("ns.yaml", ns_file(&ns)),
        ("golden.yaml", late_template(&prom.url)),
        ("web.yaml", deployment("web", 3, "v1")),
        ("web-rollout.yaml", rollout("web", steps)),
    ]);
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
    // The analysis has opened its window: data starts half a second before the window's end, so
    // the window itself holds one sample (at its end) of the two needed.
    let st = rollout_where(&client, &ns, "web", "the analysis window", 90, |s| {
        s.analysis.as_ref().is_some_and(|a| a.end.is_some())
    })
    .await;
    let run = st.analysis.unwrap();
    let end: jiff::Timestamp = run.end.as_deref().unwrap().parse().unwrap();
    let from = end.as_millisecond() as f64 / 1000.0 - 0.5;
    data_from.store(from.to_bits(), Ordering::SeqCst);

    let st = rollout_where(&client, &ns, "web", "promoted", 120, |s| {
        s.phase == Phase::Healthy && !s.analyses.is_empty()
    })
    .await;
    // One analysis, passed on the extended window: never Inconclusive, never retried.
    let [a] = st.analyses.as_slice() else {
        panic!("exactly one analysis ran: {st:#?}");
    };
    assert_eq!(
        (a.verdict, a.run_id.as_str()),
        (VerdictOutcome::Pass, run.run_id.as_str()),
        "{st:#?}"
    );
    assert_eq!(
        a.metrics.first().map(|m| m.result.as_str()),
        Some("pass"),
        "{st:#?}"
    );
    assert_eq!(st.attempt, 1, "{st:#?}");
    assert_eq!(
        version(&deployments.get("web").await.unwrap()).as_deref(),
        Some("v2")
    );
}
