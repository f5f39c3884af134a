//! The data runtime: CPython 3.15 with numpy, pandas, matplotlib, scipy and scikit-learn, a
//! pinned third-party WASI build (manifest table `[data]`). It is a *session reactor*: besides
//! WASI it imports only the `host.call` door and exports `host_alloc` and `turn(ptr, len)`,
//! which runs Python source in the live interpreter. wasmbox snapshots it after one turn that
//! runs our glue (`runtimes/python-data/wasmbox_data.py`: imports numpy, pandas and matplotlib
//! with the Agg backend, installs `display()` and the `plt.show()` hook); every execution is
//! then one more turn in a fresh instance of that snapshot, and every kernel cell one more turn
//! in a live one.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::engine::{Entry, ExecSpec, InterruptProbe, Limits, Mount, SnapshotRecipe};
use crate::fingerprint::Fingerprint;

use super::{Invocation, Language, RuntimeError, Runtimes};

/// The glue, run as the snapshot's init turn.
const GLUE: &str = include_str!("../../runtimes/python-data/wasmbox_data.py");
/// The standard library and packages (`python315.zip`), under `<cache>/runtimes`.
const LIB_DIR: &str = "python-data-lib";
/// matplotlib's `mpl-data` (fonts, styles), unpacked by the fetch step.
const MPL_DIR: &str = "python-data-mpl";
/// Where the interpreter looks for `python315.zip`.
const LIB_GUEST: &str = "/usr/local/lib";
/// Where matplotlib looks for its data: beside its package, inside the zip's path.
const MPL_GUEST: &str = "/usr/local/lib/python315.zip/matplotlib/mpl-data";
/// What the snapshot's root is while it is made: matplotlib writes its font cache there.
const INIT_ROOT: &str = "data-init-root";

/// The environment the data runtime adds to every execution: matplotlib draws off screen and
/// keeps its (rarely used) cache in the sandbox's `/tmp`.
const ENV: [(&str, &str); 2] = [("MPLBACKEND", "Agg"), ("MPLCONFIGDIR", "/tmp/matplotlib")];

/// A payload document for the glue's `execute()`: what a turn runs.
fn payload(mode: &str, code: &str, env: &BTreeMap<String, String>) -> String {
    serde_json::json!({ "mode": mode, "code": code, "env": env }).to_string()
}

/// The source of one turn: the glue's `execute()` on a JSON payload, written as a Python string
/// literal (a JSON string is one: serde_json escapes quotes, backslashes and control characters
/// and never writes `\/`). The glue's status comes back as the turn's value (see the glue).
pub fn turn_source(mode: TurnMode, code: &str, env: &BTreeMap<String, String>) -> String {
    let mode = match mode {
        TurnMode::Run => "run",
        TurnMode::Cell => "cell",
    };
    let literal = serde_json::Value::String(payload(mode, code, env)).to_string();
    format!("import sys as _s\n_s = _s.modules['_wasmbox_data'].execute({literal})\nif _s:\n    raise SystemExit(_s)\n")
}

/// Whether a turn is a script run (fresh instance) or a kernel cell (last value displayed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnMode {
    /// `/execute`: a script, in a fresh instance.
    Run,
    /// `/execute/ipython`: a cell of a live kernel.
    Cell,
}

impl Runtimes {
    /// The data runtime's files: module, library folder, matplotlib data.
    fn data_paths(&self) -> (std::path::PathBuf, Vec<Mount>) {
        let dir = self.cache_dir.join("runtimes");
        let mount = |host: &str, guest: &str| Mount {
            host: dir.join(host),
            guest: guest.into(),
            writable: false,
        };
        let module = self
            .manifest
            .get(Language::DataPython.runtime())
            .map(|e| dir.join(&e.file))
            .unwrap_or_else(|| dir.join("python-data.wasm"));
        (
            module,
            vec![mount(LIB_DIR, LIB_GUEST), mount(MPL_DIR, MPL_GUEST)],
        )
    }

    /// The data runtime's library archive (its standard library and packages).
    pub fn data_library_archive(&self) -> std::path::PathBuf {
        self.cache_dir
            .join("runtimes")
            .join(LIB_DIR)
            .join("python315.zip")
    }

    /// Whether every file of the data runtime is there (the fetch step unpacks the matplotlib
    /// data last and marks it complete).
    pub(super) fn data_installed(&self) -> bool {
        let (module, mounts) = self.data_paths();
        module.is_file()
            && mounts[0].host.join("python315.zip").is_file()
            && mounts[1].host.join(".complete").is_file()
    }

