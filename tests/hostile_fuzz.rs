//! Structured fuzzing of the renderer: proptest strategies build whole repositories (bundles
//! that include each other, with cycles and diamonds; manifests; patch lists of every RFC 6902
//! operation over paths that nest, copy the root and rename objects) and random YAML, and every
//! render runs on a thread with a small fixed stack, with tight budgets, and must end with an
//! answer (never a panic or stack overflow) whose objects respect the depth and size budgets.
//!
//! Runs in every `cargo test` for a bounded number of cases (`FLEDGE_FUZZ_CASES`, default 64,
//! about a few seconds); CI can raise it.

use fledge::limits::RenderLimits;
use fledge::render::{self, Desired, MemTree, RenderErrors, RenderOptions};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Stack of the render thread: far below the 8 MiB of a main thread, so unbounded recursion
/// anywhere shows up as a crash here first.
const STACK: usize = 1 << 20;

fn limits() -> RenderLimits {
    RenderLimits {
        max_depth: 24,
        max_object_bytes: 64 << 10,
        max_output_bytes: 1 << 20,
        max_nodes: 50_000,
        max_patch_ops: 500,
        max_bundles: 20,
        ..RenderLimits::default()
    }
}

fn cases() -> u32 {
    std::env::var("FLEDGE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}

/// Renders on a small-stack thread; the test fails if the thread dies.
fn render_small_stack(tree: MemTree, path: &str) -> Result<Desired, RenderErrors> {
    let path = path.to_owned();
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let opts = RenderOptions {
                limits: limits(),
                ..RenderOptions::default()
            };
            render::render(&tree, &path, &opts)
        })
        .expect("thread starts")
        .join()
        .expect("render neither panicked nor overflowed its stack")
}

fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut todo = vec![(v, 0usize)];
    while let Some((v, d)) = todo.pop() {
        max = max.max(d);
        match v {
            Value::Array(a) => todo.extend(a.iter().map(|c| (c, d + 1))),
            Value::Object(m) => todo.extend(m.values().map(|c| (c, d + 1))),
            _ => {}
        }
    }
    max
}

fn check_budgets(result: &Result<Desired, RenderErrors>) -> Result<(), TestCaseError> {
    let l = limits();
    if let Ok(d) = result {
        let mut total = 0usize;
        for o in &d.objects {
            prop_assert!(
                depth(&o.object) <= l.max_depth + 1,
                "object deeper than the budget"
            );
            let size = serde_json::to_vec(&o.object).map(|v| v.len()).unwrap_or(0);
            prop_assert!(
                size as u64 <= l.max_object_bytes + 4096,
                "object of {size} bytes"
            );
            total += size;
        }
        prop_assert!(total as u64 <= l.max_output_bytes + 4096 * d.objects.len() as u64);
    }
    if let Err(e) = result {
        for err in &e.0 {
            let text = err.to_string();
            prop_assert!(!text.contains('\n'), "an error spans lines: {text:?}");
        }
    }
    Ok(())
}

/// JSON values up to a few levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..5).prop_map(|n| json!(n)),
        "[a-z]{0,8}".prop_map(Value::String),
        Just(json!("x".repeat(2000))),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-c]", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON pointers over a small vocabulary, so operations hit each other's paths.
fn pointer() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        1 => Just("/metadata/name".to_owned()),
        1 => Just("/kind".to_owned()),
        6 => proptest::collection::vec(prop_oneof![Just("spec"), Just("a"), Just("b"), Just("0"), Just("-")], 1..6)
            .prop_map(|parts| format!("/{}", parts.join("/"))),
    ]
}

fn op() -> impl Strategy<Value = Value> {
    prop_oneof![
        (pointer(), value()).prop_map(|(p, v)| json!({"op": "add", "path": p, "value": v})),
        pointer().prop_map(|p| json!({"op": "remove", "path": p})),
        (pointer(), value()).prop_map(|(p, v)| json!({"op": "replace", "path": p, "value": v})),
        (pointer(), pointer()).prop_map(|(f, p)| json!({"op": "copy", "from": f, "path": p})),
        (pointer(), pointer()).prop_map(|(f, p)| json!({"op": "move", "from": f, "path": p})),
        (pointer(), value()).prop_map(|(p, v)| json!({"op": "test", "path": p, "value": v})),
        Just(json!({"op": "copy", "from": "/spec", "path": "/spec/a"})),
        Just(json!({"op": "copy", "from": "", "path": "/spec/b"})),
    ]
}

const NAMES: [&str; 3] = ["x", "y", "z"];

