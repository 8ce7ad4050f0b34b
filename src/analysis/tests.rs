//! Unit and property tests of the judges and the score.

use super::verdict::*;
use crate::crd::AnalysisTemplateSpec;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn spec(yaml: &str) -> AnalysisTemplateSpec {
    serde_saphyr::from_str(yaml).unwrap()
}

fn golden() -> AnalysisTemplateSpec {
    spec(
        "prometheus: {address: 'http://127.0.0.1:9'}\nminSamples: 5\nmetrics:\n\
         - {name: errors, group: golden, critical: true, query: q, threshold: {max: 0.01}, compare: {fail: increase, tolerance: 0.1}}\n\
         - {name: latency, group: golden, query: q, compare: {fail: increase, tolerance: 0.2}}\n\
         - {name: throughput, group: load, query: q, compare: {fail: decrease, tolerance: 0.1}}\n\
         groups: [{name: golden, weight: 80}, {name: load, weight: 20}]\nscore: {pass: 95, marginal: 75}\n",
    )
}

fn obs(canary: &[f64], baseline: &[f64]) -> Observation {
    Observation {
        canary: canary.to_vec(),
        baseline: baseline.to_vec(),
        errors: vec![],
    }
}

fn around(center: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| center * (1.0 + 0.01 * ((i * 7 % 11) as f64 - 5.0)))
        .collect()
}

fn run(o: &[(&str, Observation)]) -> Verdict {
    let map: BTreeMap<String, Observation> = o
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    judge(&golden(), &map)
}

#[test]
fn healthy_canary_passes_with_full_score() {
    let v = run(&[
        ("errors", obs(&around(0.001, 20), &around(0.001, 20))),
        ("latency", obs(&around(0.2, 20), &around(0.2, 20))),
        ("throughput", obs(&around(100.0, 20), &around(100.0, 20))),
    ]);
    assert_eq!(v.outcome, Outcome::Pass, "{v:#?}");
    assert_eq!(v.score, 100.0);
}

#[test]
fn critical_failure_scores_zero() {
    let v = run(&[
        ("errors", obs(&around(0.05, 20), &around(0.001, 20))),
        ("latency", obs(&around(0.2, 20), &around(0.2, 20))),
        ("throughput", obs(&around(100.0, 20), &around(100.0, 20))),
    ]);
    assert_eq!(v.outcome, Outcome::Fail);
    assert_eq!(v.score, 0.0);
    assert_eq!(v.metrics[0].result, MetricOutcome::High);
    assert!(
        v.reason.starts_with("critical metric errors high"),
        "{}",
        v.reason
    );
}

#[test]
fn non_critical_failure_lowers_the_score_by_group_weight() {
    // latency fails: golden scores 80 * 1/2 = 40, load 20: total 60 < marginal 75 -> Fail.
    let v = run(&[
        ("errors", obs(&around(0.001, 20), &around(0.001, 20))),
        ("latency", obs(&around(0.4, 20), &around(0.2, 20))),
        ("throughput", obs(&around(100.0, 20), &around(100.0, 20))),
    ]);
    assert_eq!(v.metrics[1].result, MetricOutcome::High);
    assert_eq!(v.score, 60.0);
    assert_eq!(v.outcome, Outcome::Fail);
    // throughput down instead: golden 80 + load 0 = 80 -> Marginal.
    let v = run(&[
        ("errors", obs(&around(0.001, 20), &around(0.001, 20))),
        ("latency", obs(&around(0.2, 20), &around(0.2, 20))),
        ("throughput", obs(&around(50.0, 20), &around(100.0, 20))),
    ]);
    assert_eq!(v.metrics[2].result, MetricOutcome::Low);
    assert_eq!((v.score, v.outcome), (80.0, Outcome::Marginal));
}

