//! The noisy-neighbour suite: each abuse a hostile tenant tried (issue "One tenant can never
//! crash, starve or fill the host") runs against the real server while a second tenant keeps
//! executing code. Every test asserts that the server stays up, that the victim never gets a
//! 5xx or a failed connection and stays within [`VICTIM_P99`], and that server memory and disk
//! stay within the configured budgets.

mod api_common;
mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use api_common::{stdout, Api, Sbx, ServerProcess};

const KEY: &str = "tenancy-key";
/// The victim's 99th-percentile latency bound while a neighbour misbehaves (2 cores shared with
/// the attacker; an idle `print(1)` takes ~2 ms).
const VICTIM_P99: Duration = Duration::from_secs(2);

/// A second tenant executing `print(n)` in its own sandbox until stopped.
struct Victim {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<(u16, Duration, String)>>,
}

impl Victim {
    fn start(api: &Api) -> Self {
        let sbx = api.create_default();
        let api = api.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut n = 0u64;
            while !flag.load(Ordering::SeqCst) {
                n += 1;
                let started = Instant::now();
                let sent = api
                    .agent(&sbx, Method::POST, "/execute")
                    .json(&json!({ "code": format!("print({n})"), "timeout": 30 }))
                    .send();
                let (status, body) = match sent {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        (status, response.text().unwrap_or_default())
                    }
                    Err(e) => (0, format!("request failed: {e}")),
                };
                if status == 200 {
                    let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    if stdout(&parsed) != format!("{n}\n") {
                        samples.push((599, started.elapsed(), format!("wrong output: {body}")));
                        continue;
                    }
                }
                samples.push((status, started.elapsed(), body));
                std::thread::sleep(Duration::from_millis(20));
            }
            samples
        });
        Self { stop, handle }
    }

    /// Stops the victim and asserts it was served well throughout; returns its p99.
    fn finish(self, what: &str) -> Duration {
        self.stop.store(true, Ordering::SeqCst);
        let samples = self.handle.join().expect("victim thread");
        assert!(
            samples.len() >= 3,
            "{what}: the victim ran only {} requests",
            samples.len()
        );
        for (status, _, body) in &samples {
            assert_eq!(*status, 200, "{what}: the victim got {status}: {body}");
        }
        let mut latencies: Vec<Duration> = samples.iter().map(|s| s.1).collect();
        latencies.sort();
        let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
        eprintln!(
            "{what}: victim {} requests, p50 {:?}, p99 {p99:?}",
            latencies.len(),
            latencies[latencies.len() / 2]
        );
        assert!(
            p99 <= VICTIM_P99,
            "{what}: victim p99 {p99:?} > {VICTIM_P99:?}"
        );
        p99
    }
}

/// A temporary data directory removed without recursion (tests leave deep trees behind when
/// they fail, and `TempDir`'s recursive removal would overflow the stack on them).
struct DataDir(Option<tempfile::TempDir>);

impl DataDir {
    fn new() -> Self {
        Self(Some(tempfile::tempdir().expect("tempdir")))
    }

    fn path(&self) -> &Path {
        self.0
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let path = dir.keep();
            let _ = wasmbox::sandbox::remove_tree(&path);
        }
    }
}

fn start(data: &Path, args: &[&str], envs: &[(&str, &str)]) -> (ServerProcess, Api) {
    common::ensure_runtimes();
    let mut all = vec!["--api-key", KEY];
    all.extend_from_slice(args);
    let server = ServerProcess::start(data, &all, envs);
    let api = Api::new(&server.url, KEY);
    (server, api)
}

/// `sbx` as reached through `api` (which may be a restarted server on another port).
fn through(api: &Api, sbx: &Sbx) -> Sbx {
    Sbx {
        id: sbx.id.clone(),
        token: sbx.token.clone(),
        host: format!("{}/sandboxes/{}", api.base, sbx.id),
        info: Value::Null,
    }
}

fn post(api: &Api, sbx: &Sbx, path: &str, body: Value) -> api_common::Reply {
    api.send(api.agent(sbx, Method::POST, path).json(&body))
}

/// The execution result, asserting a 200.
fn run(api: &Api, sbx: &Sbx, language: &str, code: &str, timeout: u64) -> Value {
    post(
        api,
        sbx,
        "/execute",
        json!({ "language": language, "code": code, "timeout": timeout }),
    )
    .expect(200)
}

