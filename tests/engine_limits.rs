//! Library-level limits: timeouts that do not disturb each other or later runs, memory caps that
//! keep the host bounded, and a fuel budget.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use wasmbox::config::Settings;
use wasmbox::engine::{ExecResult, Termination};
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::SandboxFs;

fn executor(memory_mb: u64, fuel: Option<u64>) -> (Executor, tempfile::TempDir) {
    common::ensure_runtimes();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::from_env();
    settings.data_dir = dir.path().to_path_buf();
    settings.limits.memory_bytes = memory_mb << 20;
    settings.limits.fuel = fuel;
    (Executor::new(&settings).expect("executor"), dir)
}

fn request(language: Language, code: &str, timeout_secs: u64) -> RunRequest {
    RunRequest::new(language, code, Duration::from_secs(timeout_secs))
}

/// Peak resident set size of this process, from /proc.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_is_healthy_after_timeouts_and_timeouts_are_independent() {
    let (exec, dir) = executor(256, None);
    let fs = SandboxFs::create(dir.path().join("sb")).expect("fs");
    let env = BTreeMap::new();

    // A sleeper with a 1 s budget and a quick run with a generous budget, side by side.
    let started = Instant::now();
    let (slow, quick) = tokio::join!(
        exec.run(
            &fs,
            &env,
            request(Language::Python, "import time; time.sleep(100)", 1)
        ),
        exec.run(&fs, &env, request(Language::Python, "print('quick')", 30)),
    );
    let slow = slow.expect("slow run");
    let quick = quick.expect("quick run");
    assert_eq!(slow.termination, Termination::TimedOut);
    assert_eq!(slow.exit_code, 124);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(quick.success(), "{quick:?}");
    assert_eq!(quick.stdout, "quick\n");

    // Busy loops in both languages stop, then the engine still runs code normally.
    for (language, code) in [
        (Language::Python, "while True: pass"),
        (Language::JavaScript, "for(;;){}"),
    ] {
        let r = exec
            .run(&fs, &env, request(language, code, 1))
            .await
            .expect("run");
        assert_eq!(r.termination, Termination::TimedOut, "{language}");
        assert!(
            r.duration < Duration::from_secs(3),
            "{language}: {:?}",
            r.duration
        );
    }
    let after = exec
        .run(
            &fs,
            &env,
            request(Language::Python, "print(sum(range(10)))", 30),
        )
        .await
        .expect("run");
    assert_eq!(after.stdout, "45\n");
}

/// Set in the child process [`memory_limit_bounds_host_memory`] starts.
const MEMORY_CHILD: &str = "WASMBOX_TEST_MEMORY_CHILD";

/// Runs [`memory_bombs_in_a_process_of_their_own`] alone in a child process of this test
/// binary: the peak resident set size (`VmHWM`) is per process, and the other tests of this
/// binary run in parallel threads, so measured here it would include their memory.
#[test]
fn memory_limit_bounds_host_memory() {
    common::ensure_runtimes();
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "memory_bombs_in_a_process_of_their_own",
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEMORY_CHILD, "1")
        .output()
        .expect("starting the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "the memory bombs failed in the child process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Memory bombs in both languages end as memory failures, not timeouts or crashes, and the
/// process's peak memory stays near the 64 MiB cap. Only meaningful alone in its process, so
/// it is ignored unless [`memory_limit_bounds_host_memory`] runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run in a child process by memory_limit_bounds_host_memory"]
async fn memory_bombs_in_a_process_of_their_own() {
    if std::env::var_os(MEMORY_CHILD).is_none() {
        eprintln!("skipped: run by memory_limit_bounds_host_memory in a process of its own");
        return;
    }
    let (exec, dir) = executor(64, None);
    let fs = SandboxFs::create(dir.path().join("sb")).expect("fs");
    let env = BTreeMap::new();
    // Warm up first so compilation does not count towards the peak we measure.
    let warm = exec
        .run(&fs, &env, request(Language::Python, "pass", 30))
        .await
        .expect("warm");
    assert!(warm.success(), "{warm:?}");
    let js_warm = exec
        .run(&fs, &env, request(Language::JavaScript, "1", 30))
        .await
        .expect("warm js");
    assert!(js_warm.success(), "{js_warm:?}");
    let before = peak_rss_bytes();

    let py = exec
        .run(
            &fs,
            &env,
            request(
                Language::Python,
                "a = []\nwhile True: a.append(bytearray(10**6))",
                30,
            ),
        )
        .await
        .expect("python bomb");
    assert!(!py.success());
    assert!(!py.timed_out(), "{py:?}");
    assert!(is_memory_failure(&py, "MemoryError"), "{py:?}");
    let js = exec
        .run(
            &fs,
            &env,
            request(
                Language::JavaScript,
                "const a = []; for (;;) a.push(new Array(1e5).fill(1.5));",
                30,
            ),
        )
        .await
        .expect("js bomb");
    assert!(!js.success());
    assert!(!js.timed_out(), "{js:?}");
    assert!(is_memory_failure(&js, "out of memory"), "{js:?}");

    let growth = peak_rss_bytes().saturating_sub(before);
    assert!(
        growth < 256 << 20,
        "host peak RSS grew by {} MiB with a 64 MiB cap",
        growth >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_budget_stops_a_busy_loop() {
    let (exec, dir) = executor(256, Some(2_000_000_000));
    let fs = SandboxFs::create(dir.path().join("sb")).expect("fs");
    let env = BTreeMap::new();
    let ok = exec
        .run(
            &fs,
            &env,
            request(Language::JavaScript, "console.log(1+1)", 30),
        )
        .await
        .expect("run");
    assert_eq!(ok.stdout, "2\n");
    let r = exec
        .run(&fs, &env, request(Language::JavaScript, "for(;;){}", 60))
        .await
        .expect("run");
    assert_eq!(r.termination, Termination::OutOfFuel, "{r:?}");
    assert!(r.duration < Duration::from_secs(60));
}

/// Whether `result` ended because memory ran out: the host stopped the guest at the cap
/// ([`Termination::MemoryLimit`]), or the interpreter was refused memory and said so itself
/// (`message` on stderr, a non-zero exit; what CPython and QuickJS do today).
fn is_memory_failure(result: &ExecResult, message: &str) -> bool {
    match result.termination {
        Termination::MemoryLimit => true,
        Termination::Exited => result.exit_code != 0 && result.stderr.contains(message),
        _ => false,
    }
}
