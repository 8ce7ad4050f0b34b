//! Command-line interface definitions (clap). `main.rs` dispatches; each command's work lives in
//! the module of its pipeline step.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// fledge: GitOps with progressive delivery. Keeps a cluster equal to a config repository, ships
/// workload changes as metric-gated canaries, and reverts failed changes in git.
#[derive(Debug, Parser)]
#[command(
    name = "fledge",
    version,
    propagate_version = true,
    max_term_width = 100
)]
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
    /// Render a bundle of a config repository to the objects fledge would apply.
    ///
    /// REPO is a local directory (read as it is on disk, uncommitted changes included), a bare
    /// repository, or a git URL (https://, ssh://, git@host:path, file://), read at --rev.
    /// Prints a multi-document YAML stream (or one JSON v1 List), in apply order.
    Render(RenderArgs),
    /// Check that a bundle renders; print a one-line summary, or every error found (exit 1).
    Validate(SourceArgs),
    /// Judge a canary against its baseline with an AnalysisTemplate and Prometheus, from any
    /// pipeline. Waits for the window (or judges a past one with --at) and prints the report.
    ///
    /// Exit codes: 0 Pass, 2 Fail, 3 Marginal or Inconclusive (no data, or Prometheus errors:
    /// fail safe), 1 usage error or unusable template.
    Analyze(AnalyzeArgs),
    /// Run the agent: keep the cluster equal to every ConfigRepo (fetch, render, apply, prune,
    /// heal drift, report health). With --repo, first create or update a ConfigRepo for it, so
    /// one command gets a cluster going.
    Run(RunArgs),
    /// Show what applying a bundle would change in the live cluster: a diff per object (from a
    /// server-side apply dry run) and a summary. Exit 0 no changes, 2 changes, 1 error.
    Plan(PlanArgs),
    /// Finish the current step of a rollout (a pause, a marginal or inconclusive analysis) and
    /// go on; with --full, skip all remaining steps and promote.
    Promote {
        /// Skip the remaining steps.
        #[arg(long)]
        full: bool,
        /// The Rollout, as NAMESPACE/NAME.
        rollout: String,
    },
    /// Abort a rollout: traffic back to stable, canary and baseline removed, `RolledBack`.
    Abort {
        /// The Rollout, as NAMESPACE/NAME.
        rollout: String,
    },
    /// Run again: an analysis step after an inconclusive or marginal verdict, or the whole
    /// rollout of a template that failed.
    Retry {
        /// The Rollout, as NAMESPACE/NAME.
        rollout: String,
    },
    /// Hold a rollout where it is (weights and workloads stay).
    Pause {
        /// The Rollout, as NAMESPACE/NAME.
        rollout: String,
    },
    /// Undo `pause`; also ends an indefinite `pause` step.
    Resume {
        /// The Rollout, as NAMESPACE/NAME.
        rollout: String,
    },
    /// Pull the andon cord on a ConfigRepo: stop the line until `fledge unfreeze`.
    ///
    /// While frozen, no new rollout starts (template changes from git wait), canaries in flight
    /// pause where they are (traffic unchanged; with --abort they are taken down instead, with no
    /// git revert), and plain configuration still syncs (with --all nothing is applied or
    /// pruned). Stored in the ConfigRepo's spec.freeze under the field manager `fledge-freeze`,
    /// so re-applying the ConfigRepo does not lift it. The same can be done from git with a
    /// `freeze:` field in the bundle. `kubectl get configrepo` shows who froze it and why.
    ///
    /// Example: fledge freeze production --reason "incident 4711: payments degraded"
    Freeze(FreezeArgs),
    /// Lift a `fledge freeze`: paused canaries resume, held changes start. A `freeze:` field in
    /// the bundle is lifted by removing it in git.
    Unfreeze {
        /// The ConfigRepo (cluster-scoped), e.g. `production`.
        config_repo: String,
    },
    /// Print a table of rollouts: phase, step k/n, set/actual canary weight, last score, age.
    Status {
        /// Only this namespace (default: all).
        #[arg(short, long)]
        namespace: Option<String>,
        /// Print the table again every 2 seconds until interrupted (redrawn in place on a TTY).
        #[arg(short, long)]
        watch: bool,
    },
    /// Print a shell completion script (e.g. `fledge completions bash > /etc/bash_completion.d/fledge`).
    Completions {
        /// Shell to generate completions for.
        shell: clap_complete::Shell,
    },
}

