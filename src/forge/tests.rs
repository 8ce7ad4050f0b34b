//! Unit tests of the forge module's pure parts: URL inference, text cleaning and rendering.

use super::report::*;
use super::*;
use crate::crd::{ConfigRepoSpec, ForgeSpec, GiteaForge};

fn spec(url: &str) -> ConfigRepoSpec {
    serde_json::from_value(serde_json::json!({"url": url, "path": "clusters/prod"})).unwrap()
}

#[test]
fn github_is_inferred_from_github_urls_only() {
    for url in [
        "https://github.com/acme/config.git",
        "https://github.com/acme/config",
        "https://x-access-token@github.com/acme/config/",
        "ssh://git@github.com/acme/config.git",
        "git@github.com:acme/config.git",
    ] {
        assert_eq!(
            infer_github(url),
            Some(("acme".into(), "config".into())),
            "{url}"
        );
    }
    for url in [
        "https://gitea.example.com/acme/config.git",
        "https://github.com.evil.example/acme/config",
        "https://github.com/acme",
        "https://github.com/acme/config/tree/main",
        "/srv/git/config",
    ] {
        assert_eq!(infer_github(url), None, "{url}");
    }
    let t = ForgeTarget::from_spec(&spec("https://github.com/acme/config"))
        .unwrap()
        .unwrap();
    assert_eq!(t.kind, ForgeKind::GitHub);
    assert_eq!(t.api_url, "https://api.github.com");
    assert_eq!(
        ForgeTarget::from_spec(&spec("https://git.example/acme/config")).unwrap(),
        None
    );
}

#[test]
fn explicit_forges_win_and_two_are_refused() {
    let gitea = GiteaForge {
        url: "https://git.example".into(),
        owner: "acme".into(),
        repo: "config".into(),
        token_secret_ref: crate::crd::SecretRef {
            name: "forge".into(),
            namespace: None,
            key: None,
        },
    };
    let mut s = spec("https://github.com/acme/config");
    s.forge = Some(ForgeSpec {
        github: None,
        gitea: Some(gitea.clone()),
    });
    let t = ForgeTarget::from_spec(&s).unwrap().unwrap();
    assert_eq!(
        (t.kind, t.api_url.as_str()),
        (ForgeKind::Gitea, "https://git.example")
    );
    s.forge = Some(ForgeSpec {
        github: Some(crate::crd::GitHubForge {
            owner: "a".into(),
            repo: "b".into(),
            token_secret_ref: gitea.token_secret_ref.clone(),
            api_url: Some("https://ghe.example/api/v3".into()),
        }),
        gitea: Some(gitea),
    });
    assert!(matches!(ForgeTarget::from_spec(&s), Err(Error::Config(_))));
}

#[test]
fn tokens_never_print() {
    let t = Token::new("ghp_supersecret\n");
    assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    assert_eq!(t.expose(), "ghp_supersecret");
    let cleaned = clean_remote_text(
        "bad credentials ghp_supersecret\x1b[31m\nnext",
        200,
        Some("ghp_supersecret"),
    );
    assert_eq!(cleaned, "bad credentials <redacted>\\u{1b}[31m\\nnext");
    assert_eq!(clean_remote_text("abcdef", 3, None), "abc…");
}

#[test]
fn status_descriptions() {
    let d = |t| status_description(&t);
    assert_eq!(
        d(StatusText::Canary {
            weight: 33,
            score: Some(98)
        }),
        "canary 33% · analysis 98/100"
    );
    assert_eq!(
        d(StatusText::Canary {
            weight: 10,
            score: None
        }),
        "canary 10%"
    );
    assert_eq!(d(StatusText::Promoted), "promoted");
    assert_eq!(
        d(StatusText::RolledBack {
            reason: "error rate 4.1% > 1%".into()
        }),
        "rolled back: error rate 4.1% > 1%"
    );
    assert_eq!(
        d(StatusText::Plan {
            changes: 3,
            canaries: 1
        }),
        "3 objects change · 1 as canary"
    );
    assert_eq!(
        d(StatusText::Plan {
            changes: 0,
            canaries: 0
        }),
        "no changes"
    );
    let long = d(StatusText::RolledBack {
        reason: "latency p99 ".repeat(30),
    });
    assert!(long.chars().count() <= 140, "{long}");
    assert!(long.ends_with('…') && long.starts_with("rolled back: latency p99 latency"));
    // Multi-byte text is cut on a character boundary, lines are joined.
    let s = cut_description(&"é".repeat(200));
    assert_eq!(s.chars().count(), 140);
    assert_eq!(cut_description("a\nb\r\n\tc"), "a b c");
}

