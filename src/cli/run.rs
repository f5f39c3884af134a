//! `wasmbox run`: run code once, in a temporary sandbox or an existing one.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use wasmbox::api::models::ExecutionResponse;
use wasmbox::config::Settings;
use wasmbox::exec::RunRequest;
use wasmbox::runtimes::Language;

use super::backend::{Backend, RunSpec};
use super::output::{print_run, OutputFormat};
use super::remote::RemoteArgs;
use super::{CliError, EXIT_TIMEOUT};

/// Run code in a sandbox and print its output.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Code to run, a file containing it, or `-` to read it from stdin.
    code: Option<String>,

    /// File containing the code to run.
    #[arg(short = 'f', long = "file", conflicts_with = "code")]
    file: Option<PathBuf>,

    /// Language: python, javascript, bash or go (default: from the file extension, else python).
    #[arg(short = 'l', long)]
    language: Option<String>,

    /// Timeout in seconds.
    #[arg(short = 'T', long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,

    /// Environment variable KEY=VALUE (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse_env_pair)]
    env: Vec<(String, String)>,

    /// Working directory inside the sandbox (created if missing).
    #[arg(short = 'w', long)]
    workdir: Option<String>,

    /// Run in this existing sandbox instead of a temporary one.
    #[arg(short = 's', long)]
    sandbox: Option<String>,

    /// The temporary sandbox's template: `code-interpreter` runs `python` on the data runtime
    /// (numpy, pandas, matplotlib). Default: none in process (the plain runtimes),
    /// `code-interpreter` with `--server`.
    #[arg(short = 't', long, conflicts_with = "sandbox")]
    template: Option<String>,

    #[command(flatten)]
    remote: RemoteArgs,
}

/// Parses `KEY=VALUE`.
pub(super) fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('\0') && !v.contains('\0') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

impl RunArgs {
    pub fn execute(self, settings: &Settings, format: OutputFormat) -> Result<ExitCode, CliError> {
        let (code, path) = self.read_code()?;
        let language = match (&self.language, &path) {
            (Some(name), _) => name.parse::<Language>()?,
            (None, Some(path)) => Language::from_path(path).unwrap_or(Language::Python),
            (None, None) => Language::Python,
        };
        if code.trim().is_empty() {
            return Err(CliError::Usage("no code to run: the code is empty".into()));
        }
        let mut request = RunRequest::new(language, code, Duration::from_secs(self.timeout));
        request.env = self.env.into_iter().collect();
        request.workdir = self.workdir;
        let result = Backend::new(settings, &self.remote)?.run(RunSpec {
            request,
            sandbox: self.sandbox,
            template: self.template,
        })?;
        print_run(&result, format);
        Ok(exit_status(&result))
    }

    /// The code and, when it came from a file, that file's path.
    fn read_code(&self) -> Result<(String, Option<PathBuf>), CliError> {
        let read_file = |path: &PathBuf| {
            std::fs::read_to_string(path)
                .map(|code| (code, Some(path.clone())))
                .map_err(|e| CliError::Other(format!("cannot read {}: {e}", path.display())))
        };
        match (&self.file, self.code.as_deref()) {
            (Some(path), _) => read_file(path),
            (None, Some("-")) => {
                let mut code = String::new();
                std::io::stdin()
                    .read_to_string(&mut code)
                    .map_err(|e| CliError::Other(format!("cannot read code from stdin: {e}")))?;
                Ok((code, None))
            }
            (None, Some(code)) => {
                let path = PathBuf::from(code);
                if !code.contains('\n') && path.is_file() {
                    read_file(&path)
                } else {
                    Ok((code.to_string(), None))
                }
            }
            (None, None) => Err(CliError::Usage(
                "no code given: pass CODE, a FILE, `-` for stdin, or --file PATH".into(),
            )),
        }
    }
}

/// The program's own status passes through; a timeout is [`EXIT_TIMEOUT`].
fn exit_status(result: &ExecutionResponse) -> ExitCode {
    if result.timed_out {
        return ExitCode::from(EXIT_TIMEOUT);
    }
    match result.exit_code {
        0 => ExitCode::SUCCESS,
        code => ExitCode::from(u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1)),
    }
}