fn assert_alive(server: &mut ServerProcess, api: &Api) {
    assert!(server.is_running(), "the server died:\n{}", server.log());
    api.send(api.anon(Method::GET, "/health")).expect(200);
}

/// Waits up to `limit` for `done`.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    done()
}

fn dir_is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none())
}

/// Python that builds a chain of `depth` nested directories under `/workspace`, relative to
/// descriptors (the path would be too long to name).
fn deep_tree_code(depth: u32) -> String {
    format!(
        "import os\nfd = os.open('/workspace', os.O_RDONLY)\nfor i in range({depth}):\n    os.mkdir('d', dir_fd=fd)\n    nfd = os.open('d', os.O_RDONLY, dir_fd=fd)\n    os.close(fd)\n    fd = nfd\nprint('built')\n"
    )
}

#[test]
fn deep_trees_are_deleted_and_reaped_without_crashing() {
    let data = DataDir::new();
    let (mut server, api) = start(data.path(), &[], &[]);
    let victim = Victim::start(&api);
    let deleted = api.create_default();
    let expiring = api.create_default();
    for sbx in [&deleted, &expiring] {
        let r = run(&api, sbx, "python", &deep_tree_code(25_000), 120);
        assert_eq!(stdout(&r), "built\n", "{r}");
    }
    // One is deleted, the other left to the expiry reaper.
    api.send(
        api.control(
            Method::PUT,
            &format!("/v1/sandboxes/{}/timeout", expiring.id),
        )
        .json(&json!({ "timeout_seconds": 1 })),
    )
    .expect(200);
    api.delete(&deleted);
    let sandboxes = data.path().join("sandboxes");
    let trash = data.path().join("trash");
    assert!(
        !sandboxes.join(&deleted.id).exists(),
        "DELETE moves the tree out at once"
    );
    assert!(
        eventually(Duration::from_secs(60), || {
            !sandboxes.join(&expiring.id).exists() && dir_is_empty(&trash)
        }),
        "both trees are removed from disk (trash: {:?})",
        std::fs::read_dir(&trash).map(|d| d.count())
    );
    assert_alive(&mut server, &api);
    victim.finish("deep trees");
}

#[test]
fn pipelines_never_overfill_the_instance_pool() {
    let data = DataDir::new();
    // 32 slots, 8 per sandbox; children may use 28.
    let (mut server, api) = start(
        data.path(),
        &["--queue-wait", "2"],
        &[("WASMBOX_MAX_INSTANCES", "32")],
    );
    let victim = Victim::start(&api);
    let long = vec!["sleep 6"; 31].join(" | ");
    let short = ["sleep 6"; 7].join(" | ");
    let one = api.create_default();
    let many: Vec<Sbx> = (0..5).map(|_| api.create_default()).collect();
    let mut attacks = Vec::new();
    // The reported attack: five 31-stage pipelines in one sandbox; then pipelines that fit a
    // sandbox's share in five sandboxes (40 stages against 28 slots for children).
    for (sbx, line) in std::iter::repeat_n((&one, &long), 5).chain(many.iter().map(|s| (s, &short)))
    {
        let (api, sbx, line) = (api.clone(), through(&api, sbx), line.clone());
        attacks.push(std::thread::spawn(move || {
            post(
                &api,
                &sbx,
                "/commands/run",
                json!({ "command": "bash", "args": ["-c", line], "timeout": 30 }),
            )
        }));
    }
    let mut refused = 0;
    for attack in attacks {
        let reply = attack.join().expect("attack thread");
        assert!(
            reply.status < 500,
            "an attacker got {}: {}",
            reply.status,
            reply.body
        );
        if reply.status == 429
            || reply.body["stderr"]
                .as_str()
                .is_some_and(|e| e.contains("resource temporarily unavailable"))
        {
            refused += 1;
        }
    }
    assert!(
        refused >= 4,
        "pipelines beyond the pool were refused ({refused})"
    );
    assert_alive(&mut server, &api);
    assert!(
        !server.log().contains("concurrent limit"),
        "{}",
        server.log()
    );
    victim.finish("pipelines");
}