    /// How to run `code` on the data runtime: a turn in a fresh instance of its snapshot. The
    /// turn's source is finished by [`finish_turn`] once the environment is known.
    pub(super) fn data_invocation(&self, code: &str) -> Result<Invocation, RuntimeError> {
        if !self.snapshots {
            return Err(RuntimeError::NotAvailable(Language::DataPython));
        }
        let (module, mounts) = self.data_paths();
        Ok(Invocation {
            snapshot: Some(self.data_recipe(&mounts)),
            module,
            entry: Entry::Turn(code.to_string()),
            argv: vec!["python".into(), "-c".into(), code.to_string()],
            env: ENV
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mounts,
        })
    }

    /// The snapshot: one turn of the glue, which imports the data stack, under the same mounts
    /// (in the same order) executions get, with a writable scratch root for matplotlib's cache.
    fn data_recipe(&self, extra_mounts: &[Mount]) -> SnapshotRecipe {
        let mut fingerprint = Fingerprint::default();
        fingerprint.bytes(GLUE);
        for mount in extra_mounts {
            fingerprint.mount(&mount.host, &mount.guest);
        }
        let mut mounts = vec![
            Mount {
                host: self.cache_dir.join(INIT_ROOT),
                guest: "/".into(),
                writable: true,
            },
            self.support_mount(),
        ];
        mounts.extend(extra_mounts.iter().cloned());
        // The glue becomes the module `_wasmbox_data`, then imports the stack.
        let literal = serde_json::Value::String(GLUE.to_string()).to_string();
        let init_turn = format!(
            "import sys as _s, types as _t\n\
             _m = _t.ModuleType('_wasmbox_data')\n\
             exec(compile({literal}, '/usr/lib/wasmbox/wasmbox_data.py', 'exec'), _m.__dict__)\n\
             _s.modules['_wasmbox_data'] = _m\n\
             _m.init()\n\
             del _s, _t, _m\n"
        );
        SnapshotRecipe {
            init_func: String::new(),
            init_turn: Some(init_turn),
            spec: ExecSpec {
                argv: vec!["python".into()],
                env: vec![
                    ("HOME".into(), "/tmp".into()),
                    ("TMPDIR".into(), "/tmp".into()),
                ],
                mounts,
                limits: Limits {
                    timeout: Duration::from_secs(300),
                    memory_bytes: 1 << 30,
                    ..Limits::default()
                },
                ..ExecSpec::default()
            },
            fingerprint: fingerprint.finish(),
            // The build names no interrupt flags, so kernels find what a Ctrl-C sets:
            // `PyErr_SetInterruptEx(SIGINT)` trips the SIGINT handler and the eval breaker.
            interrupt_probe: Some(InterruptProbe {
                function: "PyErr_SetInterruptEx".into(),
                argument: 2,
                raised: "KeyboardInterrupt".into(),
            }),
        }
    }

    /// Creates the scratch root the data snapshot is made in.
    pub(super) fn write_data_init_root(&self) -> Result<(), RuntimeError> {
        let root = self.cache_dir.join(INIT_ROOT).join("tmp");
        std::fs::create_dir_all(&root)
            .map_err(|source| RuntimeError::Support { path: root, source })
    }
}

/// Turns an execution's [`Entry::Turn`] (holding the user's code) into the turn that runs it
/// with `env`; other entries pass unchanged.
pub fn finish_turn(entry: Entry, mode: TurnMode, env: &BTreeMap<String, String>) -> Entry {
    match entry {
        Entry::Turn(code) => Entry::Turn(turn_source(mode, &code, env)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_source_is_one_python_string_literal() {
        let env = BTreeMap::from([("A".to_string(), "x\"y'\\z".to_string())]);
        let src = turn_source(TurnMode::Run, "print('''a\\nb''')\n\u{2028}", &env);
        assert!(src.starts_with("import sys as _s\n_s = _s.modules['_wasmbox_data'].execute(\""));
        assert_eq!(src.lines().count(), 4);
        // The literal decodes back to the payload (JSON and Python agree on it).
        let start = src.find("execute(").map_or(0, |i| i + 8);
        let literal = &src[start..src.find(")\nif").unwrap_or(start)];
        let decoded: String = serde_json::from_str(literal).expect("literal");
        let doc: serde_json::Value = serde_json::from_str(&decoded).expect("payload");
        assert_eq!(doc["env"]["A"], "x\"y'\\z");
        assert_eq!(doc["mode"], "run");
    }
}
