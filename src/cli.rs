//! Command-line interface definitions (clap). `main.rs` dispatches; each command's work lives in
//! the module of its pipeline step.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// fledge: GitOps with progressive delivery. Keeps a cluster equal to a config repository, ships
/// workload changes as metric-gated canaries, and reverts failed changes in git.
#[derive(Debug, Parser)]
#[command(name = "fledge", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command understands.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Kubeconfig to use (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true, env = "KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "FLEDGE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// More log output: -v debug, -vv trace. RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print fledge's CustomResourceDefinitions as YAML (install with `fledge crds | kubectl apply -f -`).
    Crds {
        /// Write one file per CRD into this directory instead of printing them.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
    /// Print a shell completion script (e.g. `fledge completions bash > /etc/bash_completion.d/fledge`).
    Completions {
        /// Shell to generate completions for.
        shell: clap_complete::Shell,
    },
}
