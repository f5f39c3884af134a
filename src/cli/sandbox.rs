//! `wasmbox sandbox …`: create, list, inspect and delete sandboxes, in the local data directory
//! or on a server (`--server`).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use wasmbox::config::Settings;

use super::backend::Backend;
use super::output::{print_deleted, print_sandbox, print_sandboxes, OutputFormat};
use super::remote::RemoteArgs;
use super::run::parse_env_pair;
use super::CliError;

/// `wasmbox sandbox [--server URL] …`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[command(flatten)]
    remote: RemoteArgs,
    #[command(subcommand)]
    command: SandboxCommand,
}

impl SandboxArgs {
    pub fn execute(self, settings: &Settings, format: OutputFormat) -> Result<ExitCode, CliError> {
        self.command
            .execute(&Backend::new(settings, &self.remote)?, format)
    }
}

#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Create a sandbox and print its id.
    Create {
        /// Template name (informational: every sandbox has every runtime).
        #[arg(short = 't', long, default_value = "code-interpreter")]
        template: String,
        /// Environment variable KEY=VALUE for every execution (repeatable).
        #[arg(short = 'e', long = "env", value_parser = parse_env_pair)]
        env: Vec<(String, String)>,
        /// Delete the sandbox automatically after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
    },
    /// List sandboxes.
    List,
    /// Show one sandbox.
    Get { id: String },
    /// Delete a sandbox and its files.
    #[command(alias = "delete")]
    Kill { id: String },
}

impl SandboxCommand {
    pub fn execute(self, backend: &Backend, format: OutputFormat) -> Result<ExitCode, CliError> {
        match self {
            SandboxCommand::Create {
                template,
                env,
                timeout,
            } => print_sandbox(
                &backend.create_sandbox(template, env.into_iter().collect(), timeout)?,
                format,
            ),
            SandboxCommand::List => print_sandboxes(&backend.list_sandboxes()?, format),
            SandboxCommand::Get { id } => print_sandbox(&backend.get_sandbox(&id)?, format),
            SandboxCommand::Kill { id } => {
                backend.delete_sandbox(&id)?;
                print_deleted(&id, format);
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
