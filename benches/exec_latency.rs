//! Per-execution latency of wasmbox next to native process spawns, measured in one run.
//!
//! `cargo bench --bench exec_latency` prints a markdown table (p50, p99, mean per scenario and the
//! ratio of wasmbox to native p50) and writes it to `target/bench/exec_latency.md`.
//! `BENCH_ITERS` sets the iterations per scenario (default 60).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use wasmbox::config::Settings;
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::SandboxFs;

/// One measured program: wasmbox runs `code`, natively `program args…` does the same.
struct Scenario {
    language: Language,
    code: &'static str,
    expected: &'static str,
    program: &'static str,
    args: Vec<String>,
}

impl Scenario {
    fn new(
        language: Language,
        code: &'static str,
        expected: &'static str,
        program: &'static str,
        args: &[&str],
    ) -> Self {
        Self {
            language,
            code,
            expected,
            program,
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }
}

#[derive(Clone)]
struct Stats {
    name: String,
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(name: &str, mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    Stats {
        name: name.to_string(),
        p50: pick(0.5),
        p99: pick(0.99),
        mean,
    }
}

/// The real interpreter binary behind `program` (pyenv and similar install shell-script shims
/// that would add their own start-up to the native numbers).
fn real_binary(program: &str) -> String {
    let probe: &[&str] = match program {
        "python3" => &["-c", "import sys; print(sys.executable)"],
        "node" => &["-e", "console.log(process.execPath)"],
        _ => return program.to_string(),
    };
    Command::new(program)
        .args(probe)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| program.to_string())
}

fn native(program: &str, args: &[&str], iters: usize) -> Option<Vec<Duration>> {
    let program = &real_binary(program);
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let started = Instant::now();
        let out = Command::new(program).args(args).output().ok()?;
        samples.push(started.elapsed());
        assert!(out.status.success(), "{program} failed");
    }
    Some(samples)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let settings = Settings::from_env();
    let executor = Executor::new(&settings).expect("engine");
    // The same runtimes without pre-initialised snapshots, to show what the snapshots buy.
    let plain = Executor::new(&Settings {
        snapshots: false,
        ..settings.clone()
    })
    .expect("engine");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = SandboxFs::create(dir.path()).expect("sandbox dir");
    let env = BTreeMap::new();

    // The shell pipeline reads a file in the sandbox; the native one reads the same file.
    std::fs::write(fs.root().join("workspace/f.txt"), "a\nb\nc\n").expect("fixture");
    let fixture = fs.root().join("workspace/f.txt");
    let native_pipeline = format!("cat {} | wc -l", fixture.display());
    let scenarios = [
        Scenario::new(
            Language::Python,
            "print('hello')",
            "hello\n",
            "python3",
            &["-c", "print('hello')"],
        ),
        Scenario::new(
            Language::JavaScript,
            "console.log('hello')",
            "hello\n",
            "node",
            &["-e", "console.log('hello')"],
        ),
        Scenario::new(
            Language::Bash,
            "echo hello",
            "hello\n",
            "sh",
            &["-c", "echo hello"],
        ),
        Scenario::new(
            Language::Bash,
            "cat f.txt | wc -l",
            "3\n",
            "sh",
            &["-c", &native_pipeline],
        ),
    ];
    let mut rows = Vec::new();
    for Scenario {
        language,
        code,
        expected,
        program,
        args,
    } in scenarios
    {
        let native_name = format!(
            "{program} {} `{code}`",
            args.first().map(String::as_str).unwrap_or("")
        );
        executor
            .ensure_installed(language)
            .expect("runtime installed");
        let measure = |exec: &Executor, label: &str| {
            rt.block_on(exec.warm_up(language)).expect("warm up");
            let mut samples = Vec::with_capacity(iters);
            for _ in 0..iters + 3 {
                let request = RunRequest::new(language, code, Duration::from_secs(30));
                let started = Instant::now();
                let result = rt.block_on(exec.run(&fs, &env, request)).expect("run");
                samples.push(started.elapsed());
                assert_eq!(result.stdout, expected, "{result:?}");
            }
            stats(
                &format!("wasmbox {language} `{code}` ({label})"),
                samples.split_off(3),
            )
        };
        let snapshot = measure(&executor, "library, warm engine");
        let has_snapshot = executor
            .runtimes()
            .invocation(language, code)
            .is_ok_and(|inv| inv.snapshot.is_some());
        let native = native(
            program,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            iters,
        )
        .map(|s| stats(&format!("native {native_name}"), s));
        rows.push((snapshot, native.clone()));
        if has_snapshot {
            rows.push((measure(&plain, "library, no snapshot"), native));
        }
    }

    let mut table = String::from("| scenario | p50 ms | p99 ms | mean ms | wasmbox p50 / native p50 |\n|---|---:|---:|---:|---:|\n");
    let mut natives_shown = Vec::new();
    for (wasm, native) in &rows {
        let ratio = native
            .as_ref()
            .map(|n| format!("{:.2}×", wasm.p50.as_secs_f64() / n.p50.as_secs_f64()))
            .unwrap_or_else(|| "n/a".into());
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {ratio} |",
            wasm.name,
            ms(wasm.p50),
            ms(wasm.p99),
            ms(wasm.mean)
        );
        if let Some(n) = native.as_ref().filter(|n| !natives_shown.contains(&n.name)) {
            natives_shown.push(n.name.clone());
            let _ = writeln!(
                table,
                "| {} | {} | {} | {} | |",
                n.name,
                ms(n.p50),
                ms(n.p99),
                ms(n.mean)
            );
        }
    }
    println!("\n{iters} iterations per scenario\n\n{table}");
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::write(out.join("exec_latency.md"), &table);
    }
}
