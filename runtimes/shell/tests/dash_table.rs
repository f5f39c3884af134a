//! Differential table: every snippet of cases.txt run by our shell (native build, applets via
//! the native spawner) must give the stdout and exit status that Debian's dash gave
//! (recorded in cases.json by record_cases.py).

use std::process::Command;

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    script: String,
    stdout: String,
    status: i32,
}

fn run_ours(script: &str) -> (String, i32, String) {
    let dir = std::env::temp_dir().join(format!("wbsh-{}-{}", std::process::id(), rand_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sh"))
        .arg("-c")
        .arg(script)
        .current_dir(&dir)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/root")
        .env("LC_ALL", "C")
        .env("PWD", &dir)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[test]
fn dash_differential_table() {
    let cases: Vec<Case> = serde_json::from_str(include_str!("cases.json")).unwrap();
    assert!(cases.len() >= 60);
    let mut failures = Vec::new();
    for c in &cases {
        let (out, st, err) = run_ours(&c.script);
        if out != c.stdout || st != c.status {
            failures.push(format!(
                "--- {}\nscript: {}\nexpected ({}): {:?}\n     got ({}): {:?}\nstderr: {}",
                c.name, c.script, c.status, c.stdout, st, out, err
            ));
        }
    }
    if !failures.is_empty() {
        panic!(
            "{} of {} cases differ from dash:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}
