//! Traffic arithmetic: pod counts for the `replicas` router, and weights for the mesh routers.
//!
//! # The `replicas` router
//!
//! One Service selects the pods of all three tracks, so each ready pod gets an equal share of the
//! requests and **the achieved weight is the pod ratio**. Choices:
//!
//! * **Stable is never scaled by a rollout.** It keeps the replicas git asks for (`r`): sync
//!   owns that field, capacity never drops, and putting traffic back on stable only needs the
//!   canary and baseline pods to go. Canary and baseline run *beside* it.
//! * **The baseline is as large as the canary** (same age, warm-up and traffic share), so it
//!   gets the same weight as the canary.
//! * The canary count `c` for an asked weight `w` makes `c / (r + c + b)` (with `b = c` when a
//!   baseline runs, else 0) closest to `w / 100`: the exact solution is
//!   `c* = w·r / (100 − m·w)` with `m` = 2 with a baseline, 1 without; we take `floor(c*)` or
//!   `ceil(c*)`, whichever lands closer, ties to the larger canary (Argo Rollouts' rule, applied
//!   to the pod ratio). `c` is at least 1 for any `w ≥ 1`, and at most `r` (the canary never
//!   outgrows stable), so **for 1–99 % neither side is ever 0** and the highest reachable canary
//!   weight is 33 % with a baseline (50 % without). Higher weights are reported as achieved;
//!   full traffic comes with promotion. `r = 0` gives no pods (nothing to split).
//!
//! # Mesh routers (`istio`, `gatewayAPI`)
//!
//! The weights are set directly: canary `w`, baseline `min(w, 100 − w)` (as much as the canary
//! while it fits), stable the rest. Pods: `ceil(r·w/100)` canary pods, at least 1 and at most
//! `r`, unless a `setCanaryScale` step says otherwise; the baseline gets as many.

/// Canary pods for weight `w` (0–100) beside `r` stable pods with the `replicas` router. The
/// baseline, if any, gets as many.
pub fn canary_pods(r: i32, w: i32, baseline: bool) -> i32 {
    if r <= 0 || w <= 0 {
        return 0;
    }
    let (r64, w64) = (i64::from(r), i64::from(w.min(100)));
    let m = if baseline { 2 } else { 1 };
    let denom = 100 - m * w64;
    if denom <= 0 {
        return r;
    }
    let floor = (w64 * r64 / denom).clamp(1, r64);
    let ceil = ((w64 * r64 + denom - 1) / denom).clamp(1, r64);
    // |c/(r+mc) − w/100| compared without division: |100c − w(r+mc)| / (r+mc).
    let err = |c: i64| ((100 * c - w64 * (r64 + m * c)).abs(), r64 + m * c);
    let (ef, df) = err(floor);
    let (ec, dc) = err(ceil);
    // ceil wins ties (the larger canary).
    let best = if ec * df <= ef * dc { ceil } else { floor };
    i32::try_from(best).unwrap_or(r)
}

/// Percentages of requests per track when every ready pod gets an equal share, rounded to the
/// nearest percent: what the `replicas` router reports as achieved.
pub fn achieved(stable_ready: i32, canary_ready: i32, baseline_ready: i32) -> super::RouterObs {
    let (s, c, b) = (
        i64::from(stable_ready.max(0)),
        i64::from(canary_ready.max(0)),
        i64::from(baseline_ready.max(0)),
    );
    let total = s + c + b;
    if total == 0 {
        return super::RouterObs::default();
    }
    let pct = |n: i64| i32::try_from((200 * n + total) / (2 * total)).unwrap_or(100);
    super::RouterObs {
        canary: pct(c),
        baseline: pct(b),
    }
}

/// Weights for the mesh routers: `(canary, baseline)`; stable gets the rest.
pub fn mesh_weights(w: i32, baseline: bool) -> (i32, i32) {
    let w = w.clamp(0, 100);
    (w, if baseline { w.min(100 - w) } else { 0 })
}

