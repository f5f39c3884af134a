//! Kernels over real HTTP: state kept between cells (python and javascript), IPython-style
//! display of the last expression, rich outputs, timeouts that interrupt without losing the
//! kernel, hibernation across pause/resume and server restarts (graceful and `kill -9`),
//! isolation between sandboxes, and the error answers for bad input.

mod api_common;
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use api_common::{stdout, Api, Sbx, ServerProcess};

const KEY: &str = "kernel-key";

fn server(data: &Path) -> (ServerProcess, Api) {
    server_with(data, &[])
}

fn server_with(data: &Path, envs: &[(&str, &str)]) -> (ServerProcess, Api) {
    common::ensure_runtimes();
    let server = ServerProcess::start(data, &["--api-key", KEY], envs);
    let api = Api::new(&server.url, KEY);
    (server, api)
}

/// Runs `code` as a cell (`POST /execute/ipython`), expecting 200.
fn cell(api: &Api, sbx: &Sbx, language: &str, code: &str) -> Value {
    cell_with(
        api,
        sbx,
        json!({ "code": code, "language": language, "timeout": 30 }),
    )
}

fn cell_with(api: &Api, sbx: &Sbx, body: Value) -> Value {
    api.send(api.agent(sbx, Method::POST, "/execute/ipython").json(&body))
        .expect(200)
}

fn py(api: &Api, sbx: &Sbx, code: &str) -> Value {
    cell(api, sbx, "python", code)
}

fn assert_ok(result: &Value) {
    assert_eq!(result["success"], true, "cell failed: {result}");
}

#[test]
fn python_state_persists_between_cells_and_the_last_expression_is_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();

    let first = py(
        &api,
        &sbx,
        "x = 41\nimport statistics as st\ndef double(v):\n    return 2 * v",
    );
    assert_ok(&first);
    assert!(
        first.get("result").is_none(),
        "an assignment shows nothing: {first}"
    );
    assert!(
        first.get("rich_outputs").is_none(),
        "no rich output: {first}"
    );

    let second = py(&api, &sbx, "x + 1");
    assert_ok(&second);
    assert_eq!(second["result"], "42", "{second}");
    assert_eq!(stdout(&second), "", "the value is a result, not stdout");

    let third = py(&api, &sbx, "print(st.mean([1, 2, 3]))\ndouble(x)");
    assert_ok(&third);
    assert_eq!(stdout(&third), "2\n");
    assert_eq!(third["result"], "82");

    // `/execute` keeps its fresh-instance semantics: the kernel's x is not there.
    let script = api.python(&sbx, "print('x' in globals())");
    assert_eq!(stdout(&script), "False\n");

    // An exception fails the cell, with a traceback, and the kernel lives on.
    let failed = py(&api, &sbx, "1 / 0");
    assert_eq!(failed["success"], false);
    assert!(
        failed["stderr"]
            .as_str()
            .unwrap()
            .contains("ZeroDivisionError"),
        "{failed}"
    );
    assert_eq!(py(&api, &sbx, "x")["result"], "41");
}

#[test]
fn javascript_state_persists_between_cells() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();

    assert_ok(&cell(
        &api,
        &sbx,
        "javascript",
        "var x = 41; function inc(v) { return v + 1 }",
    ));
    let second = cell(&api, &sbx, "javascript", "inc(x)");
    assert_ok(&second);
    assert_eq!(second["result"], "42", "{second}");

    let object = cell(
        &api,
        &sbx,
        "javascript",
        "console.log('hi'); ({a: [1, 2], b: 'c'})",
    );
    assert_ok(&object);
    assert_eq!(stdout(&object), "hi\n");
    assert_eq!(object["json"], json!({"a": [1, 2], "b": "c"}), "{object}");
    let outputs = object["rich_outputs"].as_array().expect("rich_outputs");
    assert_eq!(outputs[0]["type"], "application/json");

    let thrown = cell(&api, &sbx, "javascript", "throw new Error('boom')");
    assert_eq!(thrown["success"], false);
    assert!(
        thrown["stderr"].as_str().unwrap().contains("boom"),
        "{thrown}"
    );
    assert_eq!(cell(&api, &sbx, "javascript", "x")["result"], "41");
}

