//! Unit and property tests of the renderer over in-memory trees.

use super::*;
use proptest::prelude::*;

fn opts() -> RenderOptions {
    RenderOptions::default()
}

fn cm(name: &str, extra: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{extra}")
}

fn deploy(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: app\n        image: example/{name}:1\n"
    )
}

fn base_and_overlay() -> MemTree {
    MemTree::default()
        .with("apps/web/deployment.yaml", deploy("web", 2))
        .with("apps/web/service.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports: [{port: 80}]\n")
        .with("apps/web/fledge.yaml", "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [deployment.yaml, service.yaml]\npatches:\n  - target: {kind: Deployment, name: web}\n    ops:\n      - {op: add, path: /metadata/labels, value: {tier: web}}\n")
        .with("clusters/prod/fledge.yaml", "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: shop\ninclude:\n  - ../../apps/web\n  - extra.yaml\npatches:\n  - target: {kind: Deployment, name: web}\n    ops:\n      - {op: replace, path: /spec/replicas, value: 6}\n")
        .with("clusters/prod/extra.yaml", "---\n# only a comment\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n---\n")
}

fn find<'d>(d: &'d Desired, kind: &str, name: &str) -> &'d RenderedObject {
    d.objects
        .iter()
        .find(|o| o.key.kind == kind && o.key.name == name)
        .unwrap_or_else(|| panic!("{kind}/{name} missing"))
}

#[test]
fn nested_bundles_apply_inner_patches_then_outer_namespace_and_patches() {
    let d = render(&base_and_overlay(), "clusters/prod", &opts()).unwrap();
    let web = find(&d, "Deployment", "web");
    assert_eq!(web.object["spec"]["replicas"], 6);
    assert_eq!(web.object["metadata"]["labels"]["tier"], "web");
    assert_eq!(web.key.namespace, "shop");
    assert_eq!(
        web.sources,
        [
            "apps/web/deployment.yaml",
            "apps/web/fledge.yaml",
            "clusters/prod/fledge.yaml"
        ],
        "provenance lists the manifest and both patching bundles"
    );
    // Namespace is cluster-scoped: no namespace added.
    let ns = find(&d, "Namespace", "shop");
    assert!(ns.object["metadata"].get("namespace").is_none());
    // Apply order: Namespace, Service, Deployment.
    let kinds: Vec<&str> = d.objects.iter().map(|o| o.key.kind.as_str()).collect();
    assert_eq!(kinds, ["Namespace", "Service", "Deployment"]);
    assert_eq!(d.files, 5);
}

#[test]
fn outer_namespace_fills_only_objects_without_one() {
    let tree = MemTree::default()
        .with("a/x.yaml", cm("x", "  namespace: own\n"))
        .with("a/y.yaml", cm("y", ""))
        .with(
            "fledge.yaml",
            "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: outer\ninclude: [a]\n",
        );
    let d = render(&tree, "", &opts()).unwrap();
    assert_eq!(find(&d, "ConfigMap", "x").key.namespace, "own");
    assert_eq!(find(&d, "ConfigMap", "y").key.namespace, "outer");
}

#[test]
fn lists_are_expanded_and_crds_teach_scope() {
    let tree = MemTree::default()
        .with("crd.yaml", "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {kind: Widget, plural: widgets}\n  versions: []\n")
        .with("list.yaml", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: example.com/v1\n  kind: Widget\n  metadata: {name: w1}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c1}\n")
        .with("fledge.yaml", "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: team\ninclude: [crd.yaml, list.yaml]\n");
    let d = render(&tree, "", &opts()).unwrap();
    assert_eq!(find(&d, "Widget", "w1").key.namespace, "team");
    assert_eq!(find(&d, "ConfigMap", "c1").key.namespace, "team");
    assert_eq!(
        d.objects[0].key.kind, "CustomResourceDefinition",
        "CRDs first"
    );
}

#[test]
fn unknown_scope_without_namespace_is_an_error_with_a_hint() {
    let tree = MemTree::default().with(
        "w.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n",
    );
    let e = render(&tree, "", &opts()).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("w.yaml:1: "), "{msg}");
    assert!(msg.contains("--discover"), "{msg}");
    // With discovery knowledge, the same render works.
    let mut o = opts();
    o.scopes.insert("example.com", "Widget", false);
    render(&tree, "", &o).unwrap();
}

#[test]
fn fledge_labels_and_annotations_are_added() {
    let mut o = opts();
    o.config_repo = Some("prod".into());
    let d = render(&base_and_overlay(), "clusters/prod", &o).unwrap();
    for obj in &d.objects {
        assert_eq!(
            obj.object["metadata"]["labels"][crate::labels::CONFIG_REPO_LABEL],
            "prod"
        );
        assert_eq!(
            obj.object["metadata"]["annotations"][crate::labels::SOURCE_PATH_ANNOTATION],
            obj.sources.join(",")
        );
        assert_eq!(obj.hash, hash(&obj.object));
    }
}

