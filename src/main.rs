//! The `wasmbox` command: parse arguments, call the library, map errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WASMBOX_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match args.execute() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("wasmbox: error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