#[test]
fn rich_outputs_come_back_as_the_clients_read_them() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();

    let define = "import base64\n\
        class Table:\n    def _repr_html_(self):\n        return '<table><tr><td>1</td></tr></table>'\n\
        class Dot:\n    def _repr_png_(self):\n        return base64.b64decode('iVBORw0KGgo=')\n\
        class Doc:\n    def _repr_json_(self):\n        return {'k': [1, 2]}\n";
    assert_ok(&py(&api, &sbx, define));

    let html = py(&api, &sbx, "Table()");
    assert_ok(&html);
    assert_eq!(html["html"], "<table><tr><td>1</td></tr></table>", "{html}");
    let outputs = html["rich_outputs"].as_array().expect("rich_outputs");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["type"], "text/html");
    assert_eq!(outputs[0]["output_type"], "execute_result");

    let png = py(&api, &sbx, "Dot()");
    assert_eq!(png["png"], "iVBORw0KGgo=", "{png}");

    // display() shows several objects in order, and works in script mode (`/execute`) too.
    let shown = py(
        &api,
        &sbx,
        "display(Doc())\nprint('between')\ndisplay(Table())",
    );
    assert_ok(&shown);
    assert_eq!(shown["json"], json!({"k": [1, 2]}));
    assert_eq!(shown["html"], "<table><tr><td>1</td></tr></table>");
    let kinds: Vec<&str> = shown["rich_outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["application/json", "text/html"]);
    assert_eq!(stdout(&shown), "between\n");

    let script = api.python(
        &sbx,
        "class H:\n    def _repr_html_(self):\n        return '<b>x</b>'\ndisplay(H())",
    );
    assert_eq!(script["html"], "<b>x</b>", "{script}");
    let plain = api.python(&sbx, "print(1)");
    for key in ["png", "html", "json", "dataframe", "result", "rich_outputs"] {
        assert!(
            plain.get(key).is_none(),
            "{key} without rich output: {plain}"
        );
    }
}

#[test]
fn a_timeout_interrupts_the_cell_and_the_kernel_keeps_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();
    assert_ok(&py(&api, &sbx, "kept = 'still here'"));

    for code in ["while True: pass", "import time\ntime.sleep(100)"] {
        let started = Instant::now();
        let result = cell_with(&api, &sbx, json!({ "code": code, "timeout": 2 }));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(4),
            "{code}: took {took:?}"
        );
        assert_eq!(result["success"], false);
        assert_eq!(result["timed_out"], true, "{result}");
        let stderr = result["stderr"].as_str().unwrap();
        assert!(stderr.contains("KeyboardInterrupt"), "{code}: {stderr}");
        let after = py(&api, &sbx, "kept");
        assert_eq!(after["result"], "'still here'", "{code}: {after}");
    }

    // JavaScript: an uncatchable interrupt, and the kernel lives on.
    assert_ok(&cell(&api, &sbx, "javascript", "var kept = 7"));
    let started = Instant::now();
    let spin = cell_with(
        &api,
        &sbx,
        json!({ "code": "try { for (;;) {} } catch (e) { 'caught' }", "language": "javascript", "timeout": 2 }),
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(spin["timed_out"], true, "{spin}");
    assert!(
        spin.get("result").is_none(),
        "the interrupt is not catchable: {spin}"
    );
    assert_eq!(cell(&api, &sbx, "javascript", "kept")["result"], "7");
}