#[test]
fn patch_targets_must_match_exactly_one_object() {
    let tree = MemTree::default()
        .with("a.yaml", format!("{}---\n{}", cm("x", "  namespace: one\n"), cm("x", "  namespace: two\n")))
        .with("fledge.yaml", "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [a.yaml]\npatches:\n- target: {kind: ConfigMap, name: x}\n  ops: [{op: add, path: /data, value: {}}]\n- target: {kind: ConfigMap, name: nope}\n  ops: []\n- target: {kind: ConfigMap, name: x, namespace: two}\n  ops: [{op: add, path: /data, value: {k: v}}]\n");
    let e = render(&tree, "", &opts()).unwrap_err();
    assert_eq!(e.0.len(), 2, "{e}");
    assert!(
        e.0[0]
            .to_string()
            .starts_with("fledge.yaml:5: patch 1: target ConfigMap x matches 2 objects"),
        "{e}"
    );
    assert!(
        e.0[1]
            .to_string()
            .starts_with("fledge.yaml:7: patch 2: target ConfigMap nope matches no object"),
        "{e}"
    );
}

#[test]
fn patch_ops_apply_in_order() {
    let tree = MemTree::default().with("a.yaml", cm("x", "data: {a: '1'}\n")).with(
        "fledge.yaml",
        "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: n\ninclude: [a.yaml]\npatches:\n- target: {kind: ConfigMap, name: x}\n  ops:\n  - {op: add, path: /data/b, value: '2'}\n  - {op: copy, from: /data/b, path: /data/c}\n  - {op: remove, path: /data/a}\n  - {op: test, path: /data/c, value: '2'}\n",
    );
    let d = render(&tree, "", &opts()).unwrap();
    assert_eq!(
        d.objects[0].object["data"],
        serde_json::json!({"b": "2", "c": "2"})
    );
}

