//! `wasmbox repl`: cells in a sandbox's kernel, in this process. With `--sandbox`, the kernel's
//! state outlives the command (its image is written after every cell and restored by the next
//! `wasmbox repl` or by `wasmbox serve`); without it, a temporary sandbox lasts for the session.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use wasmbox::config::Settings;
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::kernels::{Durability, Kernels};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::{NewSandbox, SandboxStore};

use super::{tokio_runtime, CliError, EXIT_TIMEOUT};

/// Run cells in a kernel that keeps variables, imports and functions between them.
#[derive(Debug, Args)]
pub struct ReplArgs {
    /// The sandbox whose kernel to use (it keeps its state across commands).
    #[arg(short = 's', long)]
    sandbox: Option<String>,

    /// Language of the kernel: python or javascript.
    #[arg(short = 'l', long, default_value = "python")]
    language: String,

    /// Run this one cell and exit (repeatable: several cells in order).
    #[arg(short = 'c', long = "cell")]
    cells: Vec<String>,

    /// Timeout of each cell in seconds (a cell past it is interrupted; the kernel lives on).
    #[arg(short = 'T', long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

impl ReplArgs {
    pub fn execute(self, settings: &Settings) -> Result<ExitCode, CliError> {
        let language: Language = self.language.parse()?;
        let executor = Executor::new(settings)?;
        executor.ensure_installed(language)?;
        let store = SandboxStore::open(&settings.data_dir)?;
        let (id, temporary) = match &self.sandbox {
            Some(id) => (store.get(id)?.id, false),
            None => {
                let sandbox = store.create(NewSandbox {
                    template: "code-interpreter".into(),
                    env: BTreeMap::new(),
                    timeout_seconds: Some(24 * 3600),
                })?;
                (sandbox.id, true)
            }
        };
        let kernels = Kernels::new(1, u64::MAX, Durability::EachCell);
        let runtime = tokio_runtime()?;
        let timeout = Duration::from_secs(self.timeout);
        let mut status = ExitCode::SUCCESS;
        let mut run = |code: String| -> Result<(), CliError> {
            let sandbox = store.get(&id)?;
            let fs = store.files(&id)?;
            let reply = runtime.block_on(kernels.run_cell(
                &executor,
                &id,
                &store.state_dir(&id),
                &fs,
                &sandbox.env,
                RunRequest::new(language, code, timeout),
            ))?;
            let result = reply.result;
            print!("{}", result.stdout);
            eprint!("{}", result.stderr);
            for output in &result.outputs {
                match output.primary_type() {
                    "text/plain" => println!("{}", output.text().unwrap_or_default()),
                    mime => println!(
                        "[{mime} output, {} bytes; {}]",
                        output.data.get(mime).map_or(0, |v| v.to_string().len()),
                        output.text().unwrap_or_default()
                    ),
                }
            }
            let _ = std::io::stdout().flush();
            status = if result.timed_out() {
                ExitCode::from(EXIT_TIMEOUT)
            } else if result.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
            Ok(())
        };

        if !self.cells.is_empty() {
            for cell in self.cells {
                run(cell)?;
            }
        } else {
            let stdin = std::io::stdin();
            let interactive = stdin.is_terminal();
            if interactive {
                eprintln!(
                    "wasmbox {language} kernel in sandbox {id}; a cell ends at a line that needs \
                     no continuation (after a block, an empty line); Ctrl-D quits"
                );
            }
            let mut cell = String::new();
            let prompt = |more: bool| {
                if interactive {
                    eprint!("{}", if more { "... " } else { ">>> " });
                }
            };
            prompt(false);
            for line in stdin.lock().lines() {
                let line =
                    line.map_err(|e| CliError::Other(format!("reading stdin failed: {e}")))?;
                let continues = line.trim_end().ends_with([':', '\\', '{', '(', '['])
                    || (!cell.is_empty() && !line.trim().is_empty());
                cell.push_str(&line);
                cell.push('\n');
                if continues {
                    prompt(true);
                    continue;
                }
                if !cell.trim().is_empty() {
                    run(std::mem::take(&mut cell))?;
                }
                cell.clear();
                prompt(false);
            }
            if !cell.trim().is_empty() {
                run(cell)?;
            }
        }
        if temporary {
            let _ = store.delete(&id);
            store.purge_trash();
        }
        Ok(status)
    }
}