#[test]
fn kernels_survive_pause_resume_and_server_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let sbx_id;
    {
        let (_server, api) = server(dir.path());
        let sbx = api.create_default();
        sbx_id = sbx.id.clone();
        assert_ok(&py(&api, &sbx, "x = 'before pause'"));
        assert_ok(&cell(&api, &sbx, "javascript", "var y = 'js state'"));

        let path = format!("/v1/sandboxes/{}", sbx.id);
        api.send(api.control(Method::POST, &format!("{path}/pause")))
            .expect(200);
        let sessions = api
            .send(api.agent(&sbx, Method::GET, "/jupyter/sessions"))
            .expect(200);
        let states: Vec<&str> = sessions["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["hibernated", "hibernated"], "{sessions}");
        // A paused sandbox refuses cells as it refuses executions.
        let refused = api.send(
            api.agent(&sbx, Method::POST, "/execute/ipython")
                .json(&json!({ "code": "x" })),
        );
        assert_eq!(refused.status, 409, "{}", refused.body);
        api.send(api.control(Method::POST, &format!("{path}/resume")))
            .expect(200);
        assert_eq!(py(&api, &sbx, "x")["result"], "'before pause'");
        assert_ok(&py(&api, &sbx, "x = 'before graceful restart'"));
    } // SIGTERM: graceful shutdown

    let mut server2;
    {
        let (server, api) = server(dir.path());
        server2 = server;
        let sbx = api.reconnect(&sbx_id);
        assert_eq!(py(&api, &sbx, "x")["result"], "'before graceful restart'");
        assert_eq!(cell(&api, &sbx, "javascript", "y")["result"], "js state");
        assert_ok(&py(&api, &sbx, "x = 'before kill -9'"));
        server2.kill9();
    }
    let (_server, api) = server(dir.path());
    let sbx = api.reconnect(&sbx_id);
    let after = py(&api, &sbx, "x");
    assert_eq!(after["result"], "'before kill -9'", "{after}");
}

/// Appended image records are compacted into a whole image when they outgrow it; what a
/// compacted image (plus the records after it) restores must be the latest state.
#[test]
fn compacted_images_restore_the_latest_state_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let sbx_id;
    let image_of = |id: &str| {
        dir.path()
            .join("sandboxes")
            .join(id)
            .join("kernels")
            .join("python.kernel")
    };
    {
        let (mut server, api) = server(dir.path());
        let sbx = api.create_default();
        sbx_id = sbx.id.clone();
        assert_ok(&py(&api, &sbx, "xs = []"));
        let mut sizes = Vec::new();
        for i in 0..60 {
            // 64 KiB of fresh bytes per cell, some of it overwriting what earlier cells wrote.
            let code = format!("xs.append(bytes([{i}]) * 65536)\nif len(xs) > 8: xs[{i} % 8] = bytes([{i}]) * 65536");
            assert_ok(&py(&api, &sbx, &code));
            sizes.push(std::fs::metadata(image_of(&sbx_id)).unwrap().len());
        }
        assert!(
            sizes.windows(2).any(|w| w[1] < w[0]),
            "the image was never compacted: {sizes:?}"
        );
        server.kill9();
    }
    let (_server, api) = server(dir.path());
    let sbx = api.reconnect(&sbx_id);
    let check = py(
        &api,
        &sbx,
        "(len(xs), [x[0] for x in xs[:8]], xs[-1][0], sum(len(x) for x in xs))",
    );
    let expected_head: Vec<String> = (0..8)
        .map(|slot| {
            // The last cell i (from 8 on) with i % 8 == slot rewrote xs[slot].
            (8..60).filter(|i| i % 8 == slot).max().unwrap().to_string()
        })
        .collect();
    assert_eq!(
        check["result"],
        format!("(60, [{}], 59, {})", expected_head.join(", "), 60 * 65536),
        "{check}"
    );
}

