//! Pure rendering of what fledge writes on a forge: commit status descriptions
//! (`canary 33% · analysis 98/100`, `promoted`, `rolled back: <reason>`), the plan comment of a
//! pull request (a hidden marker first, cut at a line boundary under the body limit with open
//! code fences closed), and the body of the revert pull request (the verdict table). Inputs are
//! plain structs so the planner and the rollout engine can feed them; nothing here does I/O.

use std::fmt::Write as _;

/// GitHub's limit on an issue or pull-request body and on a comment (characters).
pub const MAX_BODY_CHARS: usize = 65_536;
/// What fledge allows itself: the limit with a margin (bytes, so multi-byte text is safe too).
pub const BODY_BUDGET: usize = 60_000;

/// A status description: control characters and line breaks become spaces, runs of spaces
/// collapse, and text longer than [`super::MAX_STATUS_DESCRIPTION`] characters is cut at a word
/// boundary (or a character boundary) with `…`.
pub fn cut_description(text: &str) -> String {
    let max = super::MAX_STATUS_DESCRIPTION;
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if clean.chars().count() <= max {
        return clean;
    }
    let head: String = clean.chars().take(max - 1).collect();
    let cut = match head.rfind(' ') {
        Some(i) if head[..i].chars().count() >= max * 2 / 3 => &head[..i],
        _ => head.as_str(),
    };
    format!("{}…", cut.trim_end_matches([' ', ',', ';', ':', '·']))
}

/// What a commit status says about a rollout or a plan.
#[derive(Clone, Debug, PartialEq)]
pub enum StatusText {
    /// A canary step: traffic weight (percent) and the last analysis score (0–100), if any.
    Canary {
        weight: u32,
        score: Option<u32>,
    },
    /// Waiting at a manual gate (`fledge promote`).
    Paused {
        weight: u32,
    },
    Promoted,
    RolledBack {
        reason: String,
    },
    /// Infrastructure trouble (metrics or API unreachable): no verdict.
    Error {
        reason: String,
    },
    /// The plan of a pull request: objects changing, and how many go out as a canary.
    Plan {
        changes: usize,
        canaries: usize,
    },
    /// The pull request's head does not render.
    PlanFailed {
        reason: String,
    },
}

/// The description for a status, at most 140 characters.
pub fn status_description(text: &StatusText) -> String {
    let s = match text {
        StatusText::Canary { weight, score } => match score {
            Some(s) => format!("canary {weight}% · analysis {s}/100"),
            None => format!("canary {weight}%"),
        },
        StatusText::Paused { weight } => format!("canary {weight}% · paused until promoted"),
        StatusText::Promoted => "promoted".into(),
        StatusText::RolledBack { reason } => format!("rolled back: {reason}"),
        StatusText::Error { reason } => format!("error: {reason}"),
        StatusText::Plan { changes: 0, .. } => "no changes".into(),
        StatusText::Plan { changes, canaries } => {
            let objects = if *changes == 1 { "object" } else { "objects" };
            match canaries {
                0 => format!("{changes} {objects} change"),
                n => format!("{changes} {objects} change · {n} as canary"),
            }
        }
        StatusText::PlanFailed { reason } => format!("render failed: {reason}"),
    };
    cut_description(&s)
}

/// The hidden marker that starts the plan comment of `cluster` (one comment per cluster).
pub fn plan_marker(cluster: &str) -> String {
    let safe: String = cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("<!-- fledge-plan:{safe} -->")
}

/// Input of the plan comment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlanComment {
    pub cluster: String,
    /// The pull request's head commit the plan is for.
    pub head_sha: String,
    /// Objects to create, update, delete; unchanged ones.
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
    /// Rollouts whose change will go out as a canary (`namespace/name`).
    pub canaries: Vec<String>,
    /// The plan as text (a diff); Secret values must already be reduced to key names.
    pub plan: String,
    /// A render error (with `file:line`), when the head does not render.
    pub render_error: Option<String>,
    /// Objects the API server would refuse (a dry run); the plan text says which and why.
    pub refused: usize,
    /// The freeze in effect on the ConfigRepo (who, why, since, what a merge does meanwhile).
    pub frozen: Option<String>,
}

