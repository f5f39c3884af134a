//! The data runtime (`python-data`: numpy, pandas, matplotlib) over real HTTP, with `python` in
//! `code-interpreter` sandboxes routed to it (`WASMBOX_DATA_TEMPLATES`): numpy results, a plot
//! as a PNG rich output, a DataFrame as html + dataframe JSON (`display()` in `/execute`, the
//! last value of a kernel cell), fresh seeds per execution, and the limits (timeout, memory cap).

mod api_common;
mod common;

use std::path::Path;

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use api_common::{stdout, Api, ServerProcess};

const KEY: &str = "data-key";

fn server(data: &Path, envs: &[(&str, &str)]) -> (ServerProcess, Api) {
    common::ensure_runtimes();
    let mut all = vec![("WASMBOX_DATA_TEMPLATES", "code-interpreter")];
    all.extend_from_slice(envs);
    let server = ServerProcess::start(data, &["--api-key", KEY], &all);
    let api = Api::new(&server.url, KEY);
    (server, api)
}

/// (width, height) of a base64 PNG, after checking its magic bytes.
fn png_size(b64: &str) -> (u32, u32) {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64 png");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    (be(16), be(20))
}

#[test]
fn execute_runs_numpy_and_returns_plots_and_tables_as_rich_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path(), &[]);
    let sbx = api.create_default();

    let r = api.python(
        &sbx,
        "import numpy as np\nprint(np.arange(10).sum(), np.__version__)",
    );
    assert_eq!(r["success"], true, "{r}");
    assert!(stdout(&r).starts_with("45 2."), "{r}");
    assert_eq!(r["language"], "python-data");
    assert!(
        r.get("png").is_none() && r.get("rich_outputs").is_none(),
        "plain run: {r}"
    );

    // The cookbook's sine wave: plt.show() -> one image/png of the figure's size.
    let plot = api.python(
        &sbx,
        "import numpy as np, matplotlib.pyplot as plt\n\
         x = np.linspace(0, 2 * np.pi, 100)\n\
         plt.figure(figsize=(6, 4), dpi=100)\n\
         plt.plot(x, np.sin(x))\n\
         plt.show()\n",
    );
    assert_eq!(plot["success"], true, "{plot}");
    let png = plot["png"].as_str().expect("png");
    let (w, h) = png_size(png);
    assert!(
        (400..=650).contains(&w) && (250..=450).contains(&h),
        "{w}x{h}"
    );
    assert_eq!(plot["rich_outputs"][0]["type"], "image/png");

    // A figure left open at the end is shown too; display(df) gives html and dataframe JSON.
    let table = api.python(
        &sbx,
        "import pandas as pd, matplotlib.pyplot as plt\n\
         df = pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})\n\
         display(df)\n\
         plt.plot([1, 2, 3])\n",
    );
    assert_eq!(table["success"], true, "{table}");
    assert!(
        table["html"].as_str().unwrap_or("").contains("<table"),
        "{table}"
    );
    assert_eq!(table["dataframe"]["columns"], json!(["a", "b"]));
    assert_eq!(table["dataframe"]["data"], json!([[1, "x"], [2, "y"]]));
    assert!(table["png"].is_string(), "open figure: {table}");
    assert_eq!(table["rich_outputs"].as_array().map(Vec::len), Some(2));

    // Fresh per execution: seeds, and nothing left by the run before.
    let draw = "import numpy as np, random\nprint(np.random.rand(), random.random())";
    let a = stdout(&api.python(&sbx, draw)).to_string();
    let b = stdout(&api.python(&sbx, draw)).to_string();
    assert_ne!(a, b);
    let left = api.python(&sbx, "print('df' in globals())");
    assert_eq!(stdout(&left).trim(), "False");

    // Exit status and tracebacks as for python.
    let fail = api.python(&sbx, "import sys\nsys.exit(3)");
    assert_eq!(fail["exit_code"], 3, "{fail}");
    let err = api.python(&sbx, "1/0");
    assert_eq!(err["success"], false);
    assert!(err["stderr"]
        .as_str()
        .unwrap_or("")
        .contains("ZeroDivisionError"));

    // The plain template keeps the small CPython.
    let plain = api.create(json!({ "template_name": "python" }));
    let v = api.python(&plain, "import sys\nprint(sys.version_info[:2])");
    assert_eq!(stdout(&v).trim(), "(3, 13)", "{v}");
}