/// A sandbox handle for an existing id (a fresh token from the restarted server).
#[test]
fn a_corrupt_image_restarts_the_kernel_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let sbx_id;
    {
        let (_server, api) = server(dir.path());
        let sbx = api.create_default();
        sbx_id = sbx.id.clone();
        assert_ok(&py(&api, &sbx, "x = 1"));
    }
    let image = dir
        .path()
        .join("sandboxes")
        .join(&sbx_id)
        .join("kernels")
        .join("python.kernel");
    // A record cut short at the end (a crash while appending) is ignored: the state before it
    // is restored.
    let whole = std::fs::read(&image).expect("the image was written");
    let mut torn = whole.clone();
    torn.extend_from_slice(&[0x52, 0x43, 0x52, 0x44, 1, 2, 3]);
    std::fs::write(&image, &torn).unwrap();
    {
        let (_server, api) = server(dir.path());
        let sbx = api.reconnect(&sbx_id);
        let result = py(&api, &sbx, "x")["result"].clone();
        assert_eq!(result, "1", "a torn tail loses nothing acknowledged");
    }

    let mut bytes = std::fs::read(&image).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&image, bytes).unwrap();

    let (_server, api) = server(dir.path());
    let sbx = api.reconnect(&sbx_id);
    let result = py(&api, &sbx, "'x' in globals()");
    assert_eq!(result["result"], "False", "{result}");
    let stderr = result["stderr"].as_str().unwrap();
    assert!(stderr.contains("kernel was restarted"), "{stderr}");
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert_eq!(py(&api, &sbx, "1 + 1")["result"], "2");
}

#[test]
fn sandboxes_never_see_each_others_kernel_state() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let a = api.create_default();
    let b = api.create_default();
    assert_ok(&py(&api, &a, "secret = 'a-only'"));
    assert_ok(&cell(&api, &a, "javascript", "var secret = 'a-js'"));
    let seen = py(&api, &b, "'secret' in globals()");
    assert_eq!(seen["result"], "False");
    let seen = cell(&api, &b, "javascript", "typeof secret");
    assert_eq!(seen["result"], "undefined");
    assert_eq!(py(&api, &a, "secret")["result"], "'a-only'");
}

#[test]
fn kernel_routes_answer_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();

    let sessions = api
        .send(api.agent(&sbx, Method::GET, "/jupyter/sessions"))
        .expect(200);
    assert_eq!(sessions["sessions"], json!([]));
    assert_ok(&py(&api, &sbx, "x = 1"));
    let sessions = api
        .send(api.agent(&sbx, Method::GET, "/jupyter/sessions"))
        .expect(200);
    let python = &sessions["sessions"][0];
    assert_eq!(python["id"], "python");
    assert_eq!(python["state"], "idle");
    assert_eq!(python["execution_count"], 1);
    assert!(
        python["memory_bytes"].as_u64().unwrap() > 1 << 20,
        "{python}"
    );

    let unknown = api.send(api.agent(&sbx, Method::POST, "/kernels/nope/restart"));
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["code"], "KERNEL_NOT_FOUND");
    let none_yet = api.send(api.agent(&sbx, Method::DELETE, "/kernels/javascript"));
    assert_eq!(none_yet.status, 404);

    let malformed = api.send(
        api.agent(&sbx, Method::POST, "/execute/ipython")
            .json(&json!({ "code": 5 })),
    );
    assert_eq!(malformed.status, 400);
    assert!(
        malformed.body.to_string().contains("code"),
        "{}",
        malformed.body
    );
    let bash = api.send(
        api.agent(&sbx, Method::POST, "/execute/ipython")
            .json(&json!({ "code": "echo", "language": "bash" })),
    );
    assert_eq!(bash.status, 400, "{}", bash.body);

    // Restart forgets the variables; delete removes the kernel.
    api.send(api.agent(&sbx, Method::POST, "/kernels/python/restart"))
        .expect(200);
    assert_eq!(py(&api, &sbx, "'x' in globals()")["result"], "False");
    let deleted = api.send(api.agent(&sbx, Method::DELETE, "/kernels/python"));
    assert_eq!(deleted.status, 204);
    let sessions = api
        .send(api.agent(&sbx, Method::GET, "/jupyter/sessions"))
        .expect(200);
    assert_eq!(sessions["sessions"], json!([]));
}

/// Server memory with 200 live python kernels (each holding a variable), as proportional set
/// size: the kernels' memory images are one copy-on-write file mapped 200 times, which plain
/// RSS counts 200 times (~15 MiB each) although it is shared. Documented in the README.
const KERNELS_PSS_BUDGET: u64 = 600 << 20;

