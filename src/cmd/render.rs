//! `fledge render` and `fledge validate`.

use anyhow::{Context, bail};
use fledge::cli::{RenderArgs, RenderFormat, SourceArgs};
use fledge::render::{self, Desired, FileTree, FsTree, GitTree, RenderErrors, RenderOptions};
use fledge::source::{self, Auth, Mirror};
use std::path::Path;
use std::process::ExitCode;

/// Credentials for remote sources, from the environment (never from flags, which show in `ps`).
fn auth_from_env() -> anyhow::Result<Auth> {
    if let Ok(token) = std::env::var("FLEDGE_GIT_TOKEN") {
        return Ok(Auth::Token(token));
    }
    if let Ok(path) = std::env::var("FLEDGE_GIT_SSH_KEY") {
        let private_key = std::fs::read_to_string(&path)
            .with_context(|| format!("reading FLEDGE_GIT_SSH_KEY {path}"))?;
        return Ok(Auth::SshKey {
            private_key,
            passphrase: std::env::var("FLEDGE_GIT_SSH_PASSPHRASE").ok(),
        });
    }
    Ok(Auth::None)
}

/// Runs `f` on the tree the source arguments name.
pub fn with_tree<R>(args: &SourceArgs, f: impl FnOnce(&dyn FileTree) -> R) -> anyhow::Result<R> {
    let local = Path::new(&args.repo);
    if !source::is_remote(&args.repo) && local.exists() {
        let is_bare = git2::Repository::open_bare(local).is_ok();
        if args.rev.is_none() && !is_bare {
            if !local.is_dir() {
                bail!("{}: not a directory", local.display());
            }
            let tree =
                FsTree::new(local).with_context(|| format!("opening {}", local.display()))?;
            return Ok(f(&tree));
        }
        let repo = source::open_local(local)?;
        let rev = args.rev.as_deref().unwrap_or("HEAD");
        let commit = source::resolve_rev(&repo, rev).map_err(|e| {
            anyhow::anyhow!("resolving {rev} in {}: {}", local.display(), e.message())
        })?;
        let tree = GitTree::at(&repo, commit)
            .map_err(|e| anyhow::anyhow!("reading commit {commit}: {}", e.message()))?;
        return Ok(f(&tree));
    }
    if !source::is_remote(&args.repo) {
        bail!("{}: no such directory, and not a git URL", args.repo);
    }
    let cache = args
        .cache_dir
        .clone()
        .unwrap_or_else(source::default_cache_dir);
    let mirror = Mirror::open(&cache, &args.repo)?;
    mirror.fetch(&auth_from_env()?)?;
    let commit = mirror.resolve(args.rev.as_deref().unwrap_or("HEAD"))?;
    let tree = GitTree::at(mirror.repo(), commit)
        .map_err(|e| anyhow::anyhow!("reading commit {commit}: {}", e.message()))?;
    Ok(f(&tree))
}

fn options(args: &SourceArgs, kubeconfig: Option<&Path>) -> anyhow::Result<RenderOptions> {
    if let Some(name) = &args.name {
        // The name becomes a label value on every object: validate it as the API server would.
        let why =
            render::label_value_problem(name).or_else(|| render::name_problem("ConfigRepo", name));
        if let Some(why) = why {
            bail!("--name {:?}: {why}", fledge::limits::escape_controls(name));
        }
    }
    let mut opts = RenderOptions {
        max_objects: args.max_objects,
        config_repo: args.name.clone(),
        ..RenderOptions::default()
    };
    if args.discover {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        opts.scopes = rt.block_on(async {
            let client = crate::kube_client(kubeconfig).await?;
            render::discover(&client).await.context("API discovery")
        })?;
    }
    Ok(opts)
}

fn do_render(
    args: &SourceArgs,
    opts: &RenderOptions,
) -> anyhow::Result<Result<Desired, RenderErrors>> {
    with_tree(args, |tree| render::render(tree, &args.path, opts))
}

fn print_errors(errors: &RenderErrors) {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    eprintln!(
        "{} error{} found",
        errors.0.len(),
        if errors.0.len() == 1 { "" } else { "s" }
    );
}

pub fn render_cmd(args: RenderArgs, kubeconfig: Option<&Path>) -> anyhow::Result<ExitCode> {
    let opts = options(&args.source, kubeconfig)?;
    let print = |d: &Desired| match args.output {
        RenderFormat::Yaml => print!("{}", d.to_yaml()),
        RenderFormat::Json => println!("{}", d.to_json()),
    };
    if !args.watch {
        return Ok(match do_render(&args.source, &opts)? {
            Ok(d) => {
                print(&d);
                ExitCode::SUCCESS
            }
            Err(e) => {
                print_errors(&e);
                ExitCode::FAILURE
            }
        });
    }
    if args.source.rev.is_some() || source::is_remote(&args.source.repo) {
        bail!("--watch needs a local directory read as it is (no --rev)");
    }
    let (_watcher, changes) = source::watch(
        Path::new(&args.source.repo),
        std::time::Duration::from_millis(150),
    )
    .context("watching the directory")?;
    loop {
        match do_render(&args.source, &opts)? {
            Ok(d) => {
                print(&d);
                eprintln!(
                    "# rendered {} objects from {} files; watching for changes",
                    d.objects.len(),
                    d.files
                );
            }
            Err(e) => print_errors(&e),
        }
        if changes.recv().is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

pub fn validate_cmd(args: SourceArgs, kubeconfig: Option<&Path>) -> anyhow::Result<ExitCode> {
    let opts = options(&args, kubeconfig)?;
    Ok(match do_render(&args, &opts)? {
        Ok(d) => {
            println!(
                "rendered {} objects from {} files",
                d.objects.len(),
                d.files
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_errors(&e);
            ExitCode::FAILURE
        }
    })
}
