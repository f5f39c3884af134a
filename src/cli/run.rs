//! `wasmbox run`: run code once, in a temporary sandbox or an existing one.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use wasmbox::config::Settings;
use wasmbox::engine::ExecResult;
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::{SandboxFs, SandboxStore};

use super::output::{OutputFormat, RunReport};
use super::remote::{RemoteArgs, RemoteRun};
use super::{tokio_runtime, CliError, EXIT_TIMEOUT};

/// Run code in a sandbox and print its output.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Code to run, a file containing it, or `-` to read it from stdin.
    code: Option<String>,

    /// File containing the code to run.
    #[arg(short = 'f', long = "file", conflicts_with = "code")]
    file: Option<PathBuf>,

    /// Language: python, javascript or bash (default: from the file extension, else python).
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

        if let Some(remote) = self.remote.client()? {
            let report = remote.run(RemoteRun {
                language: language.to_string(),
                code,
                env: self.env.into_iter().collect(),
                workdir: self.workdir,
                timeout: Duration::from_secs(self.timeout),
                sandbox: self.sandbox,
            })?;
            report.print(format);
            return Ok(exit_status_of(report.timed_out, report.exit_code));
        }

        let executor = Executor::new(settings)?;
        executor.ensure_installed(language)?;
        let mut request = RunRequest::new(language, code, Duration::from_secs(self.timeout));
        request.env = self.env.into_iter().collect();
        request.workdir = self.workdir;

        let (fs, base_env, temp) = match &self.sandbox {
            Some(id) => {
                let store = SandboxStore::open(&settings.data_dir)?;
                let sandbox = store.get(id)?;
                (store.files(id)?, sandbox.env, None)
            }
            None => {
                let runs = settings.data_dir.join("runs");
                std::fs::create_dir_all(&runs).map_err(|e| {
                    CliError::Other(format!("cannot create {}: {e}", runs.display()))
                })?;
                let temp = tempfile::Builder::new()
                    .prefix("run-")
                    .tempdir_in(&runs)
                    .map_err(|e| {
                        CliError::Other(format!("cannot create a temporary sandbox: {e}"))
                    })?;
                let fs = SandboxFs::create(temp.path()).map_err(|e| {
                    CliError::Other(format!("cannot create a temporary sandbox: {e}"))
                })?;
                // Removed below without recursion: the guest shapes the tree (see sandbox::remove_tree).
                let temp = temp.keep();
                (fs, BTreeMap::new(), Some(temp))
            }
        };

        let result = tokio_runtime()?.block_on(async {
            warm_up_with_progress(&executor, language).await?;
            executor
                .run(&fs, &base_env, request)
                .await
                .map_err(CliError::from)
        });
        if let Some(temp) = temp {
            if let Err(e) = wasmbox::sandbox::remove_tree(&temp) {
                eprintln!("wasmbox: warning: could not remove {}: {e}", temp.display());
            }
        }
        let result = result?;
        let report = report(&result, language);
        report.print(format);
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

/// Loads the runtime's compiled module, telling the user when that is the slow first compile.
async fn warm_up_with_progress(executor: &Executor, language: Language) -> Result<(), CliError> {
    let warm = executor.warm_up(language);
    tokio::pin!(warm);
    tokio::select! {
        done = &mut warm => return done.map_err(CliError::from),
        () = tokio::time::sleep(Duration::from_millis(1500)) => {
            eprintln!("wasmbox: compiling the {language} runtime for this machine (first use only)…");
        }
    }
    warm.await.map_err(CliError::from)
}

fn report(result: &ExecResult, language: Language) -> RunReport {
    RunReport {
        stdout: result.stdout.clone(),
        stderr: result.stderr.clone(),
        exit_code: result.exit_code,
        success: result.success(),
        execution_time: result.duration.as_secs_f64(),
        timed_out: result.timed_out(),
        stdout_truncated: result.stdout_truncated,
        stderr_truncated: result.stderr_truncated,
        language: language.to_string(),
    }
}

/// The program's own status passes through; a timeout is [`EXIT_TIMEOUT`].
fn exit_status(result: &ExecResult) -> ExitCode {
    exit_status_of(result.timed_out(), result.exit_code)
}

fn exit_status_of(timed_out: bool, exit_code: i32) -> ExitCode {
    if timed_out {
        return ExitCode::from(EXIT_TIMEOUT);
    }
    match exit_code {
        0 => ExitCode::SUCCESS,
        code => ExitCode::from(u8::try_from(code).ok().filter(|c| *c != 0).unwrap_or(1)),
    }
}