/// The process's proportional set size (shared pages divided among their mappings).
fn pss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib << 10)
}

#[test]
fn two_hundred_live_kernels_stay_within_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (server, api) = server_with(
        dir.path(),
        &[
            ("WASMBOX_MAX_INSTANCES", "256"),
            ("WASMBOX_MAX_KERNELS", "220"),
        ],
    );
    let before = pss(server.pid());
    let sandboxes: Vec<Sbx> = (0..200).map(|_| api.create_default()).collect();
    let started = Instant::now();
    for (n, sbx) in sandboxes.iter().enumerate() {
        assert_ok(&py(&api, sbx, &format!("value = {n} * 2")));
    }
    let took = started.elapsed();
    let after = pss(server.pid());
    for (n, sbx) in sandboxes.iter().enumerate().step_by(20) {
        let result = py(&api, sbx, "value");
        assert_eq!(result["result"], (n * 2).to_string());
        let sessions = api
            .send(api.agent(sbx, Method::GET, "/jupyter/sessions"))
            .expect(200);
        assert_eq!(sessions["sessions"][0]["state"], "idle", "{sessions}");
    }
    println!(
        "200 kernels: started with a first cell in {:.1} s; server PSS {} MiB -> {} MiB ({} KiB \
         per kernel; RSS {} MiB)",
        took.as_secs_f64(),
        before >> 20,
        after >> 20,
        (after.saturating_sub(before) / 200) >> 10,
        server.rss() >> 20
    );
    assert!(after < KERNELS_PSS_BUDGET, "PSS {} MiB", after >> 20);
}

#[test]
fn the_repl_keeps_a_sandbox_kernel_across_commands_and_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::wasmbox(dir.path())
        .args(["-o", "json", "sandbox", "create"])
        .output()
        .unwrap();
    let created: Value = serde_json::from_slice(&out.stdout).expect("sandbox JSON");
    let id = created["id"].as_str().expect("id").to_string();
    let repl = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = common::wasmbox(dir.path())
            .args(["repl", "--sandbox", &id])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let first = repl(&["-c", "x = 41", "-c", "def f(v):\n    return v + 1"], "");
    assert!(first.status.success(), "{first:?}");
    // A new process: the kernel comes back from its image.
    let second = repl(&[], "y = f(x)\nfor i in range(2):\n    print(i)\n\ny\n");
    assert!(second.status.success(), "{second:?}");
    assert_eq!(String::from_utf8_lossy(&second.stdout), "0\n1\n42\n");
    let failed = repl(&["-c", "1 / 0"], "");
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("ZeroDivisionError"));

    // The server finds the same kernel.
    let (_server, api) = server(dir.path());
    let sbx = api.reconnect(&id);
    assert_eq!(py(&api, &sbx, "y")["result"], "42");
}

#[test]
fn past_the_live_kernel_cap_the_least_recently_used_kernel_is_hibernated() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server_with(dir.path(), &[("WASMBOX_MAX_KERNELS", "2")]);
    let sandboxes: Vec<Sbx> = (0..3).map(|_| api.create_default()).collect();
    for (n, sbx) in sandboxes.iter().enumerate() {
        assert_ok(&py(&api, sbx, &format!("n = {n}")));
    }
    let state = |sbx: &Sbx| kernel_state(&api, sbx);
    assert_eq!(state(&sandboxes[0]), "hibernated");
    assert_eq!(state(&sandboxes[1]), "idle");
    assert_eq!(state(&sandboxes[2]), "idle");
    // Its next cell restores it (and hibernates the next least recently used).
    assert_eq!(py(&api, &sandboxes[0], "n")["result"], "0");
    assert_eq!(state(&sandboxes[0]), "idle");
    assert_eq!(state(&sandboxes[1]), "hibernated");
    assert_eq!(py(&api, &sandboxes[1], "n")["result"], "1");
}

