//! Tests of the YAML reader: budgets shared by documents, depth through aliases, duplicate
//! keys, merge keys, and lines from the parser's spans.

use super::*;

fn one(text: &str) -> Result<Value, String> {
    let mut budget = Budget::new(&crate::limits::RenderLimits::default());
    let (mut docs, errors) = parse_documents(text, &mut budget);
    if let Some(e) = errors.first() {
        return Err(format!("{:?}: {}", e.line, e.kind));
    }
    Ok(docs.remove(0).value)
}

#[test]
fn keys_differing_only_in_type_are_duplicates() {
    for text in [
        "{1: a, \"1\": b}",
        "{true: a, 'true': b}",
        "a: 1\na: 2",
        "{null: 1, ~: 2}",
    ] {
        let e = one(text).unwrap_err();
        assert!(e.contains("duplicate key"), "{text}: {e}");
    }
}

#[test]
fn merge_keys_and_aliases() {
    let v = one("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n").unwrap();
    assert_eq!(v["d"], serde_json::json!({"x": 1, "y": 3}));
}

#[test]
fn lines_come_from_spans() {
    let mut budget = Budget::new(&crate::limits::RenderLimits::default());
    let (docs, _) = parse_documents(
        "# include: no\n---\nkind: Bundle\ninclude:\n  # - a\n  - a\n  - b\n",
        &mut budget,
    );
    assert_eq!(docs[0].line, 3);
    assert_eq!(docs[0].line_of("/include/0"), 6);
    assert_eq!(docs[0].line_of("/include/1"), 7);
}

#[test]
fn alias_budget_is_shared_by_documents() {
    let limits = crate::limits::RenderLimits {
        max_nodes: 1_000,
        ..Default::default()
    };
    let doc = "a: &a [1,2,3,4,5,6,7,8,9]\nb: [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n---\n";
    // Just under: 9 documents of ~110 nodes.
    let mut budget = Budget::new(&limits);
    let (docs, errors) = parse_documents(&doc.repeat(9), &mut budget);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(docs.len(), 9);
    // Just over: one more document.
    let mut budget = Budget::new(&limits);
    let (_, errors) = parse_documents(&doc.repeat(10), &mut budget);
    assert!(
        matches!(errors[0].kind, ErrorKind::Limit { .. }),
        "{errors:?}"
    );
}

#[test]
fn depth_is_bounded_through_aliases() {
    let limits = crate::limits::RenderLimits {
        max_depth: 5,
        ..Default::default()
    };
    let mut budget = Budget::new(&limits);
    let (_, errors) = parse_documents("a: &a {b: {c: {d: {e: 1}}}}\ne: {f: *a}\n", &mut budget);
    assert!(
        matches!(errors[0].kind, ErrorKind::TooDeepYaml(5)),
        "{errors:?}"
    );
    let mut budget = Budget::new(&limits);
    let (_, errors) = parse_documents("a: &a {b: {c: 1}}\ne: {f: *a}\n", &mut budget);
    assert!(errors.is_empty(), "{errors:?}");
}
