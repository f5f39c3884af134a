//! `wasmbox sandbox …`: create, list, inspect and delete sandboxes in the local data directory.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use wasmbox::config::Settings;
use wasmbox::sandbox::{NewSandbox, Sandbox, SandboxStore};

use super::output::OutputFormat;
use super::remote::{Remote, RemoteArgs};
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
        match self.remote.client()? {
            Some(remote) => self.command.execute_remote(&remote, format),
            None => self.command.execute(settings, format),
        }
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
    pub fn execute(self, settings: &Settings, format: OutputFormat) -> Result<ExitCode, CliError> {
        let store = SandboxStore::open(&settings.data_dir)?;
        store.reap_expired();
        match self {
            SandboxCommand::Create {
                template,
                env,
                timeout,
            } => {
                let sandbox = store.create(NewSandbox {
                    template,
                    env: env.into_iter().collect(),
                    timeout_seconds: timeout,
                })?;
                print_one(&sandbox, format);
            }
            SandboxCommand::List => {
                let list = store.list();
                match format {
                    OutputFormat::Json => println!("{}", to_json(&list)),
                    _ => {
                        for s in &list {
                            println!(
                                "{}\t{}\t{:?}\t{}",
                                s.id,
                                s.template,
                                s.status,
                                s.created_at.to_rfc3339()
                            );
                        }
                    }
                }
            }
            SandboxCommand::Get { id } => print_one(&store.get(&id)?, format),
            SandboxCommand::Kill { id } => {
                store.delete(&id)?;
                if format == OutputFormat::Json {
                    println!("{}", serde_json::json!({ "id": id, "deleted": true }));
                } else {
                    println!("deleted {id}");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl SandboxCommand {
    /// The same commands against a server; JSON output is the server's sandbox objects.
    fn execute_remote(self, remote: &Remote, format: OutputFormat) -> Result<ExitCode, CliError> {
        let print = |value: &serde_json::Value| match format {
            OutputFormat::Json => println!("{}", to_json(value)),
            _ => println!("{}", value["id"].as_str().unwrap_or_default()),
        };
        match self {
            SandboxCommand::Create {
                template,
                env,
                timeout,
            } => {
                print(&remote.create_sandbox(&template, &env.into_iter().collect(), timeout)?);
            }
            SandboxCommand::List => {
                let list = remote.list_sandboxes()?;
                match format {
                    OutputFormat::Json => println!("{}", to_json(&list)),
                    _ => {
                        for s in &list {
                            let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                            println!(
                                "{}\t{}\t{}\t{}",
                                field("id"),
                                field("template_name"),
                                field("status"),
                                field("created_at")
                            );
                        }
                    }
                }
            }
            SandboxCommand::Get { id } => print(&remote.get_sandbox(&id)?),
            SandboxCommand::Kill { id } => {
                remote.delete_sandbox(&id)?;
                if format == OutputFormat::Json {
                    println!("{}", serde_json::json!({ "id": id, "deleted": true }));
                } else {
                    println!("deleted {id}");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_one(sandbox: &Sandbox, format: OutputFormat) {
    match format {
        OutputFormat::Json => println!("{}", to_json(sandbox)),
        _ => println!("{}", sandbox.id),
    }
}

fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
