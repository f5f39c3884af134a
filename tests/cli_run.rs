//! `wasmbox run` in-process: the seed examples, limits and escape attempts, through the real binary.

mod common;

use std::time::{Duration, Instant};

use common::{run_json, tree, wasmbox};

fn data_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn stdout_of(report: &serde_json::Value) -> &str {
    report["stdout"].as_str().unwrap_or_default()
}

#[test]
fn python_hello_world() {
    let dir = data_dir();
    let (report, out) = run_json(dir.path(), &["print('Hello, World!')"]);
    assert_eq!(stdout_of(&report), "Hello, World!\n");
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["success"], true);
    assert!(report["execution_time"].as_f64().is_some_and(|t| t > 0.0));
    assert!(out.status.success());
}

#[test]
fn plain_output_is_the_program_output() {
    let dir = data_dir();
    let out = wasmbox(dir.path())
        .args([
            "run",
            "result = 2 + 2; print(f'Result: {result}')",
            "-o",
            "plain",
        ])
        .output()
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Result: 4\n");
    assert!(out.status.success());
}

#[test]
fn python_version_and_imports() {
    let dir = data_dir();
    let (report, _) = run_json(dir.path(), &["import sys; print(sys.version)"]);
    assert!(stdout_of(&report).starts_with("3.1"), "{report}");
}

#[test]
fn javascript_process_version_and_console() {
    let dir = data_dir();
    let (report, _) = run_json(
        dir.path(),
        &["console.log(process.version)", "-l", "javascript"],
    );
    assert!(stdout_of(&report).starts_with('v'), "{report}");
    let (report, _) = run_json(
        dir.path(),
        &["console.log('Hello, World!')", "-l", "javascript"],
    );
    assert_eq!(stdout_of(&report), "Hello, World!\n");
}

#[test]
fn env_injection() {
    let dir = data_dir();
    let (report, _) = run_json(
        dir.path(),
        &[
            "import os; print(os.environ['API_KEY'], os.environ['DEBUG'])",
            "-e",
            "API_KEY=secret123",
            "-e",
            "DEBUG=true",
        ],
    );
    assert_eq!(stdout_of(&report), "secret123 true\n");
    let (report, _) = run_json(
        dir.path(),
        &[
            "console.log(process.env.API_KEY)",
            "-l",
            "js",
            "-e",
            "API_KEY=secret123",
        ],
    );
    assert_eq!(stdout_of(&report), "secret123\n");
}

#[test]
fn workdir_changes_cwd_in_both_languages() {
    let dir = data_dir();
    let (report, _) = run_json(
        dir.path(),
        &[
            "import os; print(os.getcwd())",
            "--workdir",
            "/tmp/myproject",
        ],
    );
    assert_eq!(stdout_of(&report), "/tmp/myproject\n");
    let (report, _) = run_json(dir.path(), &["import os; print(os.getcwd())"]);
    assert_eq!(stdout_of(&report), "/workspace\n");
    let (report, _) = run_json(
        dir.path(),
        &["console.log(process.cwd())", "-l", "js", "-w", "/tmp/p"],
    );
    assert_eq!(stdout_of(&report), "/tmp/p\n");
}

