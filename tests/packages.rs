//! `pip install` in a sandbox's shell, through the real server over HTTP: packages come from
//! the operator's index only, are verified and unpacked inside the sandbox, and later Python
//! runs of that sandbox import them. A local index (static files served by `python3 -m
//! http.server`) holds crafted wheels for the refusals; one test uses the registry this
//! machine reaches, found through pip's own default.

mod api_common;
mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use api_common::{stdout, Api, Sbx, ServerProcess};

const KEY: &str = "packages-test-key";

/// A static package index on loopback: `simple/<name>/index.html` holds the JSON page.
struct LocalIndex {
    child: Child,
    url: String,
    _root: tempfile::TempDir,
}

impl Drop for LocalIndex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A wheel with these files (name → contents) plus its metadata and RECORD.
fn wheel(name: &str, version: &str, files: &[(&str, &str)], requires: &[&str]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    let info = format!("{name}-{version}.dist-info");
    let mut record = String::new();
    let mut metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    for r in requires {
        metadata.push_str(&format!("Requires-Dist: {r}\n"));
    }
    let mut all: Vec<(String, String)> = files
        .iter()
        .map(|(n, c)| (n.to_string(), c.to_string()))
        .collect();
    all.push((format!("{info}/METADATA"), metadata));
    all.push((
        format!("{info}/WHEEL"),
        "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n".into(),
    ));
    for (n, _) in &all {
        record.push_str(&format!("{n},,\n"));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    all.push((format!("{info}/RECORD"), record));
    for (n, c) in all {
        zip.start_file(n, options).expect("zip entry");
        zip.write_all(c.as_bytes()).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl LocalIndex {
    fn start() -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let publish = |project: &str, filename: &str, bytes: &[u8], digest: &str| {
            let files = root.path().join("files");
            std::fs::create_dir_all(&files).expect("files dir");
            std::fs::write(files.join(filename), bytes).expect("write wheel");
            let page = json!({
                "meta": {"api-version": "1.0"},
                "name": project,
                "files": [{
                    "filename": filename,
                    "url": format!("../../files/{filename}"),
                    "hashes": {"sha256": digest},
                }],
            });
            let dir = root.path().join("simple").join(project);
            std::fs::create_dir_all(&dir).expect("project dir");
            std::fs::write(dir.join("index.html"), page.to_string()).expect("write page");
        };
        let good = wheel(
            "goodpkg",
            "1.0",
            &[(
                "goodpkg/__init__.py",
                "from depmod import BASE\nVALUE = BASE + 1\n",
            )],
            &["depmod>=1", "neverwanted; sys_platform == 'win32'"],
        );
        publish(
            "goodpkg",
            "goodpkg-1.0-py3-none-any.whl",
            &good,
            &sha256(&good),
        );
        let dep = wheel("depmod", "1.2", &[("depmod.py", "BASE = 41\n")], &[]);
        publish("depmod", "depmod-1.2-py3-none-any.whl", &dep, &sha256(&dep));
        let evil = wheel(
            "evil",
            "1.0",
            &[
                ("evil.py", "X = 1\n"),
                ("../../../../escape.py", "raise SystemExit\n"),
            ],
            &[],
        );
        publish("evil", "evil-1.0-py3-none-any.whl", &evil, &sha256(&evil));
        let tampered = wheel("badhash", "1.0", &[("badhash.py", "X = 1\n")], &[]);
        publish(
            "badhash",
            "badhash-1.0-py3-none-any.whl",
            &tampered,
            &sha256(b"something else"),
        );
        let native = wheel("native", "1.0", &[("native.py", "X = 1\n")], &[]);
        publish(
            "native",
            "native-1.0-cp313-cp313-manylinux_2_17_x86_64.whl",
            &native,
            &sha256(&native),
        );

        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m http.server");
        let url = format!("http://127.0.0.1:{port}/simple/");
        let until = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "the local index did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url,
            _root: root,
        }
    }
}

struct Fixture {
    _server: ServerProcess,
    api: Api,
    data: tempfile::TempDir,
}

fn serve(extra: &[&str]) -> Fixture {
    common::ensure_runtimes();
    let data = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["--api-key", KEY];
    args.extend_from_slice(extra);
    let server = ServerProcess::start(data.path(), &args, &[]);
    let api = Api::new(&server.url, KEY);
    Fixture {
        _server: server,
        api,
        data,
    }
}

fn shell(f: &Fixture, sbx: &Sbx, command: &str) -> Value {
    let body = json!({ "command": command, "timeout": 120, "working_dir": "/workspace" });
    let reply = f
        .api
        .send(f.api.agent(sbx, Method::POST, "/commands/run").json(&body));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn stderr(result: &Value) -> &str {
    result["stderr"].as_str().unwrap_or_default()
}

/// Every file named `name` under `dir`.
fn find_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.extend(find_named(&path, name));
        } else if entry.file_name() == name {
            found.push(path);
        }
    }
    found
}

