//! Go hello world: wasmbox (compile, link, machine code, run — all inside wasmtime) next to
//! native `go run`, in one run.
//!
//! `cargo bench --bench go` measures, for each program compiler (Winch, Cranelift at
//! `opt-level=none`), the p50 of a *new* source (every run a different program: both toolchain
//! stages, the machine-code compile and the run) and of a *repeated* source (the cached program),
//! and the same two for native `go run`. It prints a markdown table and writes it to
//! `target/bench/go.md`. `BENCH_NEW` and `BENCH_REPEATED` set the iterations (default 8, 40).
//!
//! The native toolchain is `$WASMBOX_BENCH_GO` (a `go` binary, e.g. `usr/lib/go-1.24/bin/go`
//! unpacked from the same pinned debs the fetch step uses), else `go` on `PATH`; without one the
//! native rows say so.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use wasmbox::config::Settings;
use wasmbox::engine::ProgramCompiler;
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::SandboxFs;

fn hello(tag: &str) -> (String, String) {
    (
        format!("package main\n\nimport \"fmt\"\n\nfunc main() {{\n\tfmt.Println(\"hello {tag}\")\n}}\n"),
        format!("hello {tag}\n"),
    )
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

fn main() {
    let new_iters = env_number("BENCH_NEW", 8);
    let repeated_iters = env_number("BENCH_REPEATED", 40);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = SandboxFs::create(dir.path()).expect("sandbox dir");
    let env = BTreeMap::new();
    let nonce = std::process::id();
    let mut rows: Vec<(String, Duration, Duration)> = Vec::new();

    for compiler in [ProgramCompiler::Winch, ProgramCompiler::Cranelift] {
        let settings = Settings {
            program_compiler: compiler,
            ..Settings::from_env()
        };
        let executor = Executor::new(&settings).expect("engine");
        executor
            .ensure_installed(Language::Go)
            .expect("the go runtime");
        rt.block_on(executor.warm_up(Language::Go))
            .expect("loading the toolchain");
        let run = |code: &str, expected: &str| {
            let request = RunRequest::new(Language::Go, code, Duration::from_secs(60));
            let started = Instant::now();
            let result = rt
                .block_on(executor.run(&fs, &env, request))
                .expect("execution");
            let elapsed = started.elapsed();
            assert_eq!(result.stdout, expected, "{}", result.stderr);
            elapsed
        };
        let new: Vec<Duration> = (0..new_iters)
            .map(|i| {
                let (code, expected) = hello(&format!("{} {nonce} {i}", compiler.name()));
                run(&code, &expected)
            })
            .collect();
        let (code, expected) = hello(&format!("repeated {}", compiler.name()));
        run(&code, &expected);
        let repeated: Vec<Duration> = (0..repeated_iters).map(|_| run(&code, &expected)).collect();
        rows.push((
            format!("wasmbox, programs compiled by {}", compiler.name()),
            p50(new),
            p50(repeated),
        ));
    }

    let go = std::env::var_os("WASMBOX_BENCH_GO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("go"));
    let native = native_go(&go, new_iters, repeated_iters.min(10), nonce);
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| Go hello world | new source p50 | repeated source p50 |\n| --- | ---: | ---: |"
    );
    for (name, new, repeated) in &rows {
        let _ = writeln!(table, "| {name} | {} | {} |", ms(*new), ms(*repeated));
    }
    match native {
        Some((new, repeated)) => {
            let _ = writeln!(
                table,
                "| native `go run` (same Go 1.24.4, on the host) | {} | {} |",
                ms(new),
                ms(repeated)
            );
        }
        None => {
            let _ = writeln!(
                table,
                "| native `go run` | not measured: no `go` (set WASMBOX_BENCH_GO) | |"
            );
        }
    }
    let _ = writeln!(
        table,
        "\n{new_iters} new sources, {repeated_iters} repeated runs per wasmbox row (fewer natively); \
         wall time per execution through the library (`Executor::run`)."
    );
    print!("{table}");
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("go.md"), table);
}

/// p50 of `go run main.go` for new and repeated sources, in a private module and build cache
/// (warmed with one build first, so the standard library is compiled already, as the wasmbox
/// rows have their archives).
fn native_go(
    go: &PathBuf,
    new_iters: usize,
    repeated_iters: usize,
    nonce: u32,
) -> Option<(Duration, Duration)> {
    let work = tempfile::tempdir().ok()?;
    let cache = work.path().join("gocache");
    let run = |dir: &std::path::Path, code: &str, expected: &str| -> Option<Duration> {
        std::fs::create_dir_all(dir).ok()?;
        std::fs::write(dir.join("main.go"), code).ok()?;
        let started = Instant::now();
        let out = Command::new(go)
            .args(["run", "main.go"])
            .current_dir(dir)
            .env("GOCACHE", &cache)
            .env("GOPATH", work.path().join("gopath"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOTELEMETRY", "off")
            .env("GO111MODULE", "off")
            .output()
            .ok()?;
        let elapsed = started.elapsed();
        (out.status.success() && out.stdout == expected.as_bytes()).then_some(elapsed)
    };
    let (code, expected) = hello("warm-up");
    run(&work.path().join("warm"), &code, &expected)?;
    let mut new = Vec::new();
    for i in 0..new_iters {
        let (code, expected) = hello(&format!("native {nonce} {i}"));
        new.push(run(&work.path().join(format!("n{i}")), &code, &expected)?);
    }
    let (code, expected) = hello("native repeated");
    let dir = work.path().join("repeated");
    run(&dir, &code, &expected)?;
    let mut repeated = Vec::new();
    for _ in 0..repeated_iters {
        repeated.push(run(&dir, &code, &expected)?);
    }
    Some((p50(new), p50(repeated)))
}
