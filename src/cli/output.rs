//! Printing execution results as a table, JSON or plain program output.

use std::io::Write;

use serde::Serialize;

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

/// An execution result as the CLI shows it (also the JSON shape).
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub stdout: String,
    pub stderr: String,
    pub exit_code: i32,
    pub success: bool,
    /// Seconds.
    pub execution_time: f64,
    pub timed_out: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdout_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stderr_truncated: bool,
    pub language: String,
}

impl RunReport {
    /// Prints the report in `format`.
    pub fn print(&self, format: OutputFormat) {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        // Write errors (a closed pipe) are not worth failing the command over.
        let _ = match format {
            OutputFormat::Json => serde_json::to_string_pretty(self)
                .map_err(std::io::Error::other)
                .and_then(|json| writeln!(out, "{json}")),
            OutputFormat::Plain => out
                .write_all(self.stdout.as_bytes())
                .and_then(|()| err.write_all(self.stderr.as_bytes())),
            OutputFormat::Table => self.write_table(&mut out),
        };
        let _ = out.flush();
    }

    fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        section(out, "Output", &self.stdout, self.stdout_truncated)?;
        if !self.stderr.is_empty() {
            section(out, "Error Output", &self.stderr, self.stderr_truncated)?;
        }
        let status = if self.timed_out {
            "timed out".to_string()
        } else if self.success {
            "success".to_string()
        } else {
            "failed".to_string()
        };
        writeln!(
            out,
            "── {status} · exit code {} · {:.1} ms · {}",
            self.exit_code,
            self.execution_time * 1000.0,
            self.language
        )
    }
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