/// The `state` of `sbx`'s first kernel as `/jupyter/sessions` lists it.
fn kernel_state(api: &Api, sbx: &Sbx) -> String {
    let sessions = api
        .send(api.agent(sbx, Method::GET, "/jupyter/sessions"))
        .expect(200);
    sessions["sessions"][0]["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn past_the_kernel_memory_cap_the_least_recently_used_kernel_is_hibernated() {
    let dir = tempfile::tempdir().unwrap();
    // A python kernel alone (~25 MiB of linear memory) is over a 1 MiB cap.
    let (_server, api) = server_with(dir.path(), &[("WASMBOX_KERNEL_MEMORY_MB", "1")]);
    let (a, b) = (api.create_default(), api.create_default());
    assert_ok(&py(&api, &a, "n = 'a'"));
    // Alone over the cap, a kernel stays live: there is nothing else to hibernate.
    assert_eq!(kernel_state(&api, &a), "idle");
    assert_ok(&py(&api, &b, "n = 'b'"));
    assert_eq!(kernel_state(&api, &a), "hibernated");
    assert_eq!(kernel_state(&api, &b), "idle");
    // Its next cell restores it, and the other goes.
    assert_eq!(py(&api, &a, "n")["result"], "'a'");
    assert_eq!(kernel_state(&api, &b), "hibernated");
    assert_eq!(py(&api, &b, "n")["result"], "'b'");
}

#[test]
fn under_memory_pressure_idle_kernels_are_hibernated_for_a_waiting_execution() {
    let dir = tempfile::tempdir().unwrap();
    // 100 MiB of host memory, 64 MiB reserved per execution; between cells a python kernel
    // holds its ~25 MiB of linear memory: with two idle kernels an execution does not fit
    // (50 + 64 > 100) until one of them is hibernated.
    let (_server, api) = server_with(
        dir.path(),
        &[
            ("WASMBOX_MEMORY_MB", "64"),
            ("WASMBOX_MEMORY_BUDGET_MB", "100"),
            ("WASMBOX_KERNEL_MEMORY_MB", "1000"),
        ],
    );
    let (a, b, c) = (
        api.create_default(),
        api.create_default(),
        api.create_default(),
    );
    assert_ok(&py(&api, &a, "n = 'a'"));
    assert_ok(&py(&api, &b, "n = 'b'"));
    assert_eq!(kernel_state(&api, &a), "idle");
    assert_eq!(kernel_state(&api, &b), "idle");
    let started = Instant::now();
    let reply = api
        .send(
            api.agent(&c, Method::POST, "/execute")
                .json(&json!({"code": "print('ran')", "timeout": 30})),
        )
        .expect(200);
    assert_eq!(reply["stdout"], "ran\n", "{reply}");
    // Well inside the 10 s queue wait: the waiting execution was let in by the hibernation,
    // not by a timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(kernel_state(&api, &a), "hibernated");
    assert_eq!(kernel_state(&api, &b), "idle");
    assert_eq!(py(&api, &a, "n")["result"], "'a'");
}

#[test]
fn stream_ipython_streams_a_cells_output_as_it_is_written() {
    use tungstenite::client::IntoClientRequest;
    use tungstenite::Message;

    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path());
    let sbx = api.create_default();
    assert_ok(&py(&api, &sbx, "n = 3"));

    let url = format!(
        "{}/stream/ipython",
        sbx.host.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {}", sbx.token).parse().unwrap(),
    );
    let (mut socket, _) = tungstenite::connect(request).expect("websocket handshake");
    let cell = json!({
        "type": "execute",
        "code": "import time\nfor i in range(n):\n    print(i, flush=True)\n    time.sleep(0.3)\nn * 2",
    });
    let started = Instant::now();
    socket.send(Message::text(cell.to_string())).unwrap();
    let mut frames: Vec<(Duration, Value)> = Vec::new();
    loop {
        let message = socket.read().expect("frame");
        let Message::Text(text) = message else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        let done = frame["type"] == "complete";
        frames.push((started.elapsed(), frame));
        if done {
            break;
        }
    }
    let kinds: Vec<&str> = frames
        .iter()
        .map(|(_, f)| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["stdout", "stdout", "stdout", "result", "complete"],
        "{frames:?}"
    );
    // The first line arrived while the cell was still sleeping, not with the result.
    let (first_at, first) = &frames[0];
    let (result_at, result) = &frames[3];
    assert_eq!(first["data"], "0\n");
    assert!(
        *result_at - *first_at >= Duration::from_millis(500),
        "{frames:?}"
    );
    assert_eq!(result["result"], "6");
    assert_eq!(frames[4].1["success"], true);

    // Rich outputs come as their own frames before the result.
    let html =
        json!({ "code": "class H:\n    def _repr_html_(self):\n        return '<i>h</i>'\nH()" });
    socket.send(Message::text(html.to_string())).unwrap();
    let mut kinds = Vec::new();
    loop {
        let Message::Text(text) = socket.read().unwrap() else {
            continue;
        };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] == "execute_result" {
            assert_eq!(frame["data"]["text/html"], "<i>h</i>");
        }
        kinds.push(frame["type"].as_str().unwrap().to_string());
        if frame["type"] == "complete" {
            break;
        }
    }
    assert_eq!(kinds, ["execute_result", "result", "complete"]);

    // The same socket takes another cell; a bad message gets an error frame.
    socket.send(Message::text("{\"code\": 1}")).unwrap();
    let error: Value = loop {
        if let Message::Text(text) = socket.read().unwrap() {
            break serde_json::from_str(&text).unwrap();
        }
    };
    assert_eq!(error["type"], "error", "{error}");
    socket.close(None).ok();
}

