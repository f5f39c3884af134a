//! Command-line interface. Each subcommand is a clap struct with an `execute()`; errors become
//! [`CliError`] with the documented exit codes.

mod backend;
mod output;
mod remote;
mod repl;
mod run;
mod runtimes;
mod sandbox;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use wasmbox::config::Settings;
use wasmbox::exec::ExecError;
use wasmbox::runtimes::RuntimeError;
use wasmbox::sandbox::SandboxError;

pub use output::OutputFormat;

/// Exit status: generic error.
pub const EXIT_ERROR: u8 = 1;
/// Exit status: bad usage (also what clap uses).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: authentication failed.
pub const EXIT_AUTH: u8 = 3;
/// Exit status: sandbox not found.
pub const EXIT_NOT_FOUND: u8 = 4;
/// Exit status: the execution timed out.
pub const EXIT_TIMEOUT: u8 = 5;

/// Run untrusted code in WebAssembly sandboxes.
#[derive(Debug, Parser)]
#[command(name = "wasmbox", version, about)]
pub struct Cli {
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table, env = "WASMBOX_OUTPUT")]
    output: OutputFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run code (Python, JavaScript or shell) in a sandbox.
    Run(run::RunArgs),
    /// Run cells in a kernel that keeps state between them (python, javascript).
    Repl(repl::ReplArgs),
    /// Manage sandboxes.
    Sandbox(sandbox::SandboxArgs),
    /// Serve the HopX-compatible HTTP API.
    Serve(serve::ServeArgs),
    /// Manage interpreter runtimes.
    #[command(subcommand)]
    Runtimes(runtimes::RuntimesCommand),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn execute(self) -> Result<ExitCode, CliError> {
        let settings = Settings::from_env();
        match self.command {
            Command::Run(args) => args.execute(&settings, self.output),
            Command::Repl(args) => args.execute(&settings),
            Command::Sandbox(args) => args.execute(&settings, self.output),
            Command::Serve(args) => args.execute(&settings),
            Command::Runtimes(cmd) => cmd.execute(&settings, self.output),
        }
    }
}

/// A failure the CLI reports with a one-line message and an exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Auth(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Other(String),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Auth(_) => EXIT_AUTH,
            CliError::NotFound(_) => EXIT_NOT_FOUND,
            CliError::Other(_) => EXIT_ERROR,
        }
    }
}

impl From<ExecError> for CliError {
    fn from(err: ExecError) -> Self {
        match err {
            ExecError::Runtime(
                e @ (RuntimeError::UnknownLanguage(_) | RuntimeError::Unsupported(_)),
            ) => CliError::Usage(e.to_string()),
            ExecError::Runtime(RuntimeError::NotAvailable(lang)) => {
                CliError::Usage(format!("the {lang} runtime is not available yet"))
            }
            ExecError::Workdir(e) => CliError::Usage(format!("working directory: {e}")),
            e @ ExecError::NoKernel(_) => CliError::Usage(e.to_string()),
            other => CliError::Other(wasmbox::describe_error(&other)),
        }
    }
}

impl From<SandboxError> for CliError {
    fn from(err: SandboxError) -> Self {
        match err {
            SandboxError::NotFound(_) => CliError::NotFound(err.to_string()),
            other => CliError::Other(wasmbox::describe_error(&other)),
        }
    }
}

impl From<RuntimeError> for CliError {
    fn from(err: RuntimeError) -> Self {
        CliError::from(ExecError::Runtime(err))
    }
}

/// A small (two-worker) tokio runtime for one CLI command.
fn tokio_runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(format!("cannot start async runtime: {e}")))
}
