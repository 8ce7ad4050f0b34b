//! Glue between the command line and the library (binary only; errors are `anyhow`).

pub mod analyze;
pub mod freeze;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod run;