#[test]
fn open_files_are_capped_and_connections_still_accepted() {
    let data = DataDir::new();
    common::ensure_runtimes();
    // 3,000 descriptors: 2,048 kept for the server, 952 for all guests together.
    let server =
        ServerProcess::start_with_fd_limit(data.path(), &["--api-key", KEY], &[], Some(3000));
    let mut server = server;
    let api = Api::new(&server.url, KEY);
    let victim = Victim::start(&api);
    let hog = "fs = []\ntry:\n    while True:\n        fs.append(open(f'/tmp/f{len(fs)}', 'w'))\nexcept OSError as e:\n    import errno\n    print(len(fs), errno.errorcode[e.errno])\nimport time\ntime.sleep(3)\n";
    let attackers: Vec<_> = (0..6)
        .map(|_| {
            let api = api.clone();
            let sbx = api.create_default();
            std::thread::spawn(move || run(&api, &sbx, "python", hog, 60))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    // While the guests hold every descriptor they may, new connections are still served.
    for _ in 0..50 {
        let fresh = Api::new(&server.url, KEY);
        fresh.send(fresh.anon(Method::GET, "/health")).expect(200);
    }
    let mut total = 0;
    for attacker in attackers {
        let r = attacker.join().expect("attacker");
        let out = stdout(&r).trim().to_string();
        let (count, errno) = out.split_once(' ').expect("count and errno");
        let count: u64 = count.parse().expect("count");
        assert_eq!(errno, "EMFILE", "{r}");
        assert!(count <= 256, "per-execution cap: {count}");
        total += count;
    }
    assert!(total <= 952, "process-wide guest budget: {total}");
    assert_alive(&mut server, &api);
    victim.finish("open files");
}

#[test]
fn memory_caps_of_live_instances_stay_within_the_budget() {
    let data = DataDir::new();
    // 256 MiB per instance, 1.5 GiB for all: six instances' worth.
    let (mut server, api) = start(
        data.path(),
        &["--queue-wait", "2"],
        &[
            ("WASMBOX_MEMORY_MB", "256"),
            ("WASMBOX_MEMORY_BUDGET_MB", "1536"),
        ],
    );
    let baseline = server.rss();
    let victim = Victim::start(&api);
    let stage = "python3 -c 'x = bytearray(200 << 20); import time; time.sleep(3); print(len(x))'";
    let pipeline = [stage; 12].join(" | ");
    let small = [stage; 3].join(" | ");
    let attackers: Vec<_> = [pipeline.clone(), small.clone(), small]
        .into_iter()
        .map(|line| {
            let api = api.clone();
            let sbx = api.create_default();
            std::thread::spawn(move || {
                post(
                    &api,
                    &sbx,
                    "/commands/run",
                    json!({ "command": line, "timeout": 60 }),
                )
            })
        })
        .collect();
    let mut peak = 0;
    let sampling = Instant::now();
    while sampling.elapsed() < Duration::from_secs(5) {
        peak = peak.max(server.rss());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut twelve_refused = false;
    for attacker in attackers {
        let reply = attacker.join().expect("attacker");
        assert!(reply.status < 500, "{}", reply.body);
        if reply.body["stderr"]
            .as_str()
            .is_some_and(|e| e.contains("resource temporarily unavailable"))
        {
            twelve_refused = true;
        }
    }
    assert!(
        twelve_refused,
        "a 12 × 256 MiB pipeline does not fit a 1.5 GiB budget"
    );
    let budget = 1536u64 << 20;
    eprintln!(
        "server RSS baseline {} MiB, peak {} MiB",
        baseline >> 20,
        peak >> 20
    );
    assert!(
        peak <= baseline + budget,
        "server RSS {} MiB exceeds baseline {} MiB + budget",
        peak >> 20,
        baseline >> 20
    );
    assert_alive(&mut server, &api);
    victim.finish("memory");
}

#[test]
fn sparse_files_are_refused_or_streamed_not_expanded() {
    let data = DataDir::new();
    let (mut server, api) = start(data.path(), &[], &[]);
    let victim = Victim::start(&api);
    let sbx = api.create_default();
    let r = run(
        &api,
        &sbx,
        "python",
        "f = open('/workspace/sparse', 'wb'); f.truncate(1 << 30); f.close(); print('ok')",
        30,
    );
    assert_eq!(stdout(&r), "ok\n", "{r}");
    let baseline = server.rss();
    let read = api.send(api.agent(&sbx, Method::GET, "/files/read?path=/workspace/sparse"));
    assert_eq!(read.status, 413, "{}", read.body);
    assert_eq!(read.body["code"], "FILE_TOO_LARGE");
    assert!(read.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("/files/download")));
    // The download streams all of it while the server's memory stays flat.
    let mut response = api
        .agent(&sbx, Method::GET, "/files/download?path=/workspace/sparse")
        .send()
        .expect("download");
    assert_eq!(response.status(), 200);
    assert_eq!(response.content_length(), Some(1 << 30));
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut peak = 0;
    loop {
        let n = std::io::Read::read(&mut response, &mut buf).expect("read body");
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|b| *b == 0));
        total += n as u64;
        if total % (64 << 20) < n as u64 {
            peak = peak.max(server.rss());
        }
    }
    assert_eq!(total, 1 << 30);
    eprintln!(
        "RSS baseline {} MiB, peak while streaming {} MiB",
        baseline >> 20,
        peak >> 20
    );
    assert!(peak < baseline + (128 << 20), "the download was buffered");
    assert_alive(&mut server, &api);
    victim.finish("sparse file");
}

