//! fledge: a GitOps agent that keeps a Kubernetes cluster equal to a config repository and ships
//! every workload change progressively (canary beside a fresh baseline, metric-gated steps), with
//! failed canaries reverted in git as well as in the cluster.
//!
//! The crate is organised as the pipeline in `DESIGN.md` §2; each module's `//!` line says where
//! it sits.

pub mod analysis;
pub mod apply;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod duration;
pub mod failpoint;
pub mod forge;
pub mod labels;
pub mod limits;
pub mod logging;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod server;
pub mod source;

/// Selects rustls' crypto provider for the process. Dependencies compile in more than one
/// (aws-lc-rs and ring) and rustls refuses to guess; call this before making any client.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