#[test]
fn kernel_cells_keep_state_and_show_dataframes() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path(), &[]);
    let sbx = api.create_default();
    let cell = |code: &str| -> Value {
        api.send(
            api.agent(&sbx, Method::POST, "/execute/ipython")
                .json(&json!({ "code": code, "timeout": 30 })),
        )
        .expect(200)
    };
    let first = cell("import pandas as pd\ndf = pd.DataFrame({'n': [1, 2, 3]})");
    assert_eq!(first["success"], true, "{first}");
    let shown = cell("df");
    assert!(
        shown["html"].as_str().unwrap_or("").contains("<table"),
        "{shown}"
    );
    assert_eq!(shown["dataframe"]["data"], json!([[1], [2], [3]]));
    // Every plotting cell draws, not only the first: the fonts the first one loaded keep
    // descriptors of that cell's WASI context.
    for round in 0..2 {
        let plot = cell(
            "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.title('t')\nplt.show()",
        );
        assert!(plot["png"].is_string(), "plot cell {round}: {plot}");
        assert!(
            !plot["stderr"]
                .as_str()
                .unwrap_or("")
                .contains("Bad file descriptor"),
            "plot cell {round}: {plot}"
        );
    }
    let failed = cell("undefined_name");
    assert_eq!(failed["success"], false, "{failed}");
    let after = cell("int(df.n.sum())");
    assert_eq!(
        after["success"], true,
        "kernel lost after a failed cell: {after}"
    );
    assert_eq!(
        after["result"].as_str().map(str::trim),
        Some("6"),
        "{after}"
    );

    // A cell past its timeout is interrupted (KeyboardInterrupt inside the kernel), not
    // killed: busy in Python bytecode, in numpy's C loop between bytecodes, or asleep.
    for code in [
        "while True: pass",
        "import numpy as np\nwhile True: np.sort(np.random.rand(1000))",
        "import time\ntime.sleep(100)",
    ] {
        let started = std::time::Instant::now();
        let stopped = api
            .send(
                api.agent(&sbx, Method::POST, "/execute/ipython")
                    .json(&json!({ "code": code, "timeout": 2 })),
            )
            .expect(200);
        let took = started.elapsed();
        assert_eq!(stopped["timed_out"], true, "{code}: {stopped}");
        assert!(
            took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(4),
            "{code}: returned after {took:?}: {stopped}"
        );
        let err = stopped["stderr"].as_str().unwrap_or("");
        assert!(
            err.contains("KeyboardInterrupt") && err.contains("keeps its state"),
            "{code}: {stopped}"
        );
        let kept = cell("int(df.n.sum()) + 1");
        assert_eq!(
            kept["result"].as_str().map(str::trim),
            Some("7"),
            "{code}: the kernel lost its state: {kept}"
        );
    }
}

#[test]
fn limits_hold_for_the_data_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path(), &[("WASMBOX_MEMORY_MB", "256")]);
    let sbx = api.create_default();

    let started = std::time::Instant::now();
    let spin = api.execute(&sbx, json!({ "code": "while True: pass", "timeout": 2 }));
    assert_eq!(spin["timed_out"], true, "{spin}");
    assert!(started.elapsed().as_secs() < 20);

    // 400 MB over a 256 MiB cap: refused (numpy's MemoryError or the host's memory limit).
    let bomb = api.python(
        &sbx,
        "import numpy as np\na = np.ones(400_000_000, dtype=np.uint8)\nprint(a.sum())",
    );
    assert_eq!(bomb["success"], false, "{bomb}");
    let err = bomb["stderr"].as_str().unwrap_or("");
    assert!(
        err.contains("MemoryError") || err.contains("memory limit"),
        "{bomb}"
    );

    // Host files and the host's environment stay out of reach.
    let escape = api.python(
        &sbx,
        "import os\nprint(os.path.exists('/etc/passwd'), 'CARGO' in ' '.join(os.environ))",
    );
    assert_eq!(stdout(&escape).trim(), "False False", "{escape}");
}

/// The escape suite's probes on the data runtime: host files, the runtime's own read-only
/// mounts, links planted in the sandbox, sockets.
#[test]
fn escape_probes_fail_on_the_data_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, api) = server(dir.path(), &[]);
    let sbx = api.create_default();
    let workspace = dir
        .path()
        .join("sandboxes")
        .join(&sbx.id)
        .join("fs/workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", workspace.join("passwd")).unwrap();
    std::os::unix::fs::symlink("/etc", workspace.join("etc")).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let probes = [
        "print(open('/etc/passwd').read())".to_string(),
        "print(open('../../../../../../etc/passwd').read())".to_string(),
        "import os\nprint(os.listdir('/proc'))".to_string(),
        "print(open('/workspace/passwd').read())".to_string(),
        "print(open('/workspace/etc/hostname').read())".to_string(),
        "import os\nos.symlink('/etc/passwd', '/workspace/mine')\nprint(open('/workspace/mine').read())"
            .to_string(),
        // The runtime's standard library and matplotlib data are mounted read-only.
        "open('/usr/local/lib/python315.zip', 'ab').write(b'x')".to_string(),
        "import matplotlib, os\nopen(os.path.join(matplotlib.get_data_path(), 'matplotlibrc'), 'a').write('x')"
            .to_string(),
        format!("import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')"),
    ];
    for code in &probes {
        let r = api.python(&sbx, code);
        assert_eq!(r["success"], false, "{code} succeeded: {r}");
        let out = stdout(&r);
        assert!(
            !out.contains("root:") && !out.contains("connected"),
            "{code} leaked: {r}"
        );
    }
    let listing = api.python(&sbx, "import os\nprint(sorted(os.listdir('/')))");
    assert_eq!(stdout(&listing), "['tmp', 'workspace']\n", "{listing}");
}