#[test]
fn installed_packages_are_imported_by_later_runs_and_bad_wheels_are_refused() {
    let index = LocalIndex::start();
    let f = serve(&["--package-index", &index.url]);
    let sbx = f.api.create_default();

    let install = shell(&f, &sbx, "pip install goodpkg && pip list");
    assert_eq!(install["exit_code"], 0, "{install}");
    assert!(
        stdout(&install).starts_with("Successfully installed goodpkg-1.0 depmod-1.2\n"),
        "{install}"
    );
    assert!(stdout(&install).contains("\ndepmod  1.2\n"), "{install}");
    assert!(!stdout(&install).contains("neverwanted"), "{install}");

    // A later /execute (and python3 in the shell) imports it; another sandbox does not see it.
    let run = f.api.python(&sbx, "import goodpkg; print(goodpkg.VALUE)");
    assert_eq!(stdout(&run), "42\n", "{run}");
    let in_shell = shell(
        &f,
        &sbx,
        "python3 -c 'import goodpkg; print(goodpkg.VALUE)'",
    );
    assert_eq!(stdout(&in_shell), "42\n", "{in_shell}");
    let other = f.api.create_default();
    let isolated = f.api.python(&other, "import goodpkg");
    assert_eq!(isolated["success"], false, "{isolated}");

    // Refusals: each names the package and the reason, and writes nothing.
    let refusals = [
        ("pip install evil", "not a safe wheel"),
        ("pip install badhash", "sha256 does not match"),
        ("pip install native", "native has native code"),
        ("pip install nosuchpkg", "no package named 'nosuchpkg'"),
        (
            "pip install 'evil @ https://example.invalid/evil.whl'",
            "not URLs",
        ),
        (
            "pip install --index-url http://127.0.0.1:9/ goodpkg",
            "operator's index",
        ),
        (
            "pip install 'badhash>5'",
            "no pure-Python version of badhash matches '>5'",
        ),
        (
            "pip install 'depmod<1'",
            "depmod 1.2 is installed, but '<1' is wanted",
        ),
    ];
    for (command, message) in refusals {
        let refused = shell(&f, &sbx, command);
        assert_ne!(refused["exit_code"], 0, "{command}: {refused}");
        assert!(stderr(&refused).contains(message), "{command}: {refused}");
    }
    assert!(find_named(f.data.path(), "escape.py").is_empty());
    assert!(find_named(f.data.path(), "evil.py").is_empty());
    let freeze = shell(&f, &sbx, "pip freeze");
    assert_eq!(stdout(&freeze), "depmod==1.2\ngoodpkg==1.0\n", "{freeze}");

    // Uninstall removes the package's files; the import fails again.
    let removed = shell(
        &f,
        &sbx,
        "pip uninstall -y goodpkg && ls .local/lib/python3/site-packages | grep -v __pycache__",
    );
    assert_eq!(
        stdout(&removed),
        "Successfully uninstalled goodpkg-1.0\ndepmod-1.2.dist-info\ndepmod.py\n",
        "{removed}"
    );

    // A link in the sandbox (guests cannot make one that leaves it; plant it from the host, as
    // an unpacked upload might) does not send the host's writes outside the sandbox.
    let marker = shell(&f, &other, "touch marker-for-packages-test && echo ok");
    assert_eq!(stdout(&marker), "ok\n", "{marker}");
    let workspace = find_named(f.data.path(), "marker-for-packages-test")
        .pop()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .expect("the sandbox's workspace on the host");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(workspace.join(".local/lib")).expect("mkdir");
    std::os::unix::fs::symlink(outside.path(), workspace.join(".local/lib/python3"))
        .expect("symlink");
    let planted = shell(&f, &other, "pip install goodpkg; echo status=$?");
    assert!(stdout(&planted).ends_with("status=1\n"), "{planted}");
    assert!(stderr(&planted).contains("cannot use"), "{planted}");
    assert_eq!(
        std::fs::read_dir(outside.path()).map(|d| d.count()).ok(),
        Some(0),
        "the host wrote through the link: {planted}"
    );
}

#[test]
fn without_an_index_installation_is_disabled() {
    let f = serve(&[]);
    let sbx = f.api.create_default();
    let refused = shell(
        &f,
        &sbx,
        "pip install tabulate; echo status=$?; python3 -m pip list",
    );
    assert!(stdout(&refused).starts_with("status=1\n"), "{refused}");
    assert!(
        stderr(&refused).contains("package installation is disabled"),
        "{refused}"
    );
}

/// The registry this machine reaches (pip's default index, asked from pip itself), as in the
/// seed's `commands/run` example.
#[test]
fn a_package_from_the_registry_is_installed_and_imported() {
    let output = Command::new("python3")
        .args([
            "-c",
            "from pip._internal.models.index import PyPI; print(PyPI.simple_url)",
        ])
        .output()
        .expect("python3 with pip");
    assert!(output.status.success(), "pip is needed to find its index");
    let index = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let f = serve(&["--package-index", &index]);
    let sbx = f.api.create_default();
    let install = shell(&f, &sbx, "pip install tabulate");
    assert_eq!(install["exit_code"], 0, "{install}");
    assert!(
        stdout(&install).contains("Successfully installed tabulate-"),
        "{install}"
    );
    let run = f.api.python(
        &sbx,
        "from tabulate import tabulate\nprint(tabulate([[1, 2]], headers=['a', 'b'], tablefmt='plain'))",
    );
    assert_eq!(stdout(&run), "  a    b\n  1    2\n", "{run}");
}
