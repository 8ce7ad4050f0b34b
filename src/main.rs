//! The `fledge` binary: parses the command line and dispatches to the library.

use anyhow::Context;
use clap::{CommandFactory, Parser};
use fledge::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    fledge::logging::init(cli.global.log_format, cli.global.verbose);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Crds { output_dir: None } => {
            print!("{}", fledge::crd::all_yaml().context("serialising CRDs")?);
        }
        Command::Crds { output_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for crd in fledge::crd::all() {
                let path = dir.join(fledge::crd::file_name(&crd));
                let yaml = fledge::crd::to_yaml(&crd).context("serialising CRD")?;
                std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "fledge", &mut std::io::stdout());
        }
    }
    Ok(ExitCode::SUCCESS)
}
