//! The `fledge` binary: parses the command line and dispatches to the library.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser};
use fledge::cli::{Cli, Command};
use std::path::Path;
use std::process::ExitCode;

mod cmd;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = parse_cli();
    fledge::install_crypto();
    fledge::logging::init(cli.global.log_format, cli.global.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line. Installed as `kubectl-fledge` (a symlink or a copy), the binary is
/// the kubectl plugin `kubectl fledge …` and its help says so.
fn parse_cli() -> Cli {
    let argv0 = std::env::args_os().next();
    let plugin = argv0
        .as_deref()
        .and_then(|a| Path::new(a).file_stem())
        .is_some_and(|n| n == "kubectl-fledge");
    if !plugin {
        return Cli::parse();
    }
    let matches = Cli::command().bin_name("kubectl fledge").get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crds { output_dir: None } => {
            print!("{}", fledge::crd::all_yaml().context("serialising CRDs")?);
        }
        Command::Crds {
            output_dir: Some(dir),
        } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in fledge::crd::all() {
                let path = dir.join(fledge::crd::file_name(&crd));
                let yaml = fledge::crd::to_yaml(&crd).context("serialising CRD")?;
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
        Command::Render(args) => {
            return cmd::render::render_cmd(args, cli.global.kubeconfig.as_deref());
        }
        Command::Validate(args) => {
            return cmd::render::validate_cmd(args, cli.global.kubeconfig.as_deref());
        }
        Command::Analyze(args) => return cmd::analyze::analyze_cmd(args),
        Command::Run(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            return rt.block_on(cmd::run::run_cmd(args, cli.global.kubeconfig.as_deref()));
        }
        Command::Plan(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            return rt.block_on(cmd::plan::plan_cmd(args, cli.global.kubeconfig.as_deref()));
        }
        Command::Promote { full, rollout } => {
            let verb = if full {
                fledge::rollout::Verb::PromoteFull
            } else {
                fledge::rollout::Verb::Promote
            };
            return block_on(cmd::rollout::request_cmd(
                verb,
                rollout,
                cli.global.kubeconfig,
            ));
        }
        Command::Abort { rollout } => {
            let verb = fledge::rollout::Verb::Abort;
            return block_on(cmd::rollout::request_cmd(
                verb,
                rollout,
                cli.global.kubeconfig,
            ));
        }
        Command::Retry { rollout } => {
            let verb = fledge::rollout::Verb::Retry;
            return block_on(cmd::rollout::request_cmd(
                verb,
                rollout,
                cli.global.kubeconfig,
            ));
        }
        Command::Pause { rollout } => {
            let verb = fledge::rollout::Verb::Pause;
            return block_on(cmd::rollout::request_cmd(
                verb,
                rollout,
                cli.global.kubeconfig,
            ));
        }
        Command::Resume { rollout } => {
            let verb = fledge::rollout::Verb::Resume;
            return block_on(cmd::rollout::request_cmd(
                verb,
                rollout,
                cli.global.kubeconfig,
            ));
        }
        Command::Freeze(args) => {
            return block_on(cmd::freeze::freeze_cmd(args, cli.global.kubeconfig));
        }
        Command::Unfreeze { config_repo } => {
            return block_on(cmd::freeze::unfreeze_cmd(
                config_repo,
                cli.global.kubeconfig,
            ));
        }
        Command::Status { namespace, watch } => {
            return block_on(cmd::rollout::status_cmd(
                namespace,
                watch,
                cli.global.kubeconfig,
            ));
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "fledge", &mut std::io::stdout());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a command's future on a fresh runtime.
fn block_on(
    f: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// A Kubernetes client from `--kubeconfig`, else the usual inference (KUBECONFIG, ~/.kube/config,
/// in-cluster).
pub async fn kube_client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes configuration found (use --kubeconfig)")?,
    };
    // Count and time every request (fledge_kube_requests_total, fledge_kube_request_seconds):
    // how much load fledge puts on the API, and how fast the API answers.
    let layer = fledge::server::requests::RequestMetricsLayer;
    Ok(kube::client::ClientBuilder::try_from(config)?
        .with_layer(&layer)
        .build())
}

/// glibc gives every thread that allocates its own arena (up to 8 per core), and memory freed in
/// one arena is not reused by another: a burst on a blocking thread (a render) and another on the
/// async workers (an apply) would each keep their peak. Two arenas keep the agent's resident
/// memory close to what it actually uses; `MALLOC_ARENA_MAX` still overrides.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called first thing in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
