//! The pre-initialised CPython runtime: our CPython 3.13 reactor (`runtimes/python/`), snapshotted
//! after `wasmbox_init` by the engine (wasmtime-wizer), then instantiated fresh for every
//! execution and entered through `wasmbox_run`. The artifacts come from `wasmbox runtimes fetch`
//! (10-20 minutes the first time on 2 cores, then cached).

mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use wasmbox::config::Settings;
use wasmbox::engine::{Engine, Entry, ExecSpec, Limits, Mount, PreparedModule};
use wasmbox::exec::Executor;
use wasmbox::runtimes::Language;

struct Fixture {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    module: Arc<PreparedModule>,
    /// Read-only mounts the snapshot needs (support files, standard library), in order.
    mounts: Vec<Mount>,
    _executor: Executor,
}

/// The product's own path: the installed runtimes, the executor's engine, and the Python
/// invocation's snapshot recipe (made once and cached on disk).
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        common::ensure_runtimes();
        let executor = Executor::new(&Settings::from_env()).expect("executor");
        let invocation = executor
            .runtimes()
            .invocation(Language::Python, "")
            .expect("python invocation");
        assert_eq!(
            invocation.entry,
            Entry::Export("wasmbox_run".into()),
            "python should run from its pre-initialised snapshot"
        );
        let recipe = invocation.snapshot.clone().expect("snapshot recipe");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio");
        let engine = executor.engine().clone();
        let module = rt
            .block_on(engine.prepare_snapshot(&invocation.module, &recipe))
            .expect("python snapshot");
        let mut mounts = vec![executor.runtimes().support_mount()];
        mounts.extend(invocation.mounts);
        Fixture {
            rt,
            engine,
            module,
            mounts,
            _executor: executor,
        }
    })
}

struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

/// One execution in a fresh instance of the snapshot. `sandbox` is mounted read-write at
/// /workspace (and PWD=/workspace unless `env` says otherwise). The mounts are in a different
/// order than at snapshot time on purpose: the guest must re-read its preopens.
fn exec(argv: &[&str], env: &[(&str, &str)], sandbox: Option<&Path>, stdin: &str) -> Run {
    let fx = fixture();
    let mut vars: Vec<(String, String)> = Vec::new();
    if !env.iter().any(|(k, _)| *k == "PWD") {
        let pwd = if sandbox.is_some() { "/workspace" } else { "/" };
        vars.push(("PWD".into(), pwd.into()));
    }
    vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let mut mounts: Vec<Mount> = sandbox
        .map(|dir| Mount {
            host: dir.to_path_buf(),
            guest: "/workspace".into(),
            writable: true,
        })
        .into_iter()
        .collect();
    mounts.extend(fx.mounts.iter().rev().cloned());
    let spec = ExecSpec {
        entry: Entry::Export("wasmbox_run".into()),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        env: vars,
        mounts,
        stdin: stdin.as_bytes().to_vec(),
        limits: Limits {
            timeout: Duration::from_secs(30),
            ..Limits::default()
        },
        ..ExecSpec::default()
    };
    let result = fx
        .rt
        .block_on(fx.engine.execute(&fx.module, spec))
        .expect("execute");
    Run {
        status: result.exit_code,
        stdout: result.stdout,
        stderr: result.stderr,
    }
}

fn py(code: &str) -> Run {
    exec(&["python", "-c", code], &[], None, "")
}

#[track_caller]
fn ok(run: &Run) -> &str {
    assert_eq!(
        run.status, 0,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    &run.stdout
}

#[test]
fn prints_hello() {
    let run = py("print('hello')");
    assert_eq!(ok(&run), "hello\n");
    assert_eq!(run.stderr, "");
}

#[test]
fn executions_do_not_see_each_others_variables() {
    let first = py("x = 42\n\
         import builtins, sys, json\n\
         builtins.leaked = 1; sys.leaked = 2; json.leaked = 3\n\
         sys.path.append('/leak'); sys.modules['leakmod'] = sys\n\
         print('set', x)");
    assert_eq!(ok(&first), "set 42\n");
    let second = py("import builtins, sys, json\n\
         print('x' in globals(), hasattr(builtins, 'leaked'), hasattr(sys, 'leaked'),\n\
               hasattr(json, 'leaked'), '/leak' in sys.path, 'leakmod' in sys.modules)");
    assert_eq!(ok(&second), "False False False False False False\n");
}

#[test]
fn executions_do_not_see_each_others_files() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let write = exec(
        &[
            "python",
            "-c",
            "open('secret.txt', 'w').write('a'); import os; print(sorted(os.listdir('.')))",
        ],
        &[],
        Some(a.path()),
        "",
    );
    assert_eq!(ok(&write), "['secret.txt']\n");
    assert_eq!(
        std::fs::read_to_string(a.path().join("secret.txt")).unwrap(),
        "a"
    );
    let look = exec(
        &[
            "python",
            "-c",
            "import os; print(sorted(os.listdir('.')), os.path.exists('/workspace/secret.txt'))",
        ],
        &[],
        Some(b.path()),
        "",
    );
    assert_eq!(ok(&look), "[] False\n");
    assert!(!b.path().join("secret.txt").exists());
}