/// One manifest object of a few kinds, names and namespaces.
fn object() -> impl Strategy<Value = Value> {
    (0usize..3, 0usize..3, any::<bool>(), value()).prop_map(|(k, n, ns, spec)| {
        let (av, kind) = [
            ("v1", "ConfigMap"),
            ("apps/v1", "Deployment"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ][k];
        let mut meta = json!({"name": NAMES[n]});
        if ns && kind != "ClusterRole" {
            meta["namespace"] = json!("ns");
        }
        json!({"apiVersion": av, "kind": kind, "metadata": meta, "spec": spec})
    })
}

fn patch() -> impl Strategy<Value = Value> {
    (0usize..3, 0usize..3, proptest::collection::vec(op(), 0..8)).prop_map(|(k, n, ops)| {
        let kind = ["ConfigMap", "Deployment", "ClusterRole"][k];
        json!({"target": {"kind": kind, "name": NAMES[n]}, "ops": ops})
    })
}

/// A repository of up to five bundles `b0..b4` (b0 the root) that include each other and
/// their own manifests, each bundle with its patches and maybe a default namespace.
fn repository() -> impl Strategy<Value = MemTree> {
    let bundle = (
        proptest::collection::vec(0usize..5, 0..4),
        proptest::collection::vec(object(), 0..3),
        proptest::collection::vec(patch(), 0..4),
        any::<bool>(),
    );
    proptest::collection::vec(bundle, 1..5).prop_map(|bundles| {
        let mut tree = MemTree::default();
        for (i, (includes, objects, patches, ns)) in bundles.iter().enumerate() {
            let mut include: Vec<String> = includes.iter().map(|j| format!("../b{j}")).collect();
            let docs: Vec<String> = objects
                .iter()
                .map(|o| serde_json::to_string(o).unwrap_or_default())
                .collect();
            if !docs.is_empty() {
                include.push("objects.yaml".into());
                tree = tree.with(&format!("b{i}/objects.yaml"), docs.join("\n---\n"));
            }
            let mut b = json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "Bundle", "include": include, "patches": patches});
            if *ns {
                b["namespace"] = json!("team");
            }
            tree = tree.with(&format!("b{i}/fledge.yaml"), serde_json::to_string(&b).unwrap_or_default());
        }
        tree
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn structured_repositories_render_within_budgets(tree in repository()) {
        let result = render_small_stack(tree, "b0");
        check_budgets(&result)?;
    }

    #[test]
    fn patch_lists_on_one_object_stay_within_budgets(obj in object(), ops in proptest::collection::vec(op(), 0..40), doubling in 0usize..30) {
        let mut ops = ops;
        // Add runs of self-copies, the cheapest way to double an object.
        for i in 0..doubling {
            ops.push(json!({"op": "copy", "from": "/spec", "path": format!("/spec/c{i}")}));
        }
        let target = json!({"kind": obj["kind"], "name": obj["metadata"]["name"]});
        let bundle = json!({"apiVersion": "fledge.dev/v1alpha1", "kind": "Bundle", "include": ["o.yaml"], "patches": [{"target": target, "ops": ops}]});
        let tree = MemTree::default()
            .with("o.yaml", serde_json::to_string(&obj).unwrap_or_default())
            .with("fledge.yaml", serde_json::to_string(&bundle).unwrap_or_default());
        let result = render_small_stack(tree, "");
        check_budgets(&result)?;
    }

    #[test]
    fn yaml_with_anchors_and_nesting_stays_within_budgets(text in "(a: |- |\\[|\\]|\\{|\\}|, |&x |\\*x|&y |\\*y|<<: |0644|0x1F|1e400|\"1\"|1|~|\\n|  |---\\n|!!str |!t ){0,200}") {
        let tree = MemTree::default()
            .with("a.yaml", text.clone())
            .with("fledge.yaml", "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [a.yaml]\n");
        let result = render_small_stack(tree, "");
        check_budgets(&result)?;
    }
}

#[test]
fn deep_yaml_and_patch_nesting_are_refused_on_a_small_stack() {
    // Just under and just over the depth budget, through YAML and through patches.
    let l = limits();
    let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    for (extra, ok) in [(l.max_depth - 1, true), (l.max_depth, false)] {
        let tree = MemTree::default().with(
            "a.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: a, namespace: n}}\nspec: {}\n",
                nest(extra)
            ),
        );
        let r = render_small_stack(tree, "");
        assert_eq!(
            r.is_ok(),
            ok,
            "YAML depth {} (+1 for the object): {r:?}",
            extra
        );
    }
}
