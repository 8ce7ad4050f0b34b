//! fledge: a GitOps agent that keeps a Kubernetes cluster equal to a config repository and ships
//! every workload change progressively (canary beside a fresh baseline, metric-gated steps), with
//! failed canaries reverted in git as well as in the cluster.
//!
//! The crate is organised as the pipeline in `DESIGN.md` §2; each module's `//!` line says where
//! it sits.

pub mod analysis;
pub mod cli;
pub mod crd;
pub mod duration;
pub mod labels;
pub mod logging;
pub mod render;
pub mod source;
