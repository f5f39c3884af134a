//! Shared by the differential tables: run one recorded snippet through our shell (the native
//! build, applets and pipelines through the native spawner) the way record_cases.py ran the
//! reference shell: `NAME -c SCRIPT`, a fresh empty directory, a fixed small environment, stdin
//! empty, and a deadline so that one runaway case cannot hang the suite.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(serde::Deserialize)]
pub struct Case {
    pub name: String,
    pub script: String,
    pub stdout: String,
    pub status: i32,
}

pub struct Outcome {
    pub stdout: String,
    pub status: i32,
    pub stderr: String,
}

const DEADLINE: Duration = Duration::from_secs(20);

fn scratch_dir() -> std::path::PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("wbsh-{}-{n}", std::process::id()))
}

/// Run `script` with our shell started as `argv0` (`sh` or `bash`: the multicall name decides
/// the mode).
pub fn run_ours(argv0: &str, script: &str, locale: &str) -> Outcome {
    let dir = scratch_dir();
    let work = dir.join("w");
    std::fs::create_dir_all(&work).expect("scratch dir");
    let out_path = dir.join("stdout");
    let err_path = dir.join("stderr");
    let out = std::fs::File::create(&out_path).expect("stdout file");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sh"))
        .arg0(argv0)
        .arg("-c")
        .arg(script)
        .current_dir(&work)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", "/root")
        .env("LC_ALL", locale)
        .env("PWD", &work)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn our shell");
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st.code().unwrap_or(-1),
            Ok(None) if start.elapsed() > DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                break -2;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => break -1,
        }
    };
    let read = |p: &std::path::Path| {
        String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
    };
    let o = Outcome {
        stdout: read(&out_path),
        status,
        stderr: read(&err_path),
    };
    let _ = std::fs::remove_dir_all(&dir);
    o
}

/// Run every case (a few at a time) and return, in table order, the names of the cases whose
/// stdout or status differ from the recording, each with a readable report.
pub fn failures(argv0: &str, locale: &str, cases: &[Case]) -> Vec<(String, String)> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8);
    let chunk = cases.len().div_ceil(threads).max(1);
    let mut out: Vec<(usize, String, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .chunks(chunk)
            .enumerate()
            .map(|(ci, part)| {
                s.spawn(move || {
                    let mut v = Vec::new();
                    for (i, c) in part.iter().enumerate() {
                        let o = run_ours(argv0, &c.script, locale);
                        if o.stdout != c.stdout || o.status != c.status {
                            v.push((
                                ci * chunk + i,
                                c.name.clone(),
                                format!(
                                    "--- {}\nscript: {}\nexpected ({}): {:?}\n     got ({}): {:?}\nstderr: {}",
                                    c.name, c.script, c.status, c.stdout, o.status, o.stdout, o.stderr
                                ),
                            ));
                        }
                    }
                    v
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("case runner thread"))
            .collect()
    });
    out.sort_by_key(|f| f.0);
    out.into_iter().map(|(_, n, r)| (n, r)).collect()
}