#[test]
fn improvements_are_not_failures_and_small_shifts_are_tolerated() {
    let v = run(&[
        ("errors", obs(&around(0.0005, 20), &around(0.001, 20))), // fewer errors
        ("latency", obs(&around(0.22, 20), &around(0.2, 20))),    // +10%, tolerance 20%
        ("throughput", obs(&around(120.0, 20), &around(100.0, 20))),
    ]);
    assert_eq!(v.outcome, Outcome::Pass, "{v:#?}");
}

#[test]
fn errors_make_the_verdict_inconclusive_never_pass_or_fail() {
    let mut e = obs(&around(0.001, 20), &around(0.001, 20));
    e.errors = vec!["connection refused".into()];
    let v = run(&[
        ("errors", e),
        ("latency", obs(&around(0.2, 20), &around(0.2, 20))),
        ("throughput", obs(&around(100.0, 20), &around(100.0, 20))),
    ]);
    assert_eq!(v.metrics[0].result, MetricOutcome::Error);
    assert_eq!(v.outcome, Outcome::Inconclusive);
    assert!(v.reason.contains("queries failed for errors"));
}

#[test]
fn too_few_samples_is_nodata_and_half_nodata_is_inconclusive() {
    let v = run(&[
        ("errors", obs(&around(0.001, 4), &around(0.001, 20))),
        ("latency", obs(&around(0.2, 20), &[])),
        ("throughput", obs(&around(100.0, 20), &around(100.0, 20))),
    ]);
    assert_eq!(v.metrics[0].result, MetricOutcome::Nodata);
    assert_eq!(v.metrics[1].result, MetricOutcome::Nodata);
    assert_eq!(v.outcome, Outcome::Inconclusive);
    // One nodata out of three, the others passing: it does not count as passing (score 60),
    // but with data it could pass, so too little data decides nothing: Inconclusive, never Fail.
    let v = run(&[
        ("errors", obs(&around(0.001, 20), &around(0.001, 20))),
        ("latency", obs(&around(0.2, 2), &around(0.2, 20))),
        ("throughput", obs(&around(100.0, 20), &around(100.0, 20))),
    ]);
    assert_eq!((v.score, v.outcome), (60.0, Outcome::Inconclusive));
    assert!(
        v.reason.contains("too little data: latency has no data")
            && v.reason.contains("score 60 without, 100 if it passed"),
        "{}",
        v.reason
    );
}

#[test]
fn a_failure_that_more_data_cannot_change_is_a_failure_despite_nodata() {
    // latency fails and throughput has no data: golden 80 * 1/2 = 40, load 0 = 40; at best (if
    // throughput passed) 60, still under marginal 75: the failure stands.
    let v = run(&[
        ("errors", obs(&around(0.001, 20), &around(0.001, 20))),
        ("latency", obs(&around(0.4, 20), &around(0.2, 20))),
        ("throughput", obs(&around(100.0, 2), &around(100.0, 20))),
    ]);
    assert_eq!(v.metrics[2].result, MetricOutcome::Nodata);
    assert_eq!((v.score, v.outcome), (40.0, Outcome::Fail), "{}", v.reason);
    assert!(v.reason.contains("latency high"), "{}", v.reason);
    // Only throughput without data, the rest passing: 80 is Marginal, 100 would Pass: too
    // little data to tell, so no pause-for-a-human verdict either.
    let v = run(&[
        ("errors", obs(&around(0.001, 20), &around(0.001, 20))),
        ("latency", obs(&around(0.2, 20), &around(0.2, 20))),
        ("throughput", obs(&around(100.0, 2), &around(100.0, 20))),
    ]);
    assert_eq!(
        (v.score, v.outcome),
        (80.0, Outcome::Inconclusive),
        "{}",
        v.reason
    );
}

