//! The data stack (`code-interpreter`'s python: CPython 3.15 with numpy, pandas, matplotlib)
//! over HTTP, next to the plain CPython 3.13 template and a native `python3` spawn, in one run.
//!
//! `cargo bench --bench data` starts the real server in this process (default settings, so
//! `code-interpreter` routes `python` to the data runtime) and measures p50/p90 of `/execute`
//! for `print('hello')`, the same after importing numpy, pandas and matplotlib, the cookbook's
//! sine plot (`plt.show()` → PNG), and warm kernel cells (`x + 1`, a DataFrame, a plot). It
//! writes `docs/bench/data-latency.md` (`BENCH_QUICK=1`: fewer iterations, output under
//! `target/bench`). The runtimes must be installed (`wasmbox runtimes fetch`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde_json::Value;

use wasmbox::config::Settings;

#[path = "support/mod.rs"]
mod support;
use support::{percentile, BenchClient, BenchSandbox, BenchServer};

const PRINT: &str = "print('hello')";
const IMPORTS: &str = "import numpy, pandas, matplotlib\nprint('hello')";
const PLOT: &str = "import numpy as np\nimport matplotlib.pyplot as plt\n\
                    x = np.linspace(0, 10, 100)\nplt.figure(figsize=(10, 6))\n\
                    plt.plot(x, np.sin(x))\nplt.title('Sine Wave')\nplt.show()\n";

struct Row {
    what: String,
    p50: Duration,
    p90: Duration,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("\ndata bench FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn row(what: impl Into<String>, mut samples: Vec<Duration>) -> Row {
    Row {
        what: what.into(),
        p50: percentile(&mut samples, 0.5),
        p90: percentile(&mut samples, 0.9),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn run() -> Result<()> {
    let quick = std::env::var_os("BENCH_QUICK").is_some();
    let (fast, slow) = if quick { (15, 3) } else { (60, 15) };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join(if quick { "target/bench" } else { "docs/bench" });
    let scratch = tempfile::tempdir()?;
    let server = BenchServer::start(Settings {
        data_dir: scratch.path().join("server"),
        ..Settings::from_env()
    })?;
    let client = BenchClient::new(&server)?;
    let create = |template: &str| client.create(template);
    let post = |sandbox: &BenchSandbox, path: &str, code: &str| -> Result<(Duration, Value)> {
        let started = Instant::now();
        let body = client.run_code(sandbox, path, code)?;
        let took = started.elapsed();
        ensure!(
            !code.contains("plt.show") || body["png"].is_string(),
            "{path}: the plot gave no png: {body}"
        );
        Ok((took, body))
    };
    let times =
        |sandbox: &BenchSandbox, path: &str, code: &str, n: usize| -> Result<Vec<Duration>> {
            post(sandbox, path, code)?; // warm-up (loads the module, starts the kernel)
            (0..n)
                .map(|_| post(sandbox, path, code).map(|(t, _)| t))
                .collect()
        };

    let data = create("code-interpreter")?;
    let plain = create("python")?;
    let (_, body) = post(&data, "/execute", PRINT)?;
    ensure!(
        body["language"] == "python-data",
        "code-interpreter is not on the data runtime: {body}"
    );
    let (_, body) = post(&data, "/execute", PLOT)?;
    ensure!(body["png"].is_string(), "the plot gave no png: {body}");

    let mut rows = vec![
        row(
            "`print('hello')`, `/execute`",
            times(&data, "/execute", PRINT, fast)?,
        ),
        row(
            "`import numpy, pandas, matplotlib; print('hello')`, `/execute`",
            times(&data, "/execute", IMPORTS, fast)?,
        ),
        row(
            "sine plot, `plt.show()` → PNG, `/execute`",
            times(&data, "/execute", PLOT, slow)?,
        ),
    ];
    post(
        &data,
        "/execute/ipython",
        "import pandas as pd\nx = 41\ndf = pd.DataFrame({'n': range(100)})",
    )?;
    rows.push(row(
        "warm kernel cell `x + 1`",
        times(&data, "/execute/ipython", "x + 1", fast)?,
    ));
    rows.push(row(
        "warm kernel cell `df.describe()` (html + dataframe JSON)",
        times(&data, "/execute/ipython", "df.describe()", fast)?,
    ));
    rows.push(row(
        "warm kernel cell: sine plot",
        times(&data, "/execute/ipython", PLOT, slow)?,
    ));
    let plain_rows = vec![row(
        "`print('hello')`, `/execute`, `python` template (CPython 3.13)",
        times(&plain, "/execute", PRINT, fast)?,
    )];
    drop(client);
    drop(server);

    let native = |code: &str| -> Option<Vec<Duration>> {
        (0..fast.min(20))
            .map(|_| {
                let started = Instant::now();
                let ok = Command::new("python3")
                    .args(["-c", code])
                    .output()
                    .ok()?
                    .status
                    .success();
                ok.then(|| started.elapsed())
            })
            .collect()
    };

    let mut table = String::new();
    let _ = writeln!(table, "| what | p50 | p90 |\n| --- | ---: | ---: |");
    for r in rows.iter().chain(&plain_rows) {
        let _ = writeln!(table, "| {} | {} | {} |", r.what, ms(r.p50), ms(r.p90));
    }
    for (what, code) in [
        ("`print('hello')`", PRINT),
        ("`import numpy, pandas, matplotlib`", IMPORTS),
    ] {
        match native(code) {
            Some(samples) => {
                let r = row(
                    format!("native `python3 -c` {what} (process spawn)"),
                    samples,
                );
                let _ = writeln!(table, "| {} | {} | {} |", r.what, ms(r.p50), ms(r.p90));
            }
            None => {
                let _ = writeln!(
                    table,
                    "| native `python3 -c` {what} | not available (the host's python3 lacks the packages) | |"
                );
            }
        }
    }
    let _ = writeln!(
        table,
        "\nWall time per request: the real server in this process on loopback, one keep-alive \
         connection; {fast} iterations ({slow} for plots) after one warm-up each. \
         `code-interpreter` sandboxes (python = the data runtime, kernel durability `cell`)."
    );
    print!("{table}");
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join("data-latency.md"), &table)?;
    Ok(())
}