#[test]
fn code_from_file_and_stdin() {
    let dir = data_dir();
    let script = dir.path().join("script.py");
    std::fs::write(&script, "print('Hello from file!')\n").expect("write");
    let (report, _) = run_json(dir.path(), &["-f", script.to_str().expect("utf8")]);
    assert_eq!(stdout_of(&report), "Hello from file!\n");
    let js = dir.path().join("script.js");
    std::fs::write(&js, "console.log('js file')\n").expect("write");
    let (report, _) = run_json(dir.path(), &[js.to_str().expect("utf8")]);
    assert_eq!(stdout_of(&report), "js file\n");

    let mut child = wasmbox(dir.path())
        .args(["run", "-", "-o", "plain"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"print(6 * 7)\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "42\n");
}

#[test]
fn program_exit_status_passes_through() {
    let dir = data_dir();
    let (report, out) = run_json(dir.path(), &["import sys; sys.exit(3)"]);
    assert_eq!(report["exit_code"], 3);
    assert_eq!(report["success"], false);
    assert_eq!(out.status.code(), Some(3));
    let (report, out) = run_json(dir.path(), &["raise ValueError('boom')"]);
    assert_eq!(report["exit_code"], 1);
    assert!(report["stderr"]
        .as_str()
        .unwrap_or_default()
        .contains("ValueError: boom"));
    assert_eq!(out.status.code(), Some(1));
    let (report, out) = run_json(dir.path(), &["throw new Error('x')", "-l", "js"]);
    assert_eq!(report["success"], false);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn files_stay_inside_the_sandbox_directory() {
    let dir = data_dir();
    let created = wasmbox(dir.path())
        .args(["sandbox", "create", "-o", "json"])
        .output()
        .expect("create");
    assert!(created.status.success());
    let sandbox: serde_json::Value = serde_json::from_slice(&created.stdout).expect("json");
    let id = sandbox["id"].as_str().expect("id").to_string();
    let before = tree(dir.path());

    let code = "open('/workspace/out.txt','w').write('data'); import os; os.makedirs('/tmp/x/y', exist_ok=True); open('rel.txt','w').write('r')";
    let (report, _) = run_json(dir.path(), &[code, "--sandbox", &id]);
    assert_eq!(report["success"], true, "{report}");

    let root = dir.path().join("sandboxes").join(&id).join("fs");
    assert_eq!(
        std::fs::read_to_string(root.join("workspace/out.txt"))
            .ok()
            .as_deref(),
        Some("data")
    );
    assert_eq!(
        std::fs::read_to_string(root.join("workspace/rel.txt"))
            .ok()
            .as_deref(),
        Some("r")
    );
    assert!(root.join("tmp/x/y").is_dir());
    let after = tree(dir.path());
    let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
    let prefix = format!("sandboxes/{id}/fs/");
    let outside: Vec<_> = new
        .iter()
        .filter(|p| !p.starts_with(&prefix) && !p.starts_with("runs"))
        .collect();
    assert!(
        outside.is_empty(),
        "files written outside the sandbox tree: {outside:?}"
    );
}

#[test]
fn unknown_sandbox_exits_4() {
    let dir = data_dir();
    let out = wasmbox(dir.path())
        .args(["run", "print(1)", "--sandbox", "sbx_doesnotexist"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

fn assert_times_out(args: &[&str]) {
    let dir = data_dir();
    let started = Instant::now();
    let (report, out) = run_json(dir.path(), args);
    let elapsed = started.elapsed();
    assert_eq!(out.status.code(), Some(5), "{report}");
    assert_eq!(report["timed_out"], true);
    assert_eq!(report["success"], false);
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(
        report["execution_time"]
            .as_f64()
            .is_some_and(|t| (1.9..4.0).contains(&t)),
        "{report}"
    );
}

#[test]
fn python_busy_loop_times_out() {
    assert_times_out(&["while True: pass", "--timeout", "2"]);
}

#[test]
fn python_sleep_times_out() {
    assert_times_out(&["import time; time.sleep(100)", "--timeout", "2"]);
}

#[test]
fn javascript_busy_loop_times_out() {
    assert_times_out(&["for(;;){}", "-l", "javascript", "--timeout", "2"]);
}

#[test]
fn javascript_timer_wait_times_out() {
    assert_times_out(&[
        "setTimeout(() => console.log('late'), 100000)",
        "-l",
        "javascript",
        "--timeout",
        "2",
    ]);
}

#[test]
fn memory_bomb_ends_cleanly() {
    let dir = data_dir();
    // 10**10 does not even fit wasm32's address space: CPython refuses it up front.
    let (report, out) = run_json(dir.path(), &["s = 'x' * 10**10"]);
    assert_eq!(report["success"], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        report["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("Error"),
        "{report}"
    );
    // 1 GB fits the address space but not the 512 MiB cap.
    let (report, out) = run_json(dir.path(), &["s = 'x' * 10**9"]);
    assert_eq!(report["success"], false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        report["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("MemoryError"),
        "{report}"
    );
    let (report, _) = run_json(
        dir.path(),
        &[
            "const a = []; for (;;) a.push(new Array(1e6).fill(1));",
            "-l",
            "javascript",
        ],
    );
    assert_eq!(report["success"], false, "{report}");
    assert_eq!(report["timed_out"], false, "{report}");
}

#[test]
fn output_flood_is_truncated() {
    let dir = data_dir();
    let (report, out) = run_json(
        dir.path(),
        &["import sys\nline = 'x' * 999 + '\\n'\nfor _ in range(100_000): sys.stdout.write(line)"],
    );
    assert!(out.status.success(), "{report}");
    assert_eq!(report["stdout_truncated"], true);
    let len = stdout_of(&report).len();
    assert!(len > 0 && len <= 1 << 20, "kept {len} bytes");
}

#[test]
fn escape_attempts_fail() {
    let dir = data_dir();
    let probes = [
        "open('/etc/passwd').read()",
        "open('../../../../../../etc/passwd').read()",
        "import os; os.listdir('/proc')",
        "open('/usr/lib/wasmbox/prelude.js', 'w').write('x')",
    ];
    for code in probes {
        let (report, _) = run_json(dir.path(), &[code]);
        assert_eq!(report["success"], false, "{code} succeeded: {report}");
    }
    // Listing / shows only the sandbox's own tree.
    let (report, _) = run_json(dir.path(), &["import os; print(sorted(os.listdir('/')))"]);
    assert_eq!(stdout_of(&report), "['tmp', 'workspace']\n");
}

#[test]
fn symlinks_cannot_point_out() {
    let dir = data_dir();
    let created = wasmbox(dir.path())
        .args(["sandbox", "create"])
        .output()
        .expect("create");
    let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let workspace = dir.path().join("sandboxes").join(&id).join("fs/workspace");
    std::os::unix::fs::symlink("/etc/passwd", workspace.join("passwd")).expect("symlink");
    std::os::unix::fs::symlink("/etc", workspace.join("etc")).expect("symlink");
    for code in [
        "print(open('/workspace/passwd').read())",
        "print(open('/workspace/etc/hostname').read())",
        "import os; os.symlink('/etc/passwd', '/workspace/mine'); print(open('/workspace/mine').read())",
        "import os; os.symlink('../../../../etc/passwd', '/workspace/up'); print(open('/workspace/up').read())",
    ] {
        let (report, _) = run_json(dir.path(), &[code, "--sandbox", &id]);
        assert_eq!(report["success"], false, "{code} succeeded: {report}");
        assert!(!stdout_of(&report).contains("root:"), "{code} leaked: {report}");
    }
}

#[test]
fn host_environment_does_not_leak() {
    let dir = data_dir();
    let out = wasmbox(dir.path())
        .env("WASMBOX_TEST_HOST_SECRET", "hunter2")
        .args(["run", "import os; print(dict(os.environ))", "-o", "json"])
        .output()
        .expect("run");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let env = stdout_of(&report);
    assert!(
        !env.contains("hunter2") && !env.contains("WASMBOX_TEST_HOST_SECRET"),
        "{env}"
    );
    assert!(env.contains("'PWD': '/workspace'"), "{env}");
}

#[test]
fn sockets_are_unavailable() {
    let dir = data_dir();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let code = format!("import socket; s = socket.create_connection(('127.0.0.1', {port}), timeout=1); print('connected')");
    let (report, _) = run_json(dir.path(), &[&code]);
    assert_eq!(report["success"], false, "{report}");
    assert!(!stdout_of(&report).contains("connected"));
}

#[test]
fn bad_input_is_a_clear_usage_error() {
    let dir = data_dir();
    let cases: [(&[&str], i32, &str); 5] = [
        (&["run", "print(1)", "-l", "cobol"], 2, "unknown language"),
        (&["run", "  "], 2, "empty"),
        (&["run", "print(1)", "-e", "NOEQUALS"], 2, "KEY=VALUE"),
        (&["run"], 2, "no code"),
        (&["run", "-f", "/nonexistent/script.py"], 1, "cannot read"),
    ];
    for (args, code, needle) in cases {
        let out = wasmbox(dir.path()).args(args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// The bash issue's reproducers (tests/clients/bash_reproducers.txt): each gives native bash's
/// stdout and exit status through `wasmbox run -l bash` (both run in an empty directory).
#[test]
fn bash_reproducers_match_native_bash() {
    let dir = data_dir();
    let scripts = include_str!("clients/bash_reproducers.txt")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'));
    let mut mismatches = Vec::new();
    let mut count = 0;
    for script in scripts {
        count += 1;
        let native_dir = tempfile::tempdir().unwrap();
        let native = std::process::Command::new("bash")
            .args(["-c", script])
            .current_dir(native_dir.path())
            .env("HOME", native_dir.path())
            .env("LC_ALL", "C.UTF-8")
            .output()
            .expect("bash");
        let expected = (
            String::from_utf8_lossy(&native.stdout).into_owned(),
            native.status.code().unwrap_or(-1),
        );
        // Without --sandbox every run has a temporary sandbox of its own.
        let out = wasmbox(dir.path())
            .args(["run", "-o", "json", "-l", "bash", "-T", "30", "--", script])
            .output()
            .expect("running wasmbox");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let got = (
            stdout_of(&report).to_string(),
            report["exit_code"].as_i64().unwrap_or(-1) as i32,
        );
        if got != expected {
            mismatches.push(format!(
                "{script}\n  bash:    {expected:?}\n  wasmbox: {got:?} stderr {:?}",
                report["stderr"]
            ));
        }
    }
    assert!(count >= 30, "only {count} reproducers");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
