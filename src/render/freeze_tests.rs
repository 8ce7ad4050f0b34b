//! The bundle's `freeze` field (the andon cord from git): read from the root bundle only,
//! validated with errors that name the file and line.

use super::*;

fn tree(bundle_extra: &str) -> MemTree {
    MemTree::default()
        .with(
            "apps/web/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n",
        )
        .with(
            "clusters/prod/fledge.yaml",
            format!(
                "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\nnamespace: shop\ninclude: [../../apps/web]\n{bundle_extra}"
            ),
        )
}

fn errors(t: &MemTree) -> Vec<String> {
    render(t, "clusters/prod", &RenderOptions::default())
        .expect_err("must not render")
        .0
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_bundle_without_freeze_is_not_frozen() {
    let d = render(&tree(""), "clusters/prod", &RenderOptions::default()).unwrap();
    assert_eq!(d.freeze, None);
    assert_eq!(d.objects.len(), 1);
}

#[test]
fn the_freeze_field_is_read_with_its_defaults() {
    let t = tree("freeze:\n  reason: \"  incident 4711: payments down \"\n");
    let d = render(&t, "clusters/prod", &RenderOptions::default()).unwrap();
    assert_eq!(
        d.freeze,
        Some(BundleFreeze {
            reason: "incident 4711: payments down".into(),
            by: None,
            abort: false,
            all: false,
            author: None,
        })
    );
    assert_eq!(d.objects.len(), 1, "the objects still render");
    let t = tree("freeze: {reason: release, by: alice, abort: true, all: true}\n");
    let f = render(&t, "clusters/prod", &RenderOptions::default())
        .unwrap()
        .freeze
        .unwrap();
    assert_eq!(
        (f.by.as_deref(), f.abort, f.all),
        (Some("alice"), true, true)
    );
}

#[test]
fn an_invalid_freeze_is_an_error_naming_file_line_and_problem() {
    let cases = [
        ("freeze: true\n", "freeze must be a mapping"),
        ("freeze: {by: alice}\n", "missing field `reason`"),
        ("freeze: {reason: \"  \"}\n", "must say why"),
        (
            "freeze: {reason: x, until: tomorrow}\n",
            "unknown field `until`",
        ),
        ("freeze: {reason: x, abort: \"yes\"}\n", "invalid type"),
        ("freeze: {reason: \"a\\nb\"}\n", "one line"),
        ("freeze: {reason: x, by: \"\"}\n", "freeze.by"),
    ];
    for (extra, want) in cases {
        let errs = errors(&tree(extra));
        assert_eq!(errs.len(), 1, "{extra}: {errs:?}");
        assert!(
            errs[0].starts_with("clusters/prod/fledge.yaml:5: invalid bundle:")
                && errs[0].contains(want),
            "{extra}: {errs:?}"
        );
    }
    let long = format!("freeze: {{reason: {}}}\n", "x".repeat(513));
    assert!(errors(&tree(&long))[0].contains("longer than 512"));
}

#[test]
fn a_freeze_in_an_included_bundle_is_refused() {
    let t = tree("").with(
        "apps/web/fledge.yaml",
        "apiVersion: fledge.dev/v1alpha1\nkind: Bundle\ninclude: [cm.yaml]\nfreeze: {reason: sneaky}\n",
    );
    let errs = errors(&t);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("apps/web/fledge.yaml:4:")
                && e.contains("only from the root bundle")),
        "{errs:?}"
    );
}