/// Where to read a bundle from.
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// Local directory, bare repository or git URL.
    #[arg(value_name = "REPO")]
    pub repo: String,
    /// Bundle directory (holding fledge.yaml) or file inside the repository, e.g. clusters/production.
    #[arg(long, default_value = ".")]
    pub path: String,
    /// Revision to read (branch, tag or commit). Default: the work tree for a local directory,
    /// the default branch for a bare repository or URL.
    #[arg(long)]
    pub rev: Option<String>,
    /// Ask the cluster (API discovery) for the scope of kinds that are not built in.
    #[arg(long)]
    pub discover: bool,
    /// Directory for repository mirrors (default ~/.cache/fledge/repos; env FLEDGE_CACHE_DIR).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Refuse renders with more objects than this.
    #[arg(long, default_value_t = 50_000)]
    pub max_objects: usize,
    /// Value of the fledge.dev/config-repo label put on every object.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Arguments of `fledge render`.
#[derive(Debug, Args, Clone)]
pub struct RenderArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = RenderFormat::Yaml)]
    pub output: RenderFormat,
    /// Keep running and render again whenever a file of the local directory changes.
    #[arg(long)]
    pub watch: bool,
}

/// Output formats of `fledge render`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RenderFormat {
    /// Multi-document YAML stream.
    Yaml,
    /// One `v1` `List` with the objects as items.
    Json,
}

/// Arguments of `fledge analyze`.
#[derive(Debug, Args, Clone)]
pub struct AnalyzeArgs {
    /// AnalysisTemplate YAML file.
    #[arg(long, value_name = "FILE")]
    pub template: PathBuf,
    /// Prometheus base URL (overrides the template's spec.prometheus.address).
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Value of {{service}} in queries.
    #[arg(long)]
    pub service: String,
    /// Value of {{namespace}} in queries.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Extra query variable, repeatable: --set region=eu-west-1.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    /// Track label value of the canary ({{track}} in its queries).
    #[arg(long, default_value = "canary")]
    pub canary_track: String,
    /// Track label value of the baseline.
    #[arg(long, default_value = "baseline")]
    pub baseline_track: String,
    /// Value of {{revision}} in queries.
    #[arg(long, default_value = "")]
    pub revision: String,
    /// Length of the window judged (Go duration).
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub duration: std::time::Duration,
    /// One sample per interval (default: the template's spec.interval).
    #[arg(long, value_parser = parse_duration)]
    pub interval: Option<std::time::Duration>,
    /// Judge the window ending at this time (RFC 3339) instead of waiting for a new one.
    #[arg(long, value_name = "RFC3339")]
    pub at: Option<String>,
    /// Report format.
    #[arg(long, short, value_enum, default_value_t = ReportFormat::Text)]
    pub output: ReportFormat,
}

/// Output formats of `fledge analyze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Markdown,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse(s).map_err(|e| e.to_string())
}

