//! Go through the real server over HTTP (`/execute` with `language: "go"`) and the CLI
//! (`wasmbox run -l go`, `.go` files): the toolchain compiles inside the sandbox, programs see
//! the sandbox like other languages, and every limit holds.

mod api_common;
mod common;

use std::time::Instant;

use reqwest::Method;
use serde_json::{json, Value};

use api_common::{stdout, Api, Sbx, ServerProcess};

const KEY: &str = "go-test-key";

struct Fixture {
    _server: ServerProcess,
    api: Api,
    sbx: Sbx,
    _data: tempfile::TempDir,
}

/// Compiles the toolchain's modules to machine code once (a minute on a fresh machine) before
/// the tests' servers start, so they do not each do it at the same time.
fn warm_toolchain() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let data = tempfile::tempdir().expect("tempdir");
        let (report, out) = common::run_json(data.path(), &["-l", "go", "println()"]);
        assert_eq!(report["success"], true, "{report} {out:?}");
    });
}

/// A server whose executions are capped at 128 MiB (the toolchain's stages still get 512).
fn start() -> Fixture {
    common::ensure_runtimes();
    warm_toolchain();
    let data = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::start(
        data.path(),
        &["--api-key", KEY],
        &[("WASMBOX_MEMORY_MB", "128")],
    );
    let api = Api::new(&server.url, KEY);
    let sbx = api.create_default();
    Fixture {
        _server: server,
        api,
        sbx,
        _data: data,
    }
}

fn go(f: &Fixture, code: &str, extra: Value) -> Value {
    let mut body = json!({ "language": "go", "code": code, "timeout": 60 });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    f.api.execute(&f.sbx, body)
}

fn stderr(result: &Value) -> &str {
    result["stderr"].as_str().unwrap_or_default()
}

#[test]
fn programs_run_with_the_sandbox_files_env_and_workdir() {
    let f = start();

    let hello = go(
        &f,
        "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"Hello, World!\")\n}\n",
        json!({}),
    );
    assert_eq!(stdout(&hello), "Hello, World!\n", "{hello}");
    assert_eq!(hello["success"], true, "{hello}");
    assert_eq!(hello["language"], "go", "{hello}");

    let env = go(
        &f,
        r#"package main

import (
	"fmt"
	"os"
)

func main() {
	wd, _ := os.Getwd()
	fmt.Println(os.Getenv("GREETING"), os.Getenv("HOME"), wd)
}
"#,
        json!({ "env": { "GREETING": "hola" }, "workdir": "/workspace/sub" }),
    );
    assert_eq!(stdout(&env), "hola /workspace /workspace/sub\n", "{env}");

    let write = go(
        &f,
        r#"package main

import (
	"fmt"
	"os"
)

func main() {
	if err := os.WriteFile("/workspace/from-go.txt", []byte("written by go\n"), 0o644); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	data, _ := os.ReadFile("from-go.txt")
	fmt.Print(string(data))
}
"#,
        json!({}),
    );
    assert_eq!(stdout(&write), "written by go\n", "{write}");
    // Another language sees the file: it is in the sandbox, not in a build folder.
    let read = f.api.python(
        &f.sbx,
        "print(open('/workspace/from-go.txt').read(), end='')",
    );
    assert_eq!(stdout(&read), "written by go\n", "{read}");

    let concurrent = go(
        &f,
        r#"package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
)

type Result struct {
	Worker int `json:"worker"`
	Square int `json:"square"`
}

func main() {
	jobs := make(chan int)
	results := make(chan Result)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				results <- Result{Worker: n, Square: n * n}
			}
		}()
	}
	go func() {
		for i := 1; i <= 5; i++ {
			jobs <- i
		}
		close(jobs)
	}()
	go func() { wg.Wait(); close(results) }()
	var all []Result
	for r := range results {
		all = append(all, r)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Worker < all[j].Worker })
	out, _ := json.Marshal(all)
	fmt.Println(string(out))
}
"#,
        json!({}),
    );
    assert_eq!(
        stdout(&concurrent),
        "[{\"worker\":1,\"square\":1},{\"worker\":2,\"square\":4},{\"worker\":3,\"square\":9},\
         {\"worker\":4,\"square\":16},{\"worker\":5,\"square\":25}]\n",
        "{concurrent}"
    );
}

#[test]
fn build_errors_are_failed_results_with_the_compilers_message() {
    let f = start();
    let broken = go(
        &f,
        "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(undefinedName)\n}\n",
        json!({}),
    );
    assert_eq!(broken["success"], false, "{broken}");
    assert_eq!(broken["exit_code"], 2, "{broken}");
    assert_eq!(stdout(&broken), "", "{broken}");
    assert!(
        stderr(&broken).contains("main.go:6:14: undefined: undefinedName"),
        "{broken}"
    );

    let third_party = go(
        &f,
        "package main\n\nimport \"github.com/x/y\"\n\nfunc main() { y.Z() }\n",
        json!({}),
    );
    assert_eq!(third_party["success"], false, "{third_party}");
    assert!(
        stderr(&third_party).contains("github.com/x/y"),
        "{third_party}"
    );

    let library = go(&f, "package lib\n\nfunc F() {}\n", json!({}));
    assert_eq!(library["exit_code"], 2, "{library}");
    assert!(stderr(&library).contains("package main"), "{library}");

    // A snippet is wrapped into func main, with fmt imported for it; lines stay the user's.
    let snippet = go(&f, "x := 6 * 7\nfmt.Println(x)\n", json!({}));
    assert_eq!(stdout(&snippet), "42\n", "{snippet}");
    let snippet_error = go(&f, "x := 1\ny := 2\nfmt.Println(x)\n", json!({}));
    assert!(
        stderr(&snippet_error).contains("main.go:2:1: declared and not used: y"),
        "{snippet_error}"
    );
}

