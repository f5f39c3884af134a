//! The one printer: execution results and sandboxes as a table, JSON or plain program output,
//! the same whether they came from this process or from a server.

use std::io::Write;

use serde::Serialize;

use wasmbox::api::models::{ExecutionResponse, SandboxInfo};

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A readable summary with the output and error output.
    Table,
    /// One JSON object.
    Json,
    /// The program's stdout and stderr as they are.
    Plain,
}

/// Prints an execution result in `format`; JSON is the API's `/execute` response.
pub fn print_run(result: &ExecutionResponse, format: OutputFormat) {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    // Write errors (a closed pipe) are not worth failing the command over.
    let _ = match format {
        OutputFormat::Json => writeln!(out, "{}", to_json(result)),
        OutputFormat::Plain => out
            .write_all(result.stdout.as_bytes())
            .and_then(|()| err.write_all(result.stderr.as_bytes())),
        OutputFormat::Table => write_run_table(result, &mut out),
    };
    let _ = out.flush();
}

fn write_run_table(result: &ExecutionResponse, out: &mut impl Write) -> std::io::Result<()> {
    section(out, "Output", &result.stdout, result.stdout_truncated)?;
    if !result.stderr.is_empty() {
        section(out, "Error Output", &result.stderr, result.stderr_truncated)?;
    }
    let status = if result.timed_out {
        "timed out"
    } else if result.success {
        "success"
    } else {
        "failed"
    };
    writeln!(
        out,
        "── {status} · exit code {} · {:.1} ms · {}",
        result.exit_code,
        result.execution_time * 1000.0,
        result.language
    )
}

fn section(out: &mut impl Write, title: &str, text: &str, truncated: bool) -> std::io::Result<()> {
    writeln!(out, "── {title} ──")?;
    out.write_all(text.as_bytes())?;
    if !text.is_empty() && !text.ends_with('\n') {
        writeln!(out)?;
    }
    if truncated {
        writeln!(out, "[output truncated at the size limit]")?;
    }
    Ok(())
}

/// Prints one sandbox: its id, or the API's sandbox object as JSON.
pub fn print_sandbox(sandbox: &SandboxInfo, format: OutputFormat) {
    match format {
        OutputFormat::Json => println!("{}", to_json(sandbox)),
        _ => println!("{}", sandbox.id),
    }
}

/// Prints sandboxes: one tab-separated line each, or a JSON array.
pub fn print_sandboxes(sandboxes: &[SandboxInfo], format: OutputFormat) {
    match format {
        OutputFormat::Json => println!("{}", to_json(&sandboxes)),
        _ => {
            for s in sandboxes {
                println!(
                    "{}\t{}\t{}\t{}",
                    s.id,
                    s.template_name,
                    s.status.name(),
                    s.created_at
                );
            }
        }
    }
}

/// Confirms that sandbox `id` was deleted.
pub fn print_deleted(id: &str, format: OutputFormat) {
    if format == OutputFormat::Json {
        println!("{}", serde_json::json!({ "id": id, "deleted": true }));
    } else {
        println!("deleted {id}");
    }
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
