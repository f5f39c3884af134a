//! No applet panics on what scripts feed it: every applet (`sh --list`) is started with no
//! arguments, once with empty stdin and once with text arriving through a pipe, and must end
//! (or, like `yes`, still be running at the deadline) without a Rust panic.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(3);
const TEXT: &[u8] = b"b 2\na 1\n\nc 3\n\xff\xfe bytes\n";

fn applets() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_sh"))
        .arg("--list")
        .output()
        .expect("sh --list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Run `name` with stdin `input` (None: empty); returns (status, stderr).
fn run(name: &str, input: Option<&[u8]>) -> (Option<i32>, String) {
    let dir = std::env::temp_dir().join(format!("wbsh-applet-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sh"))
        .arg0(name)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("PWD", &dir)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn applet");
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        // the applet may exit without reading: a broken pipe here is fine
        let _ = stdin.write_all(data);
    }
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code(),
            Ok(None) if start.elapsed() > DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => break None,
        }
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    let _ = std::fs::remove_dir_all(&dir);
    (status, err)
}

#[test]
fn no_applet_panics_on_empty_or_piped_stdin() {
    let names = applets();
    assert!(names.len() > 40, "applets: {names:?}");
    let mut bad = Vec::new();
    for name in &names {
        for input in [None, Some(TEXT)] {
            let (status, err) = run(name, input);
            if err.contains("panicked") || matches!(status, Some(101) | Some(134)) {
                let how = if input.is_some() { "piped" } else { "empty" };
                bad.push(format!("{name} ({how} stdin): status {status:?}: {err}"));
            }
        }
    }
    assert!(bad.is_empty(), "applets panicked:\n{}", bad.join("\n"));
}
