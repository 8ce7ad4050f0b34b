//! The Gitea forge against the real Gitea of `tests/env/up`: a repository created through the
//! API, commits pushed with git over token-authenticated HTTP, commit statuses posted and read
//! back (de-duplication proven by counting them in Gitea), a pull request opened from a branch,
//! found by branch, opened again without a duplicate, the plan comment upserted twice into
//! exactly one edited comment, and the pull request merged once Gitea calls it mergeable.

mod support;

use fledge::forge::report::{PlanComment, plan_marker, render_plan_comment};
use fledge::forge::{
    CommitStatus, Forge, NewPullRequest, StatusOutcome, StatusState, Upserted, upsert_comment,
};
use serde_json::json;
use support::gitea::Gitea;

#[tokio::test]
async fn statuses_are_posted_once_per_change_and_read_back() {
    let gitea = Gitea::get();
    let repo = gitea.create_repo("status").await;
    let sha = repo.commit(&[("clusters/prod/fledge.yaml", "resources: []\n")], "init");
    repo.push("main");
    gitea.wait_not_empty(&repo).await;
    let forge = gitea.forge(&repo);

    let context = "fledge/prod/shop/web";
    let pending = CommitStatus::new(
        context,
        StatusState::Pending,
        "canary 33% · analysis 98/100",
    )
    .with_target_url(Some("http://127.0.0.1/rollouts/shop/web".into()));
    assert_eq!(
        forge.set_status(&sha, &pending).await.unwrap(),
        StatusOutcome::Posted
    );
    assert_eq!(
        forge.set_status(&sha, &pending).await.unwrap(),
        StatusOutcome::Unchanged
    );
    // Another context does not hide this one's latest status.
    let plan = CommitStatus::new("fledge/plan/prod", StatusState::Success, "no changes");
    assert_eq!(
        forge.set_status(&sha, &plan).await.unwrap(),
        StatusOutcome::Posted
    );
    assert_eq!(
        forge.set_status(&sha, &pending).await.unwrap(),
        StatusOutcome::Unchanged
    );

    let latest = forge.latest_status(&sha, context).await.unwrap();
    assert_eq!(latest.as_ref(), Some(&pending));

    let failed = CommitStatus::new(
        context,
        StatusState::Failure,
        &format!("rolled back: {}", "error-ratio 0.041 > 0.01 ".repeat(10)),
    );
    assert!(failed.description.chars().count() <= 140);
    assert_eq!(
        forge.set_status(&sha, &failed).await.unwrap(),
        StatusOutcome::Posted
    );
    assert_eq!(
        forge.set_status(&sha, &failed).await.unwrap(),
        StatusOutcome::Unchanged
    );
    assert_eq!(
        forge.latest_status(&sha, context).await.unwrap(),
        Some(failed)
    );

    // Gitea holds exactly the posts that changed something: 2 for the rollout context.
    let all = gitea
        .api_ok(
            "GET",
            &format!(
                "/repos/{}/{}/commits/{sha}/statuses?limit=50",
                repo.owner, repo.name
            ),
            None,
        )
        .await;
    let ours: Vec<_> = all
        .as_array()
        .expect("a list of statuses")
        .iter()
        .filter(|s| s["context"] == json!(context))
        .collect();
    assert_eq!(ours.len(), 2, "{all}");
    assert_eq!(
        forge.latest_status(&sha, "fledge/none").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn pull_request_flow_with_one_plan_comment() {
    let gitea = Gitea::get();
    let repo = gitea.create_repo("pulls").await;
    let base = repo.commit(&[("clusters/prod/fledge.yaml", "resources: []\n")], "init");
    repo.push("main");
    gitea.wait_not_empty(&repo).await;
    let forge = gitea.forge(&repo);

    let branch = "fledge/rollback/shop-web-abc1234";
    repo.git(&["checkout", "-q", "-b", "revert"]);
    let head = repo.commit(
        &[("clusters/prod/web.yaml", "kind: ConfigMap\n")],
        "Revert \"web: v2\"",
    );
    repo.push(branch);

    assert_eq!(forge.find_open_pull_request(branch).await.unwrap(), None);
    let new = NewPullRequest {
        title: "Revert \"web: v2\"".into(),
        head: branch.into(),
        base: "main".into(),
        body: "report".into(),
    };
    let pr = forge.create_pull_request(&new).await.unwrap();
    assert_eq!(
        (pr.head_ref.as_str(), pr.base_ref.as_str()),
        (branch, "main")
    );
    assert_eq!(pr.head_sha, head);
    assert!(
        pr.html_url.ends_with(&format!("/pulls/{}", pr.number)),
        "{}",
        pr.html_url
    );
    // Opening it again (an agent restarted between push and PR) gives the same pull request.
    let again = forge.create_pull_request(&new).await.unwrap();
    assert_eq!(again.number, pr.number);
    assert_eq!(
        forge
            .find_open_pull_request(branch)
            .await
            .unwrap()
            .map(|p| p.number),
        Some(pr.number)
    );

    // Some discussion first, then the plan comment twice: one comment, edited.
    for i in 0..3 {
        forge
            .create_comment(pr.number, &format!("comment {i}"))
            .await
            .unwrap();
    }
    let marker = plan_marker("prod");
    let mut plan = PlanComment {
        cluster: "prod".into(),
        head_sha: head.clone(),
        update: 1,
        plan: "~ ConfigMap shop/web\n+  data.a: 1\n".into(),
        ..Default::default()
    };
    let first = render_plan_comment(&plan);
    let created = match upsert_comment(&forge, pr.number, &marker, &first)
        .await
        .unwrap()
    {
        Upserted::Created(c) => c,
        other => panic!("expected a new comment, got {other:?}"),
    };
    plan.plan = "~ ConfigMap shop/web\n+  data.a: 2\n".into();
    let second = render_plan_comment(&plan);
    match upsert_comment(&forge, pr.number, &marker, &second)
        .await
        .unwrap()
    {
        Upserted::Edited(c) => assert_eq!(c.id, created.id),
        other => panic!("expected an edit, got {other:?}"),
    }
    assert!(matches!(
        upsert_comment(&forge, pr.number, &marker, &second)
            .await
            .unwrap(),
        Upserted::Unchanged(_)
    ));
    let comments = forge.list_comments(pr.number).await.unwrap();
    assert_eq!(comments.len(), 4);
    let plans: Vec<_> = comments
        .iter()
        .filter(|c| c.body.starts_with(&marker))
        .collect();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].body, second);
    assert_ne!(plans[0].body, first);

    // The compare link opens in Gitea.
    let compare = forge.compare_url(&base, &head);
    assert_eq!(
        compare,
        format!(
            "{}/{}/{}/compare/{base}...{head}",
            gitea.url, repo.owner, repo.name
        )
    );
    let (status, _) = support::http_get(&compare).await.expect("GET compare page");
    assert_eq!(status, 200, "{compare}");

    // Merge once Gitea has checked it; then no open pull request is left for the branch.
    gitea.wait_mergeable(&repo, pr.number).await;
    gitea
        .api_ok(
            "POST",
            &format!(
                "/repos/{}/{}/pulls/{}/merge",
                repo.owner, repo.name, pr.number
            ),
            Some(json!({"Do": "merge"})),
        )
        .await;
    assert_eq!(forge.find_open_pull_request(branch).await.unwrap(), None);
}