#[test]
fn disk_quota_stops_writers_with_enospc() {
    let data = DataDir::new();
    let (mut server, api) = start(data.path(), &[], &[("WASMBOX_DISK_QUOTA_MB", "64")]);
    let victim = Victim::start(&api);
    let sbx = api.create_default();
    let writer = "n = 0\ntry:\n    with open('/workspace/zeros', 'wb') as f:\n        while True:\n            f.write(bytes(1 << 20))\n            n += 1\nexcept OSError as e:\n    import errno\n    print(n, errno.errorcode[e.errno])\n";
    let r = run(&api, &sbx, "python", writer, 60);
    let out = stdout(&r).trim().to_string();
    let (mib, errno) = out.split_once(' ').expect("count and errno");
    assert_eq!(errno, "ENOSPC", "{r}");
    let mib: u64 = mib.parse().expect("count");
    assert!(
        (55..=64).contains(&mib),
        "wrote {mib} MiB against a 64 MiB quota"
    );
    assert!(
        r["stderr"]
            .as_str()
            .is_some_and(|e| e.contains("disk quota of 64 MiB")),
        "{r}"
    );
    // The shell's redirections are charged too.
    let shell = post(
        &api,
        &sbx,
        "/commands/run",
        json!({ "command": "yes > /workspace/y; echo status $?", "timeout": 30 }),
    )
    .expect(200);
    assert!(stdout(&shell).contains("status 1"), "{shell}");
    // So are the file API's writes.
    let big = "x".repeat(8 << 20);
    let write = post(
        &api,
        &sbx,
        "/files/write",
        json!({ "path": "/workspace/big.txt", "content": big }),
    );
    assert_eq!(write.status, 507, "{}", write.body);
    assert_eq!(write.body["code"], "STORAGE_FULL");
    let used =
        wasmbox::sandbox::disk_usage(&data.path().join("sandboxes").join(&sbx.id).join("fs"))
            .expect("usage");
    assert!(used <= (64 << 20) + (1 << 20), "{} bytes on disk", used);
    // Deleting frees the quota.
    let freed = run(&api, &sbx, "python", "import os; os.remove('/workspace/zeros'); os.remove('/workspace/y'); open('/workspace/ok', 'w').write('x' * 1000); print('ok')", 30);
    assert_eq!(stdout(&freed), "ok\n", "{freed}");
    assert_alive(&mut server, &api);
    victim.finish("disk quota");
}

#[test]
fn replaced_system_directories_heal_and_no_host_path_leaks() {
    let data = DataDir::new();
    let (mut server, mut api) = start(data.path(), &[], &[]);
    let mut sbx = api.create_default();
    let host_path = data.path().to_string_lossy().to_string();
    let r = run(
        &api,
        &sbx,
        "python",
        "import shutil\nshutil.rmtree('/tmp'); open('/tmp', 'w').write('x')\nshutil.rmtree('/workspace'); open('/workspace', 'w').write('y')\nprint('broken')",
        30,
    );
    assert_eq!(stdout(&r), "broken\n", "{r}");
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let r = run(
            &api,
            &sbx,
            "python",
            "import os; print(os.getcwd(), os.path.isdir('/tmp'))",
            30,
        );
        assert_eq!(stdout(&r), "/workspace True\n", "{r}");
        bodies.push(r.to_string());
        let list = api.send(api.agent(&sbx, Method::GET, "/files/list?path=/tmp"));
        assert_eq!(list.status, 200, "{}", list.body);
        bodies.push(list.body.to_string());
        let shell = post(
            &api,
            &sbx,
            "/commands/run",
            json!({ "command": "ls /workspace /tmp" }),
        );
        assert_eq!(shell.status, 200, "{}", shell.body);
        bodies.push(shell.body.to_string());
        // And across a restart.
        server.stop();
        (server, api) = start(data.path(), &[], &[]);
        sbx = through(&api, &sbx);
    }
    for body in bodies {
        assert!(!body.contains(&host_path), "a host path leaked: {body}");
    }
}