/// Canary pods for weight `w` with a mesh router: `ceil(r·w/100)`, at least 1, at most `r`.
pub fn mesh_pods(r: i32, w: i32) -> i32 {
    if r <= 0 {
        return 0;
    }
    let (r64, w64) = (i64::from(r), i64::from(w.clamp(0, 100)));
    i32::try_from(((r64 * w64 + 99) / 100).clamp(1, r64)).unwrap_or(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn share(r: i32, c: i32, baseline: bool) -> f64 {
        let b = if baseline { c } else { 0 };
        f64::from(c) / f64::from(r + c + b)
    }

    /// The closest by brute force over every count 1..=r, ties to the larger.
    fn brute(r: i32, w: i32, baseline: bool) -> i32 {
        let target = f64::from(w) / 100.0;
        let mut best = 1;
        for c in 1..=r {
            let (e, eb) = (
                (share(r, c, baseline) - target).abs(),
                (share(r, best, baseline) - target).abs(),
            );
            if e <= eb + 1e-12 {
                best = c;
            }
        }
        best
    }

    #[test]
    fn exhaustive_small_deployments_pick_the_closest_count() {
        for r in 1..=60 {
            for w in 1..=100 {
                for baseline in [false, true] {
                    let c = canary_pods(r, w, baseline);
                    assert_eq!(c, brute(r, w, baseline), "r={r} w={w} baseline={baseline}");
                    assert!((1..=r).contains(&c), "neither side is 0: r={r} w={w}");
                }
            }
        }
    }

    #[test]
    fn zero_weight_and_zero_replicas_mean_no_canary() {
        assert_eq!(canary_pods(10, 0, true), 0);
        assert_eq!(canary_pods(0, 50, true), 0);
        assert_eq!(canary_pods(-3, 50, false), 0);
    }

    #[test]
    fn documented_examples() {
        // 10 stable pods with a baseline: 10 % → 1 canary + 1 baseline (1/12 ≈ 8 %).
        assert_eq!(canary_pods(10, 10, true), 1);
        assert_eq!(achieved(10, 1, 1).canary, 8);
        // 33 % → as many canary and baseline pods as stable.
        assert_eq!(canary_pods(10, 33, true), 10);
        assert_eq!(
            achieved(10, 10, 10),
            RouterObs {
                canary: 33,
                baseline: 33
            }
        );
        // Without a baseline, 50 % is one canary pod per stable pod.
        assert_eq!(canary_pods(4, 50, false), 4);
        assert_eq!(mesh_weights(10, true), (10, 10));
        assert_eq!(mesh_weights(70, true), (70, 30));
        assert_eq!(mesh_weights(70, false), (70, 0));
        assert_eq!(mesh_pods(10, 1), 1);
        assert_eq!(mesh_pods(10, 25), 3);
        assert_eq!(mesh_pods(10, 100), 10);
    }

    use super::super::RouterObs;

    proptest! {
        #[test]
        fn large_deployments_match_brute_force(r in 1i32..400, w in 0i32..=100, baseline: bool) {
            let c = canary_pods(r, w, baseline);
            if w == 0 {
                prop_assert_eq!(c, 0);
            } else {
                prop_assert_eq!(c, brute(r, w, baseline));
            }
        }

        #[test]
        fn achieved_weights_are_percentages_that_fit(s in 0i32..1000, c in 0i32..1000, b in 0i32..1000) {
            let a = achieved(s, c, b);
            prop_assert!(a.canary >= 0 && a.baseline >= 0 && a.canary + a.baseline <= 101);
            if s > 0 && c > 0 && s + c + b > 0 {
                // Neither side rounds away completely unless it is under half a percent.
                prop_assert!(a.canary > 0 || 200 * c < s + c + b);
            }
        }

        #[test]
        fn more_weight_never_means_fewer_canary_pods(r in 1i32..500, w in 0i32..100, baseline: bool) {
            prop_assert!(canary_pods(r, w, baseline) <= canary_pods(r, w + 1, baseline));
            prop_assert!(mesh_pods(r, w) <= mesh_pods(r, w + 1));
        }

        #[test]
        fn mesh_weights_never_exceed_100(w in -10i32..110, baseline: bool) {
            let (c, b) = mesh_weights(w, baseline);
            prop_assert!(c >= 0 && b >= 0 && c + b <= 100);
        }
    }
}
