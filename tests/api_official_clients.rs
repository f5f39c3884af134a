//! The official HopX clients against wasmbox (issue 3 acceptance): `hopx-ai` (PyPI) and
//! `@hopx-ai/sdk` (npm) run the seed examples in `tests/clients/` with only the base URL and
//! API key configured.
//!
//! The clients are installed with pip and npm into `target/tmp/official-clients/` (reused by
//! later runs). The server and both scripts then run inside one `unshare -n` network namespace
//! that has only loopback, so nothing can reach the real service. Needs python3 with venv,
//! node and npm, `unshare` (util-linux) and `ip` (iproute2), and root for the namespace.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NODE_PACKAGE: &str = "@hopx-ai/sdk@0.5.1";

use common::{clients_dir, python_client, run};

/// An npm prefix with `@hopx-ai/sdk`; returns its `node_modules`.
fn node_client(dir: &Path) -> PathBuf {
    let prefix = dir.join("node");
    let modules = prefix.join("node_modules");
    let manifest = modules.join("@hopx-ai/sdk/package.json");
    let installed = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
        .is_some_and(|m| m["version"] == "0.5.1");
    if !installed {
        std::fs::create_dir_all(&prefix).expect("npm prefix");
        run(
            Command::new("npm")
                .args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    "--prefix",
                ])
                .arg(&prefix)
                .arg(NODE_PACKAGE),
            "npm install @hopx-ai/sdk",
        );
    }
    modules
}

#[test]
fn official_python_and_node_clients_work_against_wasmbox() {
    common::ensure_runtimes();
    let dir = clients_dir();
    std::fs::create_dir_all(&dir).expect("clients dir");
    let python = python_client(&dir);
    let node_modules = node_client(&dir);

    let data = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/run_in_netns.sh");
    let started = Instant::now();
    let mut child = Command::new("unshare")
        .args(["-n", "sh"])
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_wasmbox"))
        .arg(data.path())
        .arg(&python)
        .arg(&node_modules)
        .env_remove("WASMBOX_API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare (util-linux) must be installed");
    while child.try_wait().ok().flatten().is_none() && started.elapsed() < Duration::from_secs(600)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait().ok().flatten().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("client run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "{stdout}\n{stderr}\n(took {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "official clients failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("PYTHON CLIENT OK"), "{stdout}");
    assert!(stdout.contains("PYTHON ASYNC CLIENT OK"), "{stdout}");
    assert!(stdout.contains("NODE CLIENT OK"), "{stdout}");
    assert!(stdout.contains("PYTHON TLS CLIENT OK"), "{stdout}");
    check_compatibility_table(&stdout);
}

/// The `PUBLIC`/`COVERED <client> <name>…` lines the traced scripts print.
fn traced_names(stdout: &str, kind: &str, client: &str) -> BTreeSet<String> {
    let prefix = format!("{kind} {client} ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix) || *l == prefix.trim_end())
        .unwrap_or_else(|| panic!("no `{kind} {client}` line in the client output"));
    line.split_whitespace()
        .skip(2)
        .map(str::to_string)
        .collect()
}

/// The rows of the README table between `<!-- compatibility: NAME -->` and its end marker:
/// method → one mark per client column (`✓`, `✗` or `—`).
fn readme_table(name: &str) -> BTreeMap<String, Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = format!("<!-- compatibility: {name} -->");
    let body = readme
        .split_once(&start)
        .and_then(|(_, rest)| rest.split_once("<!-- /compatibility -->"))
        .unwrap_or_else(|| panic!("README has no compatibility table for {name}"))
        .0;
    body.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line
                .trim()
                .trim_matches('|')
                .split('|')
                .map(str::trim)
                .collect();
            let method = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
            Some((
                method.to_string(),
                cells[1..cells.len() - 1]
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
            ))
        })
        .collect()
}

/// Every ✓ of the README's compatibility tables was called through that client by its script,
/// and every public method the clients have is in the table.
fn check_compatibility_table(stdout: &str) {
    let tables = [
        ("hopx-ai", 0, "python"),
        ("hopx-ai", 1, "python-async"),
        ("@hopx-ai/sdk", 0, "node"),
    ];
    let mut problems = Vec::new();
    for (table, column, client) in tables {
        let rows = readme_table(table);
        let public = traced_names(stdout, "PUBLIC", client);
        let covered = traced_names(stdout, "COVERED", client);
        for method in &public {
            match rows.get(method).map(|marks| marks[column].as_str()) {
                None | Some("—") => problems.push(format!(
                    "{client}: public method `{method}` is missing from the README table"
                )),
                _ => {}
            }
        }
        for (method, marks) in &rows {
            match marks[column].as_str() {
                "✓" if !covered.contains(method) => problems.push(format!(
                    "{client}: `{method}` is marked ✓ but the client test never calls it"
                )),
                "✓" | "✗" if !public.contains(method) => problems.push(format!(
                    "{client}: `{method}` is in the table but the client has no such method"
                )),
                "✓" | "✗" | "—" => {}
                other => problems.push(format!("{client}: `{method}`: unknown mark {other:?}")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
