//! Fixed-work driver for `perf stat` (issue 15): runs `PROFILE_ITERS` fresh executions of one
//! language through the library at `PROFILE_CLIENTS` concurrent clients and prints the rate.
//!
//! Counters are taken per execution by differencing two runs with different `PROFILE_ITERS`
//! (the engine build and warm-up cancel out), e.g.
//! `perf stat -e page-faults,context-switches,instructions cargo bench --bench exec_profile`.
//! Environment: `PROFILE_LANG` (python | javascript | bash, default python), `PROFILE_CLIENTS`
//! (default 1), `PROFILE_ITERS` (default 400). Not a timed test: it asserts only that runs succeed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use wasmbox::config::Settings;
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::SandboxFs;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() -> Result<()> {
    let (language, code) = match env_or("PROFILE_LANG", "python").as_str() {
        "javascript" => (Language::JavaScript, "console.log('hello')"),
        "bash" => (Language::Bash, "echo hello"),
        _ => (Language::Python, "print('hello')"),
    };
    let clients: usize = env_or("PROFILE_CLIENTS", "1").parse()?;
    let iters: usize = env_or("PROFILE_ITERS", "400").parse()?;
    ensure!(clients > 0, "PROFILE_CLIENTS must be at least 1");

    let scratch = tempfile::tempdir()?;
    let settings = Settings {
        snapshots: true,
        data_dir: scratch.path().join("data"),
        ..Settings::from_env()
    };
    let executor = Arc::new(Executor::new(&settings).context("building the engine")?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(executor.warm_up(language))?;
    let fss: Vec<Arc<SandboxFs>> = (0..clients)
        .map(|i| SandboxFs::create(scratch.path().join(format!("fs-{i}"))).map(Arc::new))
        .collect::<Result<_, _>>()?;

    let per_client = iters.div_ceil(clients);
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = fss
            .iter()
            .map(|fs| {
                let (executor, fs) = (executor.clone(), fs.clone());
                tokio::spawn(async move {
                    let env = BTreeMap::new();
                    for _ in 0..per_client {
                        let r = executor
                            .run(
                                &fs,
                                &env,
                                RunRequest::new(language, code, Duration::from_secs(10)),
                            )
                            .await?;
                        ensure!(r.success(), "execution failed: {:?}", r.stderr);
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        anyhow::Ok(())
    })?;
    let secs = started.elapsed().as_secs_f64();
    let n = per_client * clients;
    println!(
        "exec_profile: {language} clients={clients} n={n} {:.1} exec/s",
        n as f64 / secs
    );
    Ok(())
}