#[test]
fn delete_stops_running_code_and_removes_every_file() {
    let data = DataDir::new();
    let (mut server, api) = start(data.path(), &[], &[]);
    let victim = Victim::start(&api);
    let sbx = api.create_default();
    let writer = {
        let (api, sbx) = (api.clone(), through(&api, &sbx));
        std::thread::spawn(move || {
            let started = Instant::now();
            let reply = post(
                &api,
                &sbx,
                "/execute",
                json!({ "code": "i = 0\nwhile True:\n    open(f'/workspace/f{i % 5000}', 'w').write('x' * 1000)\n    i += 1\n", "timeout": 120 }),
            );
            (reply, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let deleting = Instant::now();
    api.delete(&sbx);
    assert!(
        deleting.elapsed() < Duration::from_secs(2),
        "DELETE is quick"
    );
    let (reply, took) = writer.join().expect("writer");
    assert!(
        took < Duration::from_secs(10),
        "the deleted sandbox's code was stopped ({took:?})"
    );
    assert_eq!(reply.status, 404, "{}", reply.body);
    let trash = data.path().join("trash");
    assert!(!data.path().join("sandboxes").join(&sbx.id).exists());
    assert!(
        eventually(Duration::from_secs(20), || dir_is_empty(&trash)),
        "files removed"
    );
    assert_alive(&mut server, &api);
    victim.finish("delete while writing");

    // kill -9 right after a DELETE of a big tree: the restarted server finishes the job.
    let big = api.create_default();
    let r = run(&api, &big, "python", "import os\nfor d in range(100):\n    os.mkdir(f'/workspace/d{d}')\n    for f in range(200):\n        open(f'/workspace/d{d}/f{f}', 'w').write('x')\nprint('made')", 120);
    assert_eq!(stdout(&r), "made\n", "{r}");
    api.delete(&big);
    server.kill9();
    let (mut server, api) = start(data.path(), &[], &[]);
    let gone = api.send(api.control(Method::GET, &format!("/v1/sandboxes/{}", big.id)));
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert!(!data.path().join("sandboxes").join(&big.id).exists());
    assert!(
        eventually(Duration::from_secs(30), || dir_is_empty(&trash)),
        "leftovers purged after restart"
    );
    assert_alive(&mut server, &api);
}

#[test]
fn file_replacement_survives_kill_9() {
    let data = DataDir::new();
    let old = "o".repeat(1 << 20);
    let new = "n".repeat(48 << 20);
    let (mut server, mut api) = start(data.path(), &[], &[]);
    let mut sbx = api.create_default();
    post(
        &api,
        &sbx,
        "/files/write",
        json!({ "path": "/workspace/data.txt", "content": old }),
    )
    .expect(200);
    let file = data
        .path()
        .join("sandboxes")
        .join(&sbx.id)
        .join("fs/workspace/data.txt");
    for delay_ms in [150u64, 300, 450, 600, 800] {
        let writer = {
            let (api, sbx) = (api.clone(), through(&api, &sbx));
            let body = json!({ "path": "/workspace/data.txt", "content": new });
            std::thread::spawn(move || {
                api.agent(&sbx, Method::POST, "/files/write")
                    .json(&body)
                    .send()
                    .map(|r| r.status().as_u16())
            })
        };
        std::thread::sleep(Duration::from_millis(delay_ms));
        server.kill9();
        let acknowledged = writer.join().expect("writer").is_ok_and(|s| s == 200);
        let content = std::fs::read(&file).expect("the file still exists");
        if acknowledged {
            assert_eq!(
                content.len(),
                new.len(),
                "an acknowledged write is kept whole"
            );
        }
        assert!(
            content == old.as_bytes() || content == new.as_bytes(),
            "after kill -9 at {delay_ms} ms the file is neither old nor new ({} bytes)",
            content.len()
        );
        // Start again from the old content.
        std::fs::write(&file, &old).expect("reset");
        (server, api) = start(data.path(), &[], &[]);
        sbx = through(&api, &sbx);
    }
    assert_alive(&mut server, &api);
}
