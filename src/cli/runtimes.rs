//! `wasmbox runtimes …`: fetch and list the interpreter runtimes.

use std::process::ExitCode;

use clap::Subcommand;

use wasmbox::config::Settings;
use wasmbox::exec::Executor;
use wasmbox::runtimes::{Language, Runtimes};

use super::output::OutputFormat;
use super::{tokio_runtime, CliError};

#[derive(Debug, Subcommand)]
pub enum RuntimesCommand {
    /// Download/build the runtimes (all, or the named languages) and precompile them.
    Fetch {
        /// Languages to fetch (default: all).
        languages: Vec<String>,
    },
    /// Show which runtimes are installed.
    List,
}

impl RuntimesCommand {
    pub fn execute(self, settings: &Settings, format: OutputFormat) -> Result<ExitCode, CliError> {
        match self {
            RuntimesCommand::Fetch { languages } => {
                let languages = if languages.is_empty() {
                    Language::ALL.to_vec()
                } else {
                    languages
                        .iter()
                        .map(|l| l.parse())
                        .collect::<Result<Vec<Language>, _>>()?
                };
                let executor = Executor::new(settings)?;
                executor.runtimes().fetch(&languages)?;
                let rt = tokio_runtime()?;
                for language in languages {
                    if executor.runtimes().is_installed(language) {
                        eprintln!("wasmbox: precompiling {language}…");
                        rt.block_on(executor.warm_up(language))?;
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            RuntimesCommand::List => {
                let runtimes = Runtimes::new(&settings.cache_dir)?;
                let rows: Vec<_> = Language::ALL
                    .iter()
                    .map(|&l| {
                        serde_json::json!({
                            "language": l.name(),
                            "source": runtimes.describe(l),
                            "installed": runtimes.is_installed(l),
                            "path": runtimes.module_path(l).ok(),
                        })
                    })
                    .collect();
                if format == OutputFormat::Json {
                    println!("{}", serde_json::Value::Array(rows));
                } else {
                    for l in Language::ALL {
                        let state = if runtimes.is_installed(l) {
                            "installed"
                        } else {
                            "missing"
                        };
                        println!("{:<11} {:<10} {}", l.name(), state, runtimes.describe(l));
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