/// The plan comment body: the marker on the first line, a summary, then the plan in a code
/// block, cut to fit [`BODY_BUDGET`].
pub fn render_plan_comment(p: &PlanComment) -> String {
    let mut out = plan_marker(&p.cluster);
    let short = short_sha(&p.head_sha);
    let _ = write!(
        out,
        "\n### fledge plan for `{}` at `{short}`\n\n",
        inline(&p.cluster)
    );
    if let Some(f) = &p.frozen {
        let _ = writeln!(out, "**Frozen:** `{}`\n", inline(f));
    }
    if let Some(err) = &p.render_error {
        out.push_str("**The bundle does not render**; nothing would be applied:\n\n");
        // Many broken files make a long list: cut like a long plan.
        return fit(out, &fenced("text", &escape_controls(err)));
    }
    let changes = p.create + p.update + p.delete;
    if changes == 0 && p.refused == 0 {
        out.push_str("No changes: the cluster already matches this commit.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "**{} to create, {} to update, {} to delete** ({} unchanged)\n",
        p.create, p.update, p.delete, p.unchanged
    );
    if p.refused > 0 {
        let _ = writeln!(
            out,
            "**{} object(s) would be refused by the API server** (dry run): see `!` below.\n",
            p.refused
        );
    }
    if !p.canaries.is_empty() {
        out.push_str("Goes out progressively (canary beside a baseline, gated by analysis):\n");
        for c in &p.canaries {
            let _ = writeln!(out, "- `{}`", inline(c));
        }
        out.push('\n');
    }
    fit(out, &fenced("diff", &escape_controls(&p.plan)))
}

/// `head` followed by as much of `block` as fits the budget, cut at a line boundary with the
/// open fence closed and a note of what was left out.
fn fit(head: String, block: &str) -> String {
    let mut out = head;
    if out.len() + block.len() <= BODY_BUDGET {
        out.push_str(block);
        return out;
    }
    let room = BODY_BUDGET.saturating_sub(out.len() + 300);
    out.push_str(&truncate_markdown(block, room));
    out
}

/// The longest prefix of whole lines of `text` within `budget` bytes; when lines were dropped,
/// an open code fence is closed and a line says how many lines were left out.
pub fn truncate_markdown(text: &str, budget: usize) -> String {
    let total = text.lines().count();
    let mut out = String::new();
    let mut open_fence: Option<String> = None;
    let mut kept = 0;
    for line in text.lines() {
        // Reserve room for closing a fence and for the note.
        if out.len() + line.len() + 1 > budget.saturating_sub(200) {
            break;
        }
        out.push_str(line);
        out.push('\n');
        kept += 1;
        let t = line.trim_start();
        let ticks = t.chars().take_while(|&c| c == '`').count();
        let tildes = t.chars().take_while(|&c| c == '~').count();
        let fence_len = ticks.max(tildes);
        if fence_len >= 3 {
            let fence: String = t.chars().take(fence_len).collect();
            match &open_fence {
                None => open_fence = Some(fence),
                Some(open) if fence.starts_with(open.as_str()) && t.trim() == fence => {
                    open_fence = None
                }
                Some(_) => {}
            }
        }
    }
    if kept == total {
        return out;
    }
    if let Some(f) = open_fence {
        out.push_str(&f);
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\n*… {} more lines not shown (the comment would pass the forge's size limit); run `fledge plan` for the whole plan.*",
        total - kept
    );
    out
}

/// One metric of the verdict table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerdictRow {
    pub metric: String,
    pub canary: Option<f64>,
    pub baseline: Option<f64>,
    /// `pass`, `fail`, `nodata`, … as the analysis names it.
    pub result: String,
    /// 0–100.
    pub score: Option<f64>,
}

/// Input of the revert pull request body.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevertReport {
    pub cluster: String,
    pub namespace: String,
    pub rollout: String,
    /// The revision that failed, and the stable one traffic went back to.
    pub failed_revision: String,
    pub stable_revision: String,
    pub reason: String,
    /// Overall analysis score (0–100) and its verdict (`fail`, …), if an analysis ran.
    pub score: Option<f64>,
    pub verdict: Option<String>,
    pub rows: Vec<VerdictRow>,
    /// Reverted commits: `(sha, subject)`, newest first.
    pub reverted: Vec<(String, String)>,
    pub compare_url: Option<String>,
}

