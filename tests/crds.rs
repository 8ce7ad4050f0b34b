//! The CRDs committed under `crds/` (and the Helm chart's copy in `charts/fledge/crds/`) are
//! exactly what `fledge crds` generates, and every field of every schema is documented (the text
//! `kubectl explain` shows).

use std::path::Path;

fn repo_file(name: &str) -> String {
    file_in("crds", name)
}

fn file_in(dir: &str, name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nregenerate with: cargo run -- crds --output-dir {dir}",
            path.display()
        )
    })
}

#[test]
fn committed_crds_match_generated_ones() {
    for crd in fledge::crd::all() {
        let name = fledge::crd::file_name(&crd);
        let generated = fledge::crd::to_yaml(&crd).unwrap();
        for dir in ["crds", "charts/fledge/crds"] {
            assert!(
                file_in(dir, &name) == generated,
                "{dir}/{name} is out of date; regenerate with: cargo run -- crds --output-dir {dir}"
            );
        }
    }
}

#[test]
fn fledge_crds_prints_the_committed_files() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fledge"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut expected = String::new();
    for crd in fledge::crd::all() {
        expected.push_str("---\n");
        expected.push_str(&repo_file(&fledge::crd::file_name(&crd)));
    }
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
}

#[test]
fn every_schema_field_is_documented() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                let top_level =
                    path.is_empty() && ["apiVersion", "kind", "metadata"].contains(&name.as_str());
                let described = sub
                    .get("description")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| !d.trim().is_empty());
                if !described && !top_level {
                    missing.push(p.clone());
                }
                walk(&p, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in fledge::crd::all() {
        let json = serde_json::to_value(&crd).unwrap();
        let kind = json["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        walk(
            &kind,
            &json["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            &mut missing,
        );
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:#?}"
    );
}

#[test]
fn rollouts_print_phase_step_weight_score_and_age() {
    let rollout = fledge::crd::all()
        .into_iter()
        .find(|c| c.spec.names.kind == "Rollout")
        .unwrap();
    let cols: Vec<String> = rollout.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(cols, ["Phase", "Step", "Weight", "Score", "Age"]);
    assert!(
        rollout.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
}