#[test]
fn time_memory_and_the_outside_world_are_fenced() {
    let f = start();
    for code in [
        "package main\n\nfunc main() {\n\tfor {\n\t}\n}\n",
        "package main\n\nimport \"time\"\n\nfunc main() {\n\ttime.Sleep(time.Hour)\n}\n",
    ] {
        let started = Instant::now();
        let result = go(&f, code, json!({ "timeout": 3 }));
        assert_eq!(result["timed_out"], true, "{result}");
        assert_eq!(result["exit_code"], 124, "{result}");
        assert!(started.elapsed().as_secs() < 30, "{result}");
    }

    let bomb = go(
        &f,
        r#"package main

import "fmt"

func main() {
	var keep [][]byte
	for i := 0; ; i++ {
		keep = append(keep, make([]byte, 16<<20))
		keep[i][0] = 1
		fmt.Println("allocated", (i+1)*16, "MiB")
	}
}
"#,
        json!({}),
    );
    assert_eq!(bomb["success"], false, "{bomb}");
    assert!(stderr(&bomb).contains("out of memory"), "{bomb}");
    let peak = bomb["resources"]["peak_memory_bytes"].as_u64().unwrap_or(0);
    assert!(peak <= 128 << 20, "{bomb}");

    let outside = go(
        &f,
        r#"package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
)

func main() {
	_, err := exec.Command("ls", "/").Output()
	fmt.Println("exec failed:", err != nil)
	_, err = net.Dial("tcp", "127.0.0.1:80")
	fmt.Println("dial failed:", err != nil)
	data, err := os.ReadFile("/etc/passwd")
	fmt.Println("passwd hidden:", err != nil || !strings.Contains(string(data), "root:"))
}
"#,
        json!({}),
    );
    assert_eq!(
        stdout(&outside),
        "exec failed: true\ndial failed: true\npasswd hidden: true\n",
        "{outside}"
    );
}

#[test]
fn a_repeated_source_skips_the_build() {
    let f = start();
    let code = format!(
        "package main\n\nimport \"fmt\"\n\nfunc main() {{ fmt.Println(\"run {}\") }}\n",
        std::process::id()
    );
    let first = go(&f, &code, json!({}));
    let again = go(&f, &code, json!({}));
    assert_eq!(stdout(&first), stdout(&again), "{again}");
    let (a, b) = (
        first["execution_time"].as_f64().unwrap_or(0.0),
        again["execution_time"].as_f64().unwrap_or(f64::MAX),
    );
    assert!(b < a / 2.0, "cached run took {b}s, first {a}s");

    // The runtime list and templates name go.
    let templates = f
        .api
        .send(f.api.control(Method::GET, "/v1/templates"))
        .expect(200);
    assert!(templates.to_string().contains("\"go\""), "{templates}");
}

/// The shell's `go`: `go run FILE.go` (or a folder's `main.go`) builds a file of the sandbox with
/// the same toolchain and runs it as a stage (arguments, env, pipes, the sandbox's files);
/// a compile error is the compiler's message and status 2; the rest of the `go` command is
/// refused by name.
#[test]
fn the_shell_runs_go_programs_from_the_sandbox_files() {
    let f = start();
    let command = |command: &str| -> Value {
        let body = json!({ "command": command, "timeout": 60, "working_dir": "/workspace" });
        let reply = f.api.send(
            f.api
                .agent(&f.sbx, Method::POST, "/commands/run")
                .json(&body),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    };
    let program = "package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n)\n\nfunc main() {\n\tfmt.Println(os.Args[1:], os.Getenv(\"WHO\"))\n\tos.WriteFile(\"made.txt\", []byte(\"by go\"), 0o644)\n}\n";
    let script = format!(
        "mkdir -p app && cd app && printf '%s' '{}' > main.go && \
         WHO=shell go run main.go a b | tr a-z A-Z && cat made.txt && echo && go run . && go version",
        program.replace('\'', "'\\''")
    );
    let run = command(&script);
    assert_eq!(run["exit_code"], 0, "{run}");
    assert_eq!(
        stdout(&run),
        "[A B] SHELL\nby go\n[] \ngo version go1.24.4 wasip1/wasm\n",
        "{run}"
    );

    let broken = command(
        "printf 'package main\\nfunc main() { x := }\\n' > bad.go; go run bad.go; echo status=$?",
    );
    assert_eq!(stdout(&broken), "status=2\n", "{broken}");
    assert!(
        stderr(&broken).starts_with("bad.go:2:"),
        "the compiler's message names the file: {broken}"
    );

    let refused = command("go build; echo status=$?; go run missing.go; echo status=$?");
    assert_eq!(stdout(&refused), "status=2\nstatus=1\n", "{refused}");
    assert!(
        stderr(&refused).contains("go build: not available"),
        "{refused}"
    );
    assert!(stderr(&refused).contains("missing.go"), "{refused}");
}

#[test]
fn cli_runs_go_files_and_language_flag() {
    let data = tempfile::tempdir().expect("tempdir");
    let file = data.path().join("main.go");
    std::fs::write(
        &file,
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"from a file\") }\n",
    )
    .expect("write main.go");
    let path = file.to_string_lossy().into_owned();
    let (report, out) = common::run_json(data.path(), &[&path]);
    assert_eq!(report["stdout"], "from a file\n", "{report} {out:?}");
    assert_eq!(report["language"], "go", "{report}");
    let (report, _) = common::run_json(data.path(), &["-l", "go", "fmt.Println(1 + 1)"]);
    assert_eq!(report["stdout"], "2\n", "{report}");
}
