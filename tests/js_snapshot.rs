//! The JavaScript runtime runs from a pre-initialised snapshot: every execution must still be a
//! fresh, isolated instance with its own environment, arguments, working directory and randomness.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use wasmbox::config::Settings;
use wasmbox::engine::Entry;
use wasmbox::exec::{Executor, RunRequest};
use wasmbox::runtimes::Language;
use wasmbox::sandbox::SandboxFs;

fn js(code: &str) -> RunRequest {
    RunRequest::new(Language::JavaScript, code, Duration::from_secs(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_executions_are_fresh_and_isolated() {
    common::ensure_runtimes();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::from_env();
    settings.data_dir = dir.path().to_path_buf();
    let exec = Executor::new(&settings).expect("executor");
    let invocation = exec
        .runtimes()
        .invocation(Language::JavaScript, "1")
        .expect("invocation");
    assert_eq!(
        invocation.entry,
        Entry::Export("wasmbox_run".into()),
        "JS should run from its snapshot"
    );

    let a = SandboxFs::create(dir.path().join("a")).expect("fs a");
    let b = SandboxFs::create(dir.path().join("b")).expect("fs b");
    let env_a = BTreeMap::from([("WHO".to_string(), "a".to_string())]);
    let env_b = BTreeMap::new();

    // Globals set by one execution are gone in the next.
    let first = exec
        .run(
            &a,
            &env_a,
            js("globalThis.leak = 42; console.log(process.env.WHO, typeof leak)"),
        )
        .await
        .expect("run");
    assert_eq!(first.stdout, "a number\n", "{first:?}");
    let second = exec
        .run(&b, &env_b, js("console.log(process.env.WHO, typeof leak)"))
        .await
        .expect("run");
    assert_eq!(second.stdout, "undefined undefined\n", "{second:?}");

    // Files: each execution sees its own sandbox tree only.
    let write = exec
        .run(
            &a,
            &env_a,
            js("require('fs').writeFileSync('/workspace/only-a.txt', 'x'); console.log('ok')"),
        )
        .await
        .expect("run");
    assert_eq!(write.stdout, "ok\n", "{write:?}");
    let look = exec
        .run(
            &b,
            &env_b,
            js("console.log(require('fs').existsSync('/workspace/only-a.txt'))"),
        )
        .await
        .expect("run");
    assert_eq!(look.stdout, "false\n", "{look:?}");

    // Working directory and Math.random are per execution.
    let mut request = js("console.log(process.cwd(), Math.random())");
    request.workdir = Some("/tmp/p".into());
    let one = exec.run(&a, &env_a, request.clone()).await.expect("run");
    let two = exec.run(&a, &env_a, request).await.expect("run");
    assert!(one.stdout.starts_with("/tmp/p 0."), "{one:?}");
    assert_ne!(
        one.stdout, two.stdout,
        "Math.random repeated across executions"
    );

    // Exit statuses and uncaught errors behave as with the command module.
    let exit = exec
        .run(&a, &env_a, js("process.exit(7)"))
        .await
        .expect("run");
    assert_eq!(exit.exit_code, 7);
    let thrown = exec
        .run(&a, &env_a, js("throw new Error('boom')"))
        .await
        .expect("run");
    assert_eq!(thrown.exit_code, 1);
    assert!(thrown.stderr.contains("boom"), "{thrown:?}");
    let module = exec
        .run(
            &a,
            &env_a,
            js("import * as os from 'qjs:os'; console.log(typeof os.getcwd)"),
        )
        .await
        .expect("run");
    assert_eq!(module.stdout, "function\n", "{module:?}");
}