/// Arguments of `fledge run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Repository to follow (URL, bare repository, or a local directory read as it is). Creates
    /// or updates the ConfigRepo named --name; without it, the agent serves existing ConfigRepos.
    #[arg(long, value_name = "URL|DIR")]
    pub repo: Option<String>,
    /// Bundle directory inside the repository (with --repo).
    #[arg(long, default_value = ".")]
    pub path: String,
    /// Branch to follow (with --repo).
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Name of the ConfigRepo (with --repo; default: the last component of --path, or "default").
    #[arg(long)]
    pub name: Option<String>,
    /// Polling interval (with --repo).
    #[arg(long, default_value = "1m")]
    pub interval: String,
    /// Namespace of the agent (Lease, inventory ConfigMaps, default Secret namespace).
    #[arg(long, default_value = "fledge-system", env = "FLEDGE_NAMESPACE")]
    pub namespace: String,
    /// Address of the dashboard (/), /healthz, /readyz, /metrics and the webhooks.
    #[arg(long, default_value = "127.0.0.1:8080", env = "FLEDGE_LISTEN")]
    pub listen: String,
    /// Serve the read-only dashboard at / (ConfigRepos and Rollouts, live). It shows object
    /// names, commits and error messages (never credentials or Secret values) to whoever can
    /// reach --listen.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "FLEDGE_DASHBOARD")]
    pub dashboard: bool,
    /// Directory for repository mirrors.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Elect a leader through a Lease (run several replicas; one writes).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// How long a leader's Lease lasts without renewal before another replica takes over.
    #[arg(long, default_value = "15s")]
    pub lease_duration: String,
    /// How long the leader keeps writing without renewing its Lease; shorter than
    /// --lease-duration (default: 2/3 of it, 10s for 15s).
    #[arg(long, value_name = "DURATION")]
    pub renew_deadline: Option<String>,
    /// Time between attempts to acquire or renew the Lease; shorter than --renew-deadline
    /// (default: 2/15 of --lease-duration, 2s for 15s).
    #[arg(long, value_name = "DURATION")]
    pub retry_period: Option<String>,
    /// Identity in the Lease (default: host name and process id).
    #[arg(long)]
    pub identity: Option<String>,
    /// Concurrent requests while applying.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Only serve ConfigRepos matching this label selector, in the API server's syntax
    /// (`shard=a`, `team!=x`, `tier in (a,b)`, `!legacy`, comma-joined).
    #[arg(long, value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Namespaces besides --namespace where a ConfigRepo's secretRef may point (comma-separated).
    /// ConfigRepos are cluster-scoped: by default their credentials must live in the agent's
    /// own namespace, so creating a ConfigRepo does not grant reading any Secret of the cluster.
    #[arg(long, value_delimiter = ',', value_name = "NS")]
    pub secret_namespaces: Vec<String>,
    /// File holding the webhook secret (a mounted Secret). With it, `/webhooks/github` and
    /// `/webhooks/gitea` accept deliveries signed with HMAC-SHA256; without it they are off.
    #[arg(long, value_name = "FILE", env = "FLEDGE_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// ConfigRepos reconciled at once (one slow repository never stalls the others).
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    /// Rollout passes at once, on the rollout controller's own queue (each Rollout by one
    /// worker at a time; a pass mostly waits on the API server, so many workers are cheap).
    #[arg(long, default_value_t = 16)]
    pub rollout_workers: usize,
    /// Name of this cluster in what fledge posts on the forge: commit status contexts
    /// (`fledge/<cluster>/<ns>/<rollout>`, the plan check's `fledge/plan/<cluster>`), plan comments,
    /// revert commits and pull requests, so several clusters can report on one repository.
    #[arg(long, default_value = "local", env = "FLEDGE_CLUSTER")]
    pub cluster: String,
    /// Base URL of a dashboard: commit statuses link to `<url>/rollouts/<ns>/<name>`.
    #[arg(long, value_name = "URL")]
    pub dashboard_url: Option<String>,
    /// Author and committer of the revert commits fledge pushes after a failed canary, as
    /// `Name <email>` (e.g. a bot account your branch protection or CLA check knows). Default:
    /// `fledge <fledge@noreply.fledge.dev>`.
    #[arg(long, value_name = "NAME <EMAIL>", env = "FLEDGE_ROLLBACK_AUTHOR", value_parser = crate::source::rollback::Identity::parse)]
    pub rollback_author: Option<crate::source::rollback::Identity>,
    /// Install or update fledge's CRDs at start.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub install_crds: bool,
}

/// Arguments of `fledge plan`.
#[derive(Debug, Args, Clone)]
pub struct PlanArgs {
    /// Local directory, bare repository or git URL.
    #[arg(long, value_name = "URL|DIR")]
    pub repo: String,
    /// Bundle directory inside the repository.
    #[arg(long, default_value = ".")]
    pub path: String,
    /// Revision to read (default: the work tree of a directory, the default branch of a URL).
    #[arg(long)]
    pub rev: Option<String>,
    /// ConfigRepo whose inventory decides what would be pruned (default as for `fledge run`).
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace of the agent (where large inventories are kept in a ConfigMap).
    #[arg(long, default_value = "fledge-system", env = "FLEDGE_NAMESPACE")]
    pub namespace: String,
    /// Objects read from the cluster at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = PlanFormat::Text)]
    pub output: PlanFormat,
    /// No ANSI colours (the default when stdout is not a terminal).
    #[arg(long)]
    pub no_color: bool,
    /// Directory for repository mirrors.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// Output formats of `fledge plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
}

/// The ConfigRepo name `fledge run`/`plan` use when none is given: the last component of the
/// bundle path, as a DNS label, or `default`.
pub fn default_repo_name(path: &str) -> String {
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let name: String = last
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = name.trim_matches('-').chars().take(50).collect::<String>();
    if name.is_empty() {
        "default".into()
    } else {
        name
    }
}

/// `fledge freeze`.
#[derive(Debug, Args)]
pub struct FreezeArgs {
    /// The ConfigRepo (cluster-scoped), e.g. `production`.
    pub config_repo: String,
    /// Why the line is stopped (shown in status, events and commit statuses).
    #[arg(long, short = 'r')]
    pub reason: String,
    /// Who pulls the cord (default: $USER, else the kubeconfig's user).
    #[arg(long)]
    pub by: Option<String>,
    /// Abort canaries in flight (traffic back to stable, canary removed, no git revert) instead
    /// of pausing them; the change goes out again from its first step after the unfreeze.
    #[arg(long)]
    pub abort: bool,
    /// Stop plain configuration too: fetch and plan, apply nothing, prune nothing.
    #[arg(long)]
    pub all: bool,
}