#[test]
fn environment_is_per_execution() {
    let code = "import os; print(os.environ.get('SECRET'), os.environ.get('MINE'), \
                os.getenv('MINE'), sorted(k for k in os.environ if k != 'PWD'))";
    let a = exec(&["python", "-c", code], &[("SECRET", "s3cret")], None, "");
    assert_eq!(ok(&a), "s3cret None None ['SECRET']\n");
    let b = exec(&["python", "-c", code], &[("MINE", "b")], None, "");
    assert_eq!(ok(&b), "None b b ['MINE']\n");
    let c = py(code);
    assert_eq!(ok(&c), "None None None []\n");
}

#[test]
fn random_differs_between_executions() {
    let code =
        "import random, os; print(random.random(), random.getrandbits(64), os.urandom(8).hex())";
    let a = py(code);
    let b = py(code);
    assert_ne!(ok(&a), ok(&b));
    let (a, b): (Vec<&str>, Vec<&str>) = (
        a.stdout.split_whitespace().collect(),
        b.stdout.split_whitespace().collect(),
    );
    assert_eq!(a.len(), 3);
    for i in 0..3 {
        assert_ne!(a[i], b[i], "field {i} repeats across executions");
    }
}

#[test]
fn argv_and_cwd_are_per_execution() {
    let dir = tempfile::tempdir().unwrap();
    let run = exec(
        &[
            "python",
            "-c",
            "import sys, os; print(sys.argv, os.getcwd())",
            "one",
            "two",
        ],
        &[],
        Some(dir.path()),
        "",
    );
    assert_eq!(ok(&run), "['-c', 'one', 'two'] /workspace\n");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let run = exec(
        &[
            "python",
            "-c",
            "import sys, os; print(sys.argv, os.getcwd())",
        ],
        &[("PWD", "/workspace/sub")],
        Some(dir.path()),
        "",
    );
    assert_eq!(ok(&run), "['-c'] /workspace/sub\n");
}

#[test]
fn runs_scripts_and_imports_from_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("helper.py"), "VALUE = 7\n").unwrap();
    std::fs::write(
        dir.path().join("main.py"),
        "import sys, helper\nprint(sys.argv, __name__, __file__, helper.VALUE)\n",
    )
    .unwrap();
    let run = exec(
        &["python", "/workspace/main.py", "arg"],
        &[],
        Some(dir.path()),
        "",
    );
    assert_eq!(
        ok(&run),
        "['/workspace/main.py', 'arg'] __main__ /workspace/main.py 7\n"
    );
    let run = exec(
        &["python", "-c", "import helper; print(helper.VALUE)"],
        &[],
        Some(dir.path()),
        "",
    );
    assert_eq!(ok(&run), "7\n");
    let run = exec(
        &["python", "/workspace/missing.py"],
        &[],
        Some(dir.path()),
        "",
    );
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("can't open file"), "{}", run.stderr);
}

#[test]
fn uncaught_exception_exits_1_with_a_traceback() {
    let run = py("def f():\n    return 1 / 0\nf()");
    assert_eq!(run.status, 1, "stderr: {}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with(
            "Traceback (most recent call last):\n  File \"<string>\", line 3, in <module>\n"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("ZeroDivisionError: division by zero"));
    assert!(!run.stderr.contains("_wasmbox"), "{}", run.stderr);
    let run = py("x = (");
    assert_eq!(run.status, 1);
    assert!(run.stderr.contains("SyntaxError"), "{}", run.stderr);
}

#[test]
fn sys_exit_sets_the_status() {
    assert_eq!(py("import sys; sys.exit(3)").status, 3);
    assert_eq!(py("import sys; print('out'); sys.exit(0)").status, 0);
    assert_eq!(py("exit(4)").status, 4);
    let run = py("import sys; sys.exit('bye')");
    assert_eq!(run.status, 1);
    assert_eq!(run.stderr, "bye\n");
    // atexit handlers run and output is flushed when the program ends by sys.exit.
    let run =
        py("import atexit, sys; atexit.register(print, 'atexit'); print('a', end=''); sys.exit(5)");
    assert_eq!(run.status, 5);
    assert_eq!(run.stdout, "aatexit\n");
}

#[test]
fn clocks_stdin_and_lazy_imports_work() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let run = exec(
        &[
            "python",
            "-c",
            "import time, email.message, sys; \
             print(time.time()); print(input()[::-1]); print(sys.version_info[:2])",
        ],
        &[],
        None,
        "olleh\n",
    );
    let out = ok(&run);
    let mut lines = out.lines();
    let guest: f64 = lines.next().unwrap().parse().unwrap();
    assert!(
        (guest - now).abs() < 120.0,
        "guest clock {guest}, host {now}"
    );
    assert_eq!(lines.next(), Some("hello"));
    assert_eq!(lines.next(), Some("(3, 13)"));
}

#[test]
fn common_modules_work() {
    let run = py("import asyncio, gzip, json, zipfile, io\n\
         async def job(i):\n    await asyncio.sleep(0.01)\n    return i\n\
         async def main():\n    return await asyncio.gather(*(job(i) for i in range(3)))\n\
         print(asyncio.run(main()))\n\
         print(gzip.decompress(gzip.compress(b'abc' * 100))[:6])\n\
         buf = io.BytesIO()\n\
         with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED) as z:\n    z.writestr('a.json', json.dumps({'k': [1, 2]}))\n\
         print(json.loads(zipfile.ZipFile(buf).read('a.json')))");
    assert_eq!(ok(&run), "[0, 1, 2]\nb'abcabc'\n{'k': [1, 2]}\n");
}
