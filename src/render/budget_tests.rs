//! Every render budget of [`crate::limits::RenderLimits`] at its edge: just under is accepted,
//! just over is refused with an error naming the file.

use super::*;

const BUNDLE: &str = "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\n";

fn cm(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: n}}\n")
}

fn with(limits: RenderLimits) -> RenderOptions {
    RenderOptions {
        limits,
        ..RenderOptions::default()
    }
}

/// Renders `tree` with the budget set to `at` (accepted) and `at - 1` (refused), where `set`
/// puts a value into the limits. Returns the refusal's text.
fn edge(tree: &MemTree, path: &str, at: u64, set: impl Fn(&mut RenderLimits, u64)) -> String {
    let mut l = RenderLimits::default();
    set(&mut l, at);
    if let Err(e) = render(tree, path, &with(l.clone())) {
        panic!("just under the budget ({at}) must render: {e}");
    }
    set(&mut l, at - 1);
    match render(tree, path, &with(l)) {
        Ok(_) => panic!("just over the budget ({}) must be refused", at - 1),
        Err(e) => e.to_string(),
    }
}

#[test]
fn max_file_bytes() {
    let text = cm("a");
    let tree = MemTree::default().with("a.yaml", text.clone());
    let e = edge(&tree, "", text.len() as u64, |l, v| l.max_file_bytes = v);
    assert!(e.starts_with("a.yaml: file is"), "{e}");
}

#[test]
fn max_total_input_bytes() {
    let bundle = format!("{BUNDLE}include: [a.yaml, b.yaml]\n");
    let tree = MemTree::default()
        .with("a.yaml", cm("a"))
        .with("b.yaml", cm("b"))
        .with("fledge.yaml", bundle.clone());
    let total = (bundle.len() + 2 * cm("a").len()) as u64;
    let e = edge(&tree, "", total, |l, v| l.max_total_input_bytes = v);
    assert!(e.starts_with("b.yaml: bytes of files read"), "{e}");
}

#[test]
fn max_depth_through_yaml_and_patches() {
    // The object is 1 level (metadata), spec nests 3 more: depth 4 collections.
    let tree = MemTree::default().with(
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: n}\nspec: {a: {b: {c: 1}}}\n",
    );
    let e = edge(&tree, "", 4, |l, v| l.max_depth = v as usize);
    assert!(e.starts_with("a.yaml:4: YAML nests deeper than 3"), "{e}");
    // A copy that creates depth 8: 5 path segments + a subtree 3 deep.
    let tree = MemTree::default()
        .with("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: n}\nspec: {a: {b: {c: {d: 1}}}}\n")
        .with("fledge.yaml", format!("{BUNDLE}include: [a.yaml]\npatches:\n- target: {{kind: ConfigMap, name: a}}\n  ops: [{{op: copy, from: /spec/a, path: /spec/a/b/c/x}}]\n"));
    let e = edge(&tree, "", 8, |l, v| l.max_depth = v as usize);
    assert!(e.starts_with("fledge.yaml:5: patch 1 on ConfigMap a: operation 1 would nest the object 8 levels deep, over the limit of 7"), "{e}");
}

#[test]
fn max_nodes_counts_aliases_over_documents() {
    // Each document: root map, apiVersion, kind, metadata map + 2 pairs, spec alias target…
    let doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: N, namespace: n}\ndata: &d {a: x}\nbinaryData: *d\n";
    let text = format!("{}---\n{}", doc.replace('N', "a"), doc.replace('N', "b"));
    let tree = MemTree::default().with("a.yaml", text);
    // Count what the full file costs by finding the smallest budget that renders.
    let mut need = 1;
    while render(
        &tree,
        "",
        &with(RenderLimits {
            max_nodes: need,
            ..RenderLimits::default()
        }),
    )
    .is_err()
    {
        need += 1;
        assert!(need < 1000);
    }
    let e = edge(&tree, "", need as u64, |l, v| l.max_nodes = v as usize);
    assert!(
        e.contains("a.yaml:") && e.contains("YAML nodes in the render"),
        "{e}"
    );
}

#[test]
fn max_documents() {
    let tree = MemTree::default().with(
        "a.yaml",
        format!("{}---\n{}---\n{}", cm("a"), cm("b"), cm("c")),
    );
    let e = edge(&tree, "", 3, |l, v| l.max_documents = v as usize);
    assert!(
        e.starts_with("a.yaml:9: YAML documents in the render over the limit of 2"),
        "{e}"
    );
}

