//! Issue 16 acceptance: a 3-node cluster of real `wasmbox serve` processes on loopback, driven
//! by the official Python SDK (`tests/clients/cluster.py`): 300 sandboxes created through one
//! node spread over all three, listed in full from any node, used (python, javascript, bash,
//! files, kill) through every node; `kill -9` of one node makes only its sandboxes answer
//! 503 `NODE_UNAVAILABLE` while creates go to the others; after a restart on the same data
//! directory its sandboxes, files, env and kernel state are back. A WebSocket to the wrong node is forwarded.
//!
//! Runs inside an `unshare -n` loopback-only network namespace like the other client tests
//! (root, util-linux, iproute2, python3 with venv).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn three_node_cluster_through_the_official_python_client() {
    common::ensure_runtimes();
    let dir = common::clients_dir();
    std::fs::create_dir_all(&dir).expect("clients dir");
    let python = common::python_client(&dir);
    let data = tempfile::tempdir().expect("tempdir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/cluster_in_netns.sh");
    let out = Command::new("unshare")
        .args(["-n", "sh"])
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_wasmbox"))
        .arg(data.path())
        .arg(&python)
        .env_remove("WASMBOX_API_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("unshare (util-linux) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "cluster run failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("cluster: all checks passed"), "{stdout}");
    for check in [
        "ok: 300 creates spread over all nodes",
        "ok: list from n3 returns all 300 in 5 pages",
        "ok: WebSocket forwarded n1 -> n2",
        "ok: n3 sandbox via n2 is 503 NODE_UNAVAILABLE",
        "ok: creates succeed on healthy nodes",
        "ok: n3 file after restart via n1",
        "ok: n3 env after restart via n2",
        "ok: n3 kernel state after restart via n3",
    ] {
        assert!(stdout.contains(check), "missing '{check}':\n{stdout}");
    }
}