/// From a ConfigRepo spec to a status in Gitea: `spec.forge.gitea` resolves, the token is read
/// from a Secret in the control plane, and the client posts with it. A missing key is an error
/// naming the Secret and the key, never the token.
#[tokio::test]
async fn config_repo_forge_spec_and_token_secret_reach_gitea() {
    use fledge::forge::{Error, ForgeKind, ForgeTarget};
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, PostParams};

    let env = support::Env::get();
    let client = env.client().await;
    let ns = support::TestNamespace::new(&client, &env, "forge-token").await;
    let gitea = Gitea::get();
    let repo = gitea.create_repo("spec").await;
    let sha = repo.commit(&[("clusters/prod/fledge.yaml", "resources: []\n")], "init");
    repo.push("main");
    gitea.wait_not_empty(&repo).await;

    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "gitea-token"},
        "stringData": {"token": gitea.token}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let spec: fledge::crd::ConfigRepoSpec = serde_json::from_value(json!({
        "url": repo.clone_url, "path": "clusters/prod",
        "forge": {"gitea": {"url": gitea.url, "owner": repo.owner, "repo": repo.name,
                            "tokenSecretRef": {"name": "gitea-token"}}}
    }))
    .unwrap();
    let target = ForgeTarget::from_spec(&spec).unwrap().expect("a forge");
    assert_eq!(target.kind, ForgeKind::Gitea);
    let token = target.read_token(&client, &ns.name).await.unwrap();
    let forge = target.connect(token).unwrap();
    let status = CommitStatus::new("fledge/prod/shop/web", StatusState::Success, "promoted");
    assert_eq!(
        forge.set_status(&sha, &status).await.unwrap(),
        StatusOutcome::Posted
    );
    assert_eq!(
        forge
            .latest_status(&sha, "fledge/prod/shop/web")
            .await
            .unwrap(),
        Some(status)
    );

    let mut other = target.clone();
    other.token_secret_ref = Some(fledge::crd::SecretRef {
        name: "gitea-token".into(),
        namespace: Some(ns.name.clone()),
        key: Some("api-token".into()),
    });
    let err = other.read_token(&client, "elsewhere").await.unwrap_err();
    assert!(matches!(err, Error::Token(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "Secret {}/gitea-token has no key api-token",
            ns.name
        )),
        "{text}"
    );
    assert!(!text.contains(&gitea.token));
}
