//! A [`Verdict`] as a terminal table or a Markdown table (for PR bodies and commit statuses,
//! kept under GitHub's 65,536-character limit). JSON is the verdict serialised with serde.

use super::verdict::{MetricResult, Verdict};
use std::fmt::Write;

/// GitHub's limit for an issue or pull request body.
pub const GITHUB_BODY_LIMIT: usize = 65_536;

fn num(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 10_000.0 || v.abs() < 0.001 {
        format!("{v:.3e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn summary(s: Option<super::verdict::Summary>) -> String {
    s.map_or("-".into(), |s| {
        format!("{} / {} / {}", s.n, num(s.median), num(s.p95))
    })
}

fn shift(m: &MetricResult) -> String {
    m.compare.map_or("-".into(), |c| {
        format!(
            "{} [{}, {}]",
            num(c.estimate),
            num(c.ci_low),
            num(c.ci_high)
        )
    })
}

fn p(m: &MetricResult) -> String {
    m.compare.map_or("-".into(), |c| num(c.p_value))
}

fn header(v: &Verdict) -> String {
    let mut reason = v.reason.clone();
    if reason.chars().count() > 500 {
        reason = reason.chars().take(497).collect::<String>() + "...";
    }
    format!("{} (score {}/100): {}", v.outcome, num(v.score), reason)
}

/// A plain-text table for terminals.
pub fn text(v: &Verdict) -> String {
    let mut rows = vec![
        [
            "METRIC",
            "GROUP",
            "RESULT",
            "CANARY n/median/p95",
            "BASELINE n/median/p95",
            "SHIFT [98% CI]",
            "P",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for m in &v.metrics {
        let name = if m.critical {
            format!("{} (critical)", m.name)
        } else {
            m.name.clone()
        };
        rows.push(vec![
            name,
            m.group.clone(),
            m.result.as_str().to_owned(),
            summary(m.canary),
            summary(m.baseline),
            shift(m),
            p(m),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "{}", header(v));
    for (key, value) in &v.context {
        let _ = writeln!(out, "  {key}: {value}");
    }
    out.push('\n');
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let notes: Vec<&MetricResult> = v.metrics.iter().filter(|m| !m.reason.is_empty()).collect();
    if !notes.is_empty() {
        out.push('\n');
        for m in notes {
            let _ = writeln!(out, "  {}: {}", m.name, m.reason);
        }
    }
    out
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A Markdown report, at most `limit` characters (rows are dropped, with a note, to fit).
pub fn markdown(v: &Verdict, limit: usize) -> String {
    let icon = match v.outcome {
        super::Outcome::Pass => "✅",
        super::Outcome::Marginal => "⚠️",
        super::Outcome::Fail => "❌",
        super::Outcome::Inconclusive => "❔",
    };
    let mut head = format!("### {icon} Analysis: {}\n\n", md_cell(&header(v)));
    for (key, value) in &v.context {
        let _ = writeln!(
            head,
            "- **{}**: `{}`",
            md_cell(key),
            md_cell(value).replace('`', "'")
        );
    }
    head.push_str("\n| metric | group | result | canary n / median / p95 | baseline n / median / p95 | shift [98% CI] | p | why |\n|---|---|---|---|---|---|---|---|\n");
    let mut out = head;
    let mut dropped = 0;
    for (i, m) in v.metrics.iter().enumerate() {
        let name = if m.critical {
            format!("**{}** (critical)", md_cell(&m.name))
        } else {
            md_cell(&m.name)
        };
        let mut reason = md_cell(&m.reason);
        if reason.chars().count() > 300 {
            reason = reason.chars().take(297).collect::<String>() + "...";
        }
        let row = format!(
            "| {name} | {} | `{}` | {} | {} | {} | {} | {reason} |\n",
            md_cell(&m.group),
            m.result.as_str(),
            summary(m.canary),
            summary(m.baseline),
            shift(m),
            p(m)
        );
        if out.len() + row.len() + 200 > limit {
            dropped = v.metrics.len() - i;
            break;
        }
        out.push_str(&row);
    }
    if dropped > 0 {
        let _ = writeln!(
            out,
            "\n_{dropped} more metrics not shown (report size limit); see the JSON report._"
        );
    }
    out
}

/// The verdict as pretty JSON.
pub fn json(v: &Verdict) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