#[test]
fn threshold_failure_limit_allows_some_violations() {
    let s = spec(
        "prometheus: {address: x}\nminSamples: 3\nmetrics:\n- {name: m, query: q, threshold: {min: 1, max: 10, failureLimit: 2}}\n",
    );
    let judge1 = |c: &[f64]| judge(&s, &BTreeMap::from([("m".to_owned(), obs(c, &[]))]));
    assert_eq!(judge1(&[5.0, 11.0, 12.0, 5.0]).outcome, Outcome::Pass);
    let v = judge1(&[5.0, 11.0, 12.0, 13.0]);
    assert_eq!(
        (v.metrics[0].result, v.outcome),
        (MetricOutcome::High, Outcome::Fail)
    );
    assert_eq!(
        judge1(&[0.0, 0.5, 0.1, 5.0]).metrics[0].result,
        MetricOutcome::Low
    );
}

#[test]
fn groups_default_to_equal_weights() {
    let s = spec(
        "prometheus: {address: x}\nminSamples: 3\nmetrics:\n- {name: a, query: q, threshold: {max: 1}}\n- {name: b, group: other, query: q, threshold: {max: 1}}\nscore: {pass: 95, marginal: 40}\n",
    );
    let v = judge(
        &s,
        &BTreeMap::from([
            ("a".to_owned(), obs(&[0.0; 5], &[])),
            ("b".to_owned(), obs(&[2.0; 5], &[])),
        ]),
    );
    assert_eq!((v.score, v.outcome), (50.0, Outcome::Marginal));
}

fn arb_sample() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MAX),
        Just(-f64::MAX),
        Just(0.0),
        Just(f64::MIN_POSITIVE),
        any::<f64>(),
        -1e6..1e6f64,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn no_input_panics_or_passes_without_data(
        canary in proptest::collection::vec(arb_sample(), 0..40),
        baseline in proptest::collection::vec(arb_sample(), 0..40),
        errors in any::<bool>(),
    ) {
        let mut o = obs(&canary, &baseline);
        if errors { o.errors.push("boom".into()); }
        let map = BTreeMap::from([("errors".to_owned(), o.clone()), ("latency".to_owned(), o.clone()), ("throughput".to_owned(), o)]);
        let v = judge(&golden(), &map);
        prop_assert!(v.score.is_finite() && (0.0..=100.0).contains(&v.score));
        let finite = |s: &[f64]| s.iter().filter(|x| x.is_finite()).count();
        if errors || finite(&canary) < 5 || finite(&baseline) < 5 {
            prop_assert_ne!(v.outcome, Outcome::Pass);
        }
        for m in &v.metrics {
            if let Some(c) = m.compare {
                prop_assert!(c.p_value.is_finite() && c.estimate.is_finite() && c.ci_low.is_finite() && c.ci_high.is_finite());
            }
        }
        // An empty observation set is never a pass.
        prop_assert_ne!(judge(&golden(), &BTreeMap::new()).outcome, Outcome::Pass);
    }
}

#[test]
fn markdown_reports_fit_in_a_github_body() {
    let metrics: String = (0..3000)
        .map(|i| {
            format!("- {{name: metric-with-a-long-name-{i}, query: q, threshold: {{max: 1}}}}\n")
        })
        .collect();
    let s = spec(&format!(
        "prometheus: {{address: x}}\nminSamples: 1\nmetrics:\n{metrics}"
    ));
    let obs: BTreeMap<String, Observation> = s
        .metrics
        .iter()
        .map(|m| (m.name.clone(), obs(&[2.0, 3.0], &[])))
        .collect();
    let v = judge(&s, &obs);
    let md = super::report::markdown(&v, super::report::GITHUB_BODY_LIMIT);
    assert!(
        md.len() <= super::report::GITHUB_BODY_LIMIT,
        "{} characters",
        md.len()
    );
    assert!(md.contains("more metrics not shown"));
    assert!(md.contains("| metric-with-a-long-name-0 |"));
    // Pipes in reasons cannot break the table.
    let mut v2 = v.clone();
    v2.metrics.truncate(1);
    v2.metrics[0].reason = "a | b".into();
    assert!(super::report::markdown(&v2, 65_536).contains("a \\| b"));
}
