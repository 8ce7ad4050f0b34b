//! fledge's custom resources (group `fledge.dev`, version `v1alpha1`): the Rust types are the
//! source of truth; `fledge crds` prints the CustomResourceDefinitions generated from them, and
//! the copies committed under `crds/` are checked against that output by a test.

mod analysis_template;
mod common;
mod config_repo;
mod freeze;
mod rollout;

pub use analysis_template::*;
pub use common::*;
pub use config_repo::*;
pub use freeze::*;
pub use rollout::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CustomResourceDefinitions of all fledge resources, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![ConfigRepo::crd(), Rollout::crd(), AnalysisTemplate::crd()]
}

/// File name under `crds/` for a CRD (`<plural>.<group>.yaml`).
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// One CRD as YAML, exactly as committed under `crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_saphyr::SerializeError> {
    serde_saphyr::to_string(crd)
}

/// All CRDs as one multi-document YAML stream (what `fledge crds` prints).
pub fn all_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}