#[test]
fn plan_comment_starts_with_its_marker_and_fits() {
    let marker = plan_marker("prod-eu <x>");
    assert_eq!(marker, "<!-- fledge-plan:prod-eu__x_ -->");
    let mut p = PlanComment {
        cluster: "prod-eu <x>".into(),
        head_sha: "0123456789abcdef0123".into(),
        create: 1,
        update: 2,
        delete: 0,
        unchanged: 7,
        canaries: vec!["shop/web".into()],
        plan: "~ Deployment shop/web\n-  image: web:1\n+  image: web:2\n".into(),
        render_error: None,
        refused: 0,
        frozen: None,
    };
    let body = render_plan_comment(&p);
    assert!(body.starts_with(&marker), "{body}");
    assert!(!body.contains("Frozen"), "{body}");
    // A freeze in effect is said above the plan, on one line, its backticks defused.
    p.frozen = Some("by alice (cli): incident `4711`\n**bold**".into());
    let body = render_plan_comment(&p);
    let line = body
        .lines()
        .find(|l| l.starts_with("**Frozen:**"))
        .expect("the freeze line");
    assert_eq!(
        line,
        "**Frozen:** `by alice (cli): incident '4711''**bold**`"
    );
    assert!(body.find("**Frozen:**") < body.find("to create"), "{body}");
    p.frozen = None;
    assert!(body.contains("`0123456789ab`"));
    assert!(body.contains("**1 to create, 2 to update, 0 to delete** (7 unchanged)"));
    assert!(body.contains("- `shop/web`"));
    assert!(body.contains("```diff\n~ Deployment shop/web\n"));
    assert!(body.trim_end().ends_with("```"));

    // A huge plan is cut at a line boundary, the fence is closed, and the rest is counted.
    p.plan = (0..20_000)
        .map(|i| format!("+ line {i} with some text"))
        .collect::<Vec<_>>()
        .join("\n");
    let body = render_plan_comment(&p);
    assert!(
        body.len() <= BODY_BUDGET && body.len() > BODY_BUDGET - 2_000,
        "{}",
        body.len()
    );
    assert!(body.starts_with(&marker));
    let fences = body.lines().filter(|l| l.starts_with("```")).count();
    assert_eq!(fences, 2, "the open fence is closed");
    assert!(body.contains("more lines not shown"));
    let last_plan_line = body.lines().rfind(|l| l.starts_with("+ line")).unwrap();
    assert!(
        last_plan_line.ends_with("with some text"),
        "cut at a line boundary"
    );

    // Backticks in the plan cannot close the fence early.
    p.plan = "```\nnot the end\n".into();
    let body = render_plan_comment(&p);
    assert!(body.contains("````diff\n```\nnot the end\n````"), "{body}");

    p.render_error = Some("apps/web.yaml:3: bad indentation\x1b[0m".into());
    let body = render_plan_comment(&p);
    assert!(body.contains("does not render") && body.contains("apps/web.yaml:3"));
    assert!(body.contains("\\u{1b}[0m"));

    // Thousands of broken files: the error list is cut under the budget like a plan.
    p.render_error = Some(
        (0..20_000)
            .map(|i| format!("apps/f{i}.yaml:1: invalid YAML"))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let body = render_plan_comment(&p);
    assert!(body.len() <= BODY_BUDGET, "{}", body.len());
    assert!(body.contains("apps/f0.yaml:1") && body.contains("more lines not shown"));
    assert_eq!(body.lines().filter(|l| l.starts_with("```")).count(), 2);

    // Objects the API server would refuse are a change to look at, never "no changes".
    p.render_error = None;
    (p.create, p.update, p.delete, p.refused) = (0, 0, 0, 1);
    p.plan = "! update ConfigMap shop/x: the API server refuses it: invalid\n".into();
    let body = render_plan_comment(&p);
    assert!(
        !body.contains("No changes") && body.contains("1 object(s) would be refused"),
        "{body}"
    );
    assert!(body.contains("the API server refuses it"), "{body}");
}

#[test]
fn truncation_closes_open_fences_only() {
    let text = "intro\n```yaml\na: 1\nb: 2\nc: 3\n```\nafter\n";
    assert_eq!(truncate_markdown(text, 10_000), text);
    let cut = truncate_markdown(text, 215);
    assert!(cut.starts_with("intro\n```yaml\n"), "{cut}");
    assert_eq!(cut.matches("```").count() % 2, 0, "{cut}");
}

#[test]
fn revert_body_has_the_verdict_table() {
    let r = RevertReport {
        cluster: "prod".into(),
        namespace: "shop".into(),
        rollout: "web".into(),
        failed_revision: "aaaaaaaaaaaaaaaaaaaa".into(),
        stable_revision: "bbbbbbbbbbbbbbbbbbbb".into(),
        reason: "error-ratio 0.041 > 0.01".into(),
        score: Some(40.0),
        verdict: Some("fail".into()),
        rows: vec![
            VerdictRow {
                metric: "error-ratio".into(),
                canary: Some(0.041),
                baseline: Some(0.002),
                result: "fail".into(),
                score: Some(0.0),
            },
            VerdictRow {
                metric: "latency|p99".into(),
                canary: Some(0.12),
                baseline: None,
                result: "pass".into(),
                score: Some(100.0),
            },
        ],
        reverted: vec![("cccccccccccccccc".into(), "web: v2".into())],
        compare_url: Some("https://git.example/acme/config/compare/bbbb...aaaa".into()),
    };
    let body = render_revert_body(&r);
    assert!(
        body.contains("**`shop/web`** on cluster **`prod`**"),
        "{body}"
    );
    assert!(body.contains("| Metric | Canary | Baseline | Result | Score |"));
    assert!(
        body.contains("| error-ratio | 0.041 | 0.002 | fail | 0 |"),
        "{body}"
    );
    assert!(
        body.contains("| latency\\|p99 | 0.12 | – | pass | 100 |"),
        "{body}"
    );
    assert!(body.contains("**Verdict:** fail, score 40/100"));
    assert!(body.contains("- `cccccccccccc` web: v2"));
    assert!(body.contains("compare/bbbb...aaaa"));
    assert!(body.contains("fledge retry shop/web"));
    let many = RevertReport {
        rows: vec![r.rows[0].clone(); 5_000],
        ..r
    };
    let body = render_revert_body(&many);
    assert!(body.len() <= BODY_BUDGET, "{}", body.len());
    assert!(body.contains("more lines not shown") && body.contains("fledge retry"));
}