#[test]
fn max_objects() {
    let tree = MemTree::default().with("a.yaml", format!("{}---\n{}", cm("a"), cm("b")));
    let e = edge(&tree, "", 2, |l, v| l.max_objects = v as usize);
    assert!(
        e.starts_with("a.yaml:5: render produced 2 objects, over the limit of 1"),
        "{e}"
    );
}

#[test]
fn max_object_bytes_and_max_output_bytes() {
    let tree = MemTree::default()
        .with("a.yaml", format!("{}data: {{k: {}}}\n", cm("a"), "x".repeat(100)))
        .with("fledge.yaml", format!("{BUNDLE}include: [a.yaml]\npatches:\n- target: {{kind: ConfigMap, name: a}}\n  ops: [{{op: copy, from: /data, path: /copy}}]\n"));
    let mut need = 100;
    while render(
        &tree,
        "",
        &with(RenderLimits {
            max_object_bytes: need,
            ..RenderLimits::default()
        }),
    )
    .is_err()
    {
        need += 1;
        assert!(need < 2000);
    }
    let e = edge(&tree, "", need, |l, v| l.max_object_bytes = v);
    assert!(e.contains("would grow the object past the limit"), "{e}");
    let mut need = 100;
    while render(
        &tree,
        "",
        &with(RenderLimits {
            max_output_bytes: need,
            ..RenderLimits::default()
        }),
    )
    .is_err()
    {
        need += 1;
        assert!(need < 4000);
    }
    let e = edge(&tree, "", need, |l, v| l.max_output_bytes = v);
    assert!(e.contains("over the limit"), "{e}");
}

#[test]
fn max_bundles_and_max_bundle_depth() {
    let mut tree = MemTree::default();
    for i in 0..4 {
        tree = tree.with(
            &format!("b{i}/fledge.yaml"),
            format!("{BUNDLE}include: [../b{}]\n", i + 1),
        );
    }
    let tree = tree
        .with("b4/fledge.yaml", format!("{BUNDLE}include: [a.yaml]\n"))
        .with("b4/a.yaml", cm("a"));
    let e = edge(&tree, "b0", 5, |l, v| l.max_bundles = v as usize);
    assert!(
        e.starts_with("b3/fledge.yaml:3: bundles loaded in the render over the limit of 4"),
        "{e}"
    );
    let e = edge(&tree, "b0", 5, |l, v| l.max_bundle_depth = v as usize);
    assert!(e.contains("bundles nest deeper than 4"), "{e}");
}

#[test]
fn max_patch_ops() {
    let tree = MemTree::default()
        .with("a.yaml", cm("a"))
        .with("fledge.yaml", format!("{BUNDLE}include: [a.yaml]\npatches:\n- target: {{kind: ConfigMap, name: a}}\n  ops: [{{op: add, path: /data, value: {{}}}}, {{op: add, path: /data/k, value: v}}]\n"));
    let e = edge(&tree, "", 2, |l, v| l.max_patch_ops = v as usize);
    assert!(
        e.starts_with("fledge.yaml:5: patch operations in the render over the limit of 1"),
        "{e}"
    );
}

#[test]
fn max_dir_entries_and_max_symlink_hops() {
    let tree = MemTree::default()
        .with("d/a.yaml", cm("a"))
        .with("d/b.yaml", cm("b"))
        .with("fledge.yaml", format!("{BUNDLE}include: [d]\n"));
    let e = edge(&tree, "", 2, |l, v| l.max_dir_entries = v as usize);
    assert!(e.starts_with("d: directory entries walked"), "{e}");
    let tree = MemTree::default()
        .with("real/a.yaml", cm("a"))
        .with_symlink("l1", "real")
        .with_symlink("l2", "l1")
        .with("fledge.yaml", format!("{BUNDLE}include: [l2]\n"));
    let e = edge(&tree, "", 2, |l, v| l.max_symlink_hops = v as usize);
    assert!(e.contains("symlink chain is too long or loops"), "{e}");
}

#[test]
fn a_directory_symlink_to_an_ancestor_is_an_error_naming_it() {
    let tree = MemTree::default()
        .with("apps/sub/a.yaml", cm("a"))
        .with_symlink("apps/sub/up", "..")
        .with("fledge.yaml", format!("{BUNDLE}include: [apps]\n"));
    let e = render(&tree, "", &RenderOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("apps/sub/up: symlink leads back to \"apps\""),
        "{e}"
    );
}
