//! fledge's Mann–Whitney U / Hodges–Lehmann against R's
//! `wilcox.test(x, y, conf.int = TRUE, conf.level = 0.98, exact = FALSE, correct = TRUE)` on the
//! sample pairs in `tests/fixtures/wilcox/reference.txt` (made by `generate.R` beside it).

use fledge::analysis::stats::mann_whitney;

fn close(ours: f64, r: f64) -> bool {
    if ours == r {
        return true;
    }
    let scale = r.abs().max(1e-300);
    (ours - r).abs() / scale <= 1e-6 || (ours - r).abs() <= 1e-12
}

fn nums(s: &str) -> Vec<f64> {
    s.split(',')
        .map(|v| v.parse().unwrap_or_else(|_| panic!("bad number {v:?}")))
        .collect()
}

fn opt(s: &str) -> Option<f64> {
    match s {
        "NA" => None,
        v => Some(v.parse().unwrap()),
    }
}

#[test]
fn agrees_with_r_to_1e_minus_6() {
    let text = include_str!("fixtures/wilcox/reference.txt");
    let mut checked = 0;
    let mut with_interval = 0;
    let mut problems = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split(';').collect();
        assert_eq!(f.len(), 8, "{line}");
        let (id, x, y) = (f[0], nums(f[1]), nums(f[2]));
        let ours = mann_whitney(&x, &y, 0.98).expect("finite, non-empty samples");
        let (w, p, lo, hi, est) = (
            opt(f[3]).unwrap(),
            opt(f[4]).unwrap(),
            opt(f[5]),
            opt(f[6]),
            opt(f[7]),
        );
        if !close(ours.u, w) {
            problems.push(format!("{id}: U {} vs R {w}", ours.u));
        }
        if p.is_nan() {
            // R gives NaN when every observation ties; fledge says "no evidence of a difference".
            if ours.p_value != 1.0 {
                problems.push(format!("{id}: all tied, p {} (expected 1)", ours.p_value));
            }
        } else if !close(ours.p_value, p) {
            problems.push(format!("{id}: p {} vs R {p}", ours.p_value));
        }
        match (lo, hi, est) {
            (Some(lo), Some(hi), Some(est)) => {
                with_interval += 1;
                for (what, a, b) in [
                    ("ci_low", ours.ci_low, lo),
                    ("ci_high", ours.ci_high, hi),
                    ("estimate", ours.estimate, est),
                ] {
                    if !close(a, b) {
                        problems.push(format!("{id}: {what} {a} vs R {b}"));
                    }
                }
            }
            _ => {
                // R cannot give an interval here (ties everywhere); fledge gives the plain
                // Hodges-Lehmann median of pairwise differences as a zero-width interval.
                for v in [ours.ci_low, ours.ci_high, ours.estimate] {
                    assert!(v.is_finite(), "{id}: non-finite fallback");
                }
                assert_eq!(ours.ci_low, ours.ci_high, "{id}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 200, "only {checked} reference pairs");
    assert!(
        with_interval >= 200,
        "only {with_interval} pairs with an R interval"
    );
    assert!(
        problems.is_empty(),
        "{} disagreements with R:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