#[test]
fn an_image_built_from_many_cell_records_restores_the_exact_state() {
    let dir = tempfile::tempdir().unwrap();
    let sbx_id;
    let expected: i64 = (0..40i64).map(|i| i * i).sum();
    {
        let (mut server, api) = server(dir.path());
        let sbx = api.create_default();
        sbx_id = sbx.id.clone();
        assert_ok(&py(&api, &sbx, "data = []\nblob = bytearray(8_000_000)"));
        for i in 0..40 {
            // Each cell writes a new page of `blob`, and rewrites the one of six cells before:
            // a page that had stopped changing (and was write-protected again) changes again.
            let code = format!(
                "data.append({i} * {i})\nblob[{i} * 150_001] = {i} + 1\n\
                 if {i} >= 6: blob[({i} - 6) * 150_001] += 100\nlen(data)"
            );
            assert_eq!(py(&api, &sbx, &code)["result"], (i + 1).to_string());
            if i == 20 {
                // The memory grows after records started: the grown pages must be recorded.
                assert_ok(&py(&api, &sbx, "big = bytearray(24_000_000)\nbig[-1] = 7"));
            }
        }
        assert_ok(&cell(&api, &sbx, "javascript", "var total = 0"));
        for i in 0..20 {
            assert_ok(&cell(&api, &sbx, "javascript", &format!("total += {i}")));
        }
        server.kill9();
    }
    let (_server, api) = server(dir.path());
    let sbx = api.reconnect(&sbx_id);
    let check = "sum(data), [blob[i * 150_001] for i in (0, 17, 39)], sum(blob) + big[-1]";
    let result = py(&api, &sbx, check);
    let blob_sum: i64 = (1..=40).sum::<i64>() + 34 * 100 + 7;
    assert_eq!(
        result["result"],
        format!("({expected}, [101, 118, 40], {blob_sum})"),
        "{result}"
    );
    assert_eq!(cell(&api, &sbx, "javascript", "total")["result"], "190");
}

#[test]
fn idle_kernels_are_hibernated_and_come_back_on_the_next_cell() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server_with(dir.path(), &[("WASMBOX_KERNEL_IDLE_SECONDS", "1")]);
    let sbx = api.create_default();
    assert_ok(&py(&api, &sbx, "kept = 'idle'"));
    let state = || kernel_state(&api, &sbx);
    let started = Instant::now();
    while state() != "hibernated" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never hibernated"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(py(&api, &sbx, "kept")["result"], "'idle'");
    assert_eq!(state(), "idle");
}