#[test]
fn validate_reports_every_error_not_just_the_first() {
    let tree = MemTree::default()
        .with("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
        .with("b.yaml", "key: [unclosed\n")
        .with("c.yaml", "- just\n- a list\n")
        .with("fledge.yaml", "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: n\ninclude: [a.yaml, b.yaml, c.yaml, missing.yaml]\n");
    let e = render(&tree, "", &opts()).unwrap_err();
    let files: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(files, ["a.yaml", "b.yaml", "c.yaml", "fledge.yaml"], "{e}");
}

#[test]
fn symlinks_inside_the_tree_are_followed_and_escapes_refused() {
    let inside = MemTree::default()
        .with("real/a.yaml", cm("a", "  namespace: n\n"))
        .with_symlink("link", "real")
        .with(
            "fledge.yaml",
            "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [link]\n",
        );
    assert_eq!(render(&inside, "", &opts()).unwrap().objects.len(), 1);
    let outside = MemTree::default().with_symlink("link", "../../etc").with(
        "fledge.yaml",
        "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [link]\n",
    );
    let e = render(&outside, "", &opts()).unwrap_err().to_string();
    assert!(
        e.starts_with("fledge.yaml:3: ") && e.contains("outside the repository"),
        "{e}"
    );
}

#[test]
fn a_bundle_including_itself_is_a_cycle() {
    let tree = MemTree::default()
        .with(
            "a/fledge.yaml",
            "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [../b]\n",
        )
        .with(
            "b/fledge.yaml",
            "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [../a]\n",
        );
    let e = render(&tree, "a", &opts()).unwrap_err().to_string();
    assert!(
        e.contains("cycle: a/fledge.yaml -> b/fledge.yaml -> a/fledge.yaml"),
        "{e}"
    );
}

#[test]
fn a_plain_directory_renders_as_an_implicit_bundle() {
    let tree = MemTree::default()
        .with("apps/x/a.yaml", cm("a", "  namespace: n\n"))
        .with("apps/x/sub/b.yml", cm("b", "  namespace: n\n"));
    let d = render(&tree, "apps/x", &opts()).unwrap();
    assert_eq!(d.objects.len(), 2);
}

// --- properties ------------------------------------------------------------------------------

/// A tree whose files are inserted in `order`, with a bundle that sets a namespace and patches.
fn shuffled_tree(order: &[usize], names: &[String]) -> MemTree {
    let mut t = MemTree::default();
    for &i in order {
        t = t.with(
            &format!("d/{}.yaml", names[i]),
            cm(&names[i], "data: {k: v}\n"),
        );
    }
    let mut bundle = String::from(
        "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: n\ninclude: [d]\npatches:\n",
    );
    for (i, name) in names.iter().enumerate().take(3) {
        bundle.push_str(&format!(
            "- target: {{kind: ConfigMap, name: {name}}}\n  ops: [{{op: add, path: /data/p, value: '{i}'}}]\n"
        ));
    }
    t.with("fledge.yaml", bundle)
}

/// Lists directory entries in a given scrambled order, as a real file system may.
struct Scrambled(MemTree, Vec<usize>);
impl FileTree for Scrambled {
    fn entry(&self, p: &str) -> Result<Entry, String> {
        self.0.entry(p)
    }
    fn read(&self, p: &str) -> Result<Vec<u8>, String> {
        self.0.read(p)
    }
    fn list(&self, p: &str) -> Result<Vec<String>, String> {
        let v = self.0.list(p)?;
        let mut keyed: Vec<(usize, String)> = v
            .into_iter()
            .enumerate()
            .map(|(i, name)| (self.1.get(i).copied().unwrap_or(i), name))
            .collect();
        keyed.sort();
        Ok(keyed.into_iter().map(|(_, n)| n).collect())
    }
}

proptest! {
    #[test]
    fn render_is_deterministic_and_independent_of_listing_order(
        (names, order, listing) in proptest::collection::btree_set("[a-z][a-z0-9]{0,5}", 1..12)
            .prop_flat_map(|names| {
                let names: Vec<String> = names.into_iter().collect();
                let n = names.len();
                let idx: Vec<usize> = (0..n).collect();
                (Just(names), Just(idx.clone()).prop_shuffle(), Just(idx).prop_shuffle())
            })
    ) {
        // Files inserted in one shuffled order and listed in another give the same render as
        // the sorted tree.
        let sorted: Vec<usize> = (0..names.len()).collect();
        let base = render(&shuffled_tree(&sorted, &names), "", &opts()).unwrap();
        let tree = shuffled_tree(&order, &names);
        let a = render(&tree, "", &opts()).unwrap();
        let b = render(&Scrambled(tree, listing), "", &opts()).unwrap();
        prop_assert_eq!(a.to_yaml(), b.to_yaml());
        prop_assert_eq!(a.to_json(), base.to_json());
        prop_assert_eq!(a.objects.len(), names.len());
    }

    #[test]
    fn hash_is_stable_under_key_order_and_whitespace(pairs in proptest::collection::btree_map("[a-z]{1,6}", "[a-z0-9]{0,6}", 0..8), indent in 2usize..6) {
        let pad = " ".repeat(indent);
        let forward: String = pairs.iter().map(|(k, v)| format!("{pad}{k}: '{v}'\n")).collect();
        let backward: String = pairs.iter().rev().map(|(k, v)| format!("  {k}:    '{v}'   \n")).collect();
        let a = MemTree::default().with("a.yaml", format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: n\ndata:\n{forward}"));
        let b = MemTree::default().with("a.yaml", format!("kind: ConfigMap\ndata:\n{backward}\n\nmetadata: {{namespace: n, name: x}}\napiVersion: v1\n"));
        let (a, b) = (render(&a, "", &opts()).unwrap(), render(&b, "", &opts()).unwrap());
        prop_assert_eq!(&a.objects[0].hash, &b.objects[0].hash);
    }

    #[test]
    fn no_input_makes_render_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), as_bundle in any::<bool>()) {
        let path = if as_bundle { "fledge.yaml" } else { "a.yaml" };
        let tree = MemTree::default().with(path, bytes);
        let _ = render(&tree, "", &opts());
    }

    #[test]
    fn no_yaml_like_input_makes_render_panic(text in "(apiVersion|kind|metadata|name|items|List|v1|---|- |: |\\{|\\}|\\[|\\]|&a|\\*a|\\n|  |'|\"|#|[a-z0-9]){0,80}") {
        let tree = MemTree::default().with("a.yaml", text.clone()).with("fledge.yaml", format!("apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [a.yaml]\n{text}"));
        let _ = render(&tree, "", &opts());
        let _ = render(&tree, "a.yaml", &opts());
    }
}

/// Defect (found with podinfo as published): objects without a namespace passed `validate` and
/// the agent then failed with "the server could not find the requested resource". A namespaced
/// object nobody gives a namespace goes to `default`, as `kubectl apply` puts it; cluster-scoped
/// objects stay without one; a bundle's namespace still wins.
#[test]
fn a_namespaced_object_without_any_namespace_goes_to_default() {
    let tree = MemTree::default()
        .with(
            "fledge.yaml",
            "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [cm.yaml, ns.yaml]\n",
        )
        .with("cm.yaml", cm("settings", ""))
        .with(
            "ns.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
        );
    let d = render(&tree, ".", &opts()).expect("renders");
    let settings = find(&d, "ConfigMap", "settings");
    assert_eq!(settings.key.namespace, "default");
    assert_eq!(settings.object["metadata"]["namespace"], "default");
    assert_eq!(find(&d, "Namespace", "shop").key.namespace, "");
    let with_bundle_ns = MemTree::default()
        .with(
            "fledge.yaml",
            "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: shop\ninclude: [cm.yaml]\n",
        )
        .with("cm.yaml", cm("settings", ""));
    let d = render(&with_bundle_ns, ".", &opts()).expect("renders");
    assert_eq!(find(&d, "ConfigMap", "settings").key.namespace, "shop");
}