/// The revert pull request body: what failed and why, the verdict table, the reverted commits,
/// the compare link and how to move on. Fits [`BODY_BUDGET`].
pub fn render_revert_body(r: &RevertReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fledge rolled back **`{}/{}`** on cluster **`{}`**: the canary of `{}` failed and traffic is back on the stable revision `{}`. This pull request makes git agree.\n",
        inline(&r.namespace),
        inline(&r.rollout),
        inline(&r.cluster),
        short_sha(&r.failed_revision),
        short_sha(&r.stable_revision)
    );
    let _ = writeln!(out, "**Reason:** {}\n", cell(&r.reason));
    if let Some(v) = &r.verdict {
        let score = r
            .score
            .map_or(String::new(), |s| format!(", score {}/100", num(s)));
        let _ = writeln!(out, "**Verdict:** {}{score}\n", cell(v));
    }
    let mut table = String::new();
    if !r.rows.is_empty() {
        table.push_str(
            "| Metric | Canary | Baseline | Result | Score |\n|---|---:|---:|---|---:|\n",
        );
        for row in &r.rows {
            let opt = |v: Option<f64>| v.map_or("–".to_owned(), num);
            let _ = writeln!(
                table,
                "| {} | {} | {} | {} | {} |",
                cell(&row.metric),
                opt(row.canary),
                opt(row.baseline),
                cell(&row.result),
                opt(row.score)
            );
        }
        table.push('\n');
    }
    let mut tail = String::new();
    if !r.reverted.is_empty() {
        tail.push_str("**Reverted commits** (newest first):\n");
        for (sha, subject) in &r.reverted {
            let _ = writeln!(tail, "- `{}` {}", short_sha(sha), cell(subject));
        }
        tail.push('\n');
    }
    if let Some(url) = &r.compare_url {
        let _ = writeln!(tail, "**Compare:** {}\n", cell(url));
    }
    let _ = writeln!(
        tail,
        "**What next:** merge this pull request to keep the stable version, or close it and push a fix: the failed template is not applied again until git changes it. To try the same revision again after fixing its cause elsewhere, run `fledge retry {}/{}`.",
        inline(&r.namespace),
        inline(&r.rollout)
    );
    if out.len() + table.len() + tail.len() > BODY_BUDGET {
        let room = BODY_BUDGET.saturating_sub(out.len() + tail.len());
        table = truncate_markdown(&table, room);
    }
    out + &table + &tail
}

fn short_sha(sha: &str) -> String {
    inline(&sha.chars().take(12).collect::<String>())
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_owned() }
}

/// Control characters escaped (`\u{1b}`), except line breaks and tabs.
fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Text for inside a single backtick span: no backticks, no control characters.
fn inline(text: &str) -> String {
    text.chars()
        .map(|c| if c == '`' || c.is_control() { '\'' } else { c })
        .collect()
}

/// Text for a table cell or a line: pipes escaped, one line, control characters escaped.
fn cell(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    escape_controls(&one_line).replace('|', "\\|")
}

/// `body` in a fenced code block whose fence is longer than any backtick run inside.
fn fenced(info: &str, body: &str) -> String {
    let longest = body
        .lines()
        .map(|l| l.trim_start().chars().take_while(|&c| c == '`').count())
        .max()
        .unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let mut out = format!("{fence}{info}\n{body}");
    if !body.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}
