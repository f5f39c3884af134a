//! Languages and the interpreter modules that run them: the pinned manifest, where fetched
//! artifacts live, how user code becomes an argv, and the read-only support files guests see.

pub mod go;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use serde::Deserialize;

use std::time::Duration;

use crate::atomic_write::write_atomic;
use crate::engine::{Entry, ExecSpec, Interpreter, Limits, Mount, SnapshotRecipe, SpawnConfig};
use crate::fingerprint::Fingerprint;

pub mod data;

/// The pinned manifest, compiled in so the binary knows what it expects to find.
const MANIFEST: &str = include_str!("../../runtimes/manifest.toml");
/// Node-like shims for QuickJS, loaded before user code; the other two load on first use.
const JS_PRELUDE: &str = include_str!("../../runtimes/js/prelude.js");
const JS_INSPECT: &str = include_str!("../../runtimes/js/inspect.js");
const JS_NODE_LIB: &str = include_str!("../../runtimes/js/node-lib.js");
/// Makes CPython start in `$PWD` (WASI processes start in `/`).
const PY_SITECUSTOMIZE: &str = include_str!("../../runtimes/python/sitecustomize.py");

/// The read-only files guests find under [`SUPPORT_GUEST_DIR`].
const SUPPORT_FILES: [(&str, &str); 4] = [
    ("prelude.js", JS_PRELUDE),
    ("inspect.js", JS_INSPECT),
    ("node-lib.js", JS_NODE_LIB),
    ("python/sitecustomize.py", PY_SITECUSTOMIZE),
];

/// Where guests find the support files (read-only).
pub const SUPPORT_GUEST_DIR: &str = "/usr/lib/wasmbox";

/// A language users can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// CPython 3.12.
    Python,
    /// QuickJS with a Node-like prelude.
    JavaScript,
    /// Our POSIX shell guest in bash mode.
    Bash,
    /// Go 1.24, compiled inside the sandbox by the toolchain built for wasip1.
    Go,
    /// The data runtime: CPython 3.15 with numpy, pandas, matplotlib, scipy, scikit-learn
    /// (see [`data`]); what `python` means in `code-interpreter` sandboxes when enabled.
    DataPython,
}

impl Language {
    /// Every supported language.
    pub const ALL: [Language; 5] = [
        Language::Python,
        Language::JavaScript,
        Language::Bash,
        Language::Go,
        Language::DataPython,
    ];

    /// The canonical name (also the manifest table for python and javascript).
    pub fn name(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::Bash => "bash",
            Language::Go => "go",
            Language::DataPython => "python-data",
        }
    }

    /// The manifest entry that provides this language.
    fn runtime(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::JavaScript => "javascript",
            Language::Bash => "shell",
            Language::Go => "go",
            Language::DataPython => "data",
        }
    }

    /// Guesses the language from a file name's extension.
    pub fn from_path(path: &Path) -> Option<Language> {
        let extension = path.extension()?.to_str()?;
        ALIASES
            .iter()
            .find(|a| a.extensions.contains(&extension))
            .map(|a| a.language)
    }
}

/// Every name a language goes by, in one place so the API, the CLI and file names agree.
struct LanguageAliases {
    language: Language,
    /// What a request's or the CLI's `language` may say (matched case-insensitively).
    names: &'static [&'static str],
    /// File extensions the CLI infers the language from.
    extensions: &'static [&'static str],
}

/// The alias table.
const ALIASES: [LanguageAliases; 5] = [
    LanguageAliases {
        language: Language::Python,
        names: &["python", "python3", "py"],
        extensions: &["py"],
    },
    LanguageAliases {
        language: Language::JavaScript,
        names: &["javascript", "js", "node", "nodejs"],
        extensions: &["js", "mjs", "cjs"],
    },
    LanguageAliases {
        language: Language::Bash,
        names: &["bash", "sh", "shell"],
        extensions: &["sh", "bash"],
    },
    LanguageAliases {
        language: Language::Go,
        names: &["go", "golang"],
        extensions: &["go"],
    },
    LanguageAliases {
        language: Language::DataPython,
        names: &["python-data", "pydata", "data-python"],
        extensions: &[],
    },
];

/// Languages people ask for that wasmbox does not run (a clearer error than "unknown").
const UNSUPPORTED: [&str; 4] = ["typescript", "ts", "ruby", "rust"];

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors about languages and runtime artifacts.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A language name nobody knows.
    #[error("unknown language '{0}' (supported: python, javascript, bash, go, python-data)")]
    UnknownLanguage(String),
    /// A known language wasmbox does not run.
    #[error(
        "language '{0}' is not supported by wasmbox (supported: python, javascript, bash, go, python-data)"
    )]
    Unsupported(String),
    /// A supported language whose runtime this build cannot provide.
    #[error("the {0} runtime is not available yet")]
    NotAvailable(Language),
    /// The compiled-in `runtimes/manifest.toml` does not parse.
    #[error("the runtime manifest is malformed")]
    Manifest(#[source] toml::de::Error),
    /// The runtime's files are not in the cache.
    #[error("the {runtime} runtime is not installed at {path}: {hint}")]
    NotInstalled {
        /// The runtime's name in the manifest.
        runtime: String,
        /// Where its module was expected.
        path: PathBuf,
        /// How to install it.
        hint: String,
    },
    /// `runtimes/fetch.py` failed or could not be started.
    #[error("fetching runtimes failed: {0}")]
    Fetch(String),
    /// The files a runtime needs beside its module (preludes, site packages) could not be written.
    #[error("writing support files to {path}")]
    Support {
        /// The file or directory being written.
        path: PathBuf,
        /// Why writing failed.
        #[source]
        source: std::io::Error,
    },
}

impl FromStr for Language {
    type Err = RuntimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim().to_ascii_lowercase();
        if let Some(aliases) = ALIASES.iter().find(|a| a.names.contains(&name.as_str())) {
            Ok(aliases.language)
        } else if UNSUPPORTED.contains(&name.as_str()) {
            Err(RuntimeError::Unsupported(s.into()))
        } else {
            Err(RuntimeError::UnknownLanguage(s.into()))
        }
    }
}

#[derive(Debug, Deserialize)]
struct ManifestEntry {
    file: String,
    argv: Vec<String>,
    /// A reactor build with `wasmbox_init`/`wasmbox_run` exports, run from a snapshot.
    #[serde(default)]
    reactor_file: Option<String>,
    #[serde(default)]
    reactor_argv: Option<Vec<String>>,
    /// Read-only folders the reactor needs (e.g. a standard library), under `<cache>/runtimes`.
    #[serde(default)]
    reactor_mounts: Vec<ManifestMount>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    package: Option<String>,
    /// Go: the linker, beside `file` (the compiler).
    #[serde(default)]
    link_file: Option<String>,
    /// Go: the standard library's archives and their `importcfg`.
    #[serde(default)]
    pkg_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ManifestMount {
    host: String,
    guest: String,
}

/// An interpreter invocation: which module, with which argv and extra environment.
#[derive(Clone, Debug)]
pub struct Invocation {
    /// The interpreter's module file.
    pub module: PathBuf,
    /// `_start`, or the export of a pre-initialised reactor.
    pub entry: Entry,
    /// The interpreter's argv, `argv[0]` included.
    pub argv: Vec<String>,
    /// Environment the interpreter needs (e.g. `PYTHONPATH`), added to the user's.
    pub env: Vec<(String, String)>,
    /// Set when `module` is a reactor to run from a pre-initialised snapshot made this way.
    pub snapshot: Option<SnapshotRecipe>,
    /// Read-only mounts the module needs besides the sandbox tree and the support files; they
    /// come after those two, in this order, exactly as when the snapshot was made.
    pub mounts: Vec<Mount>,
}

/// The installed runtimes under one cache directory.
#[derive(Debug)]
pub struct Runtimes {
    cache_dir: PathBuf,
    manifest: BTreeMap<String, ManifestEntry>,
    snapshots: bool,
    /// The Go toolchain, once found installed.
    go: std::sync::OnceLock<go::GoToolchain>,
}

impl Runtimes {
    /// Reads the compiled-in manifest and writes the support files under `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let manifest = toml::from_str(MANIFEST).map_err(RuntimeError::Manifest)?;
        let runtimes = Self {
            cache_dir: cache_dir.into(),
            manifest,
            snapshots: true,
            go: std::sync::OnceLock::new(),
        };
        runtimes.write_support_files()?;
        Ok(runtimes)
    }

    /// Whether to run reactor builds from pre-initialised snapshots where the manifest has them
    /// (the default), or always the plain command modules.
    pub fn use_snapshots(mut self, enabled: bool) -> Self {
        self.snapshots = enabled;
        self
    }

    /// The cache directory (artifacts in `runtimes/`, compiled modules in `compiled/`).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Where precompiled modules are kept.
    pub fn compiled_dir(&self) -> PathBuf {
        self.cache_dir.join("compiled")
    }

    fn support_dir(&self) -> PathBuf {
        self.cache_dir.join("support")
    }

    fn entry(&self, language: Language) -> Result<&ManifestEntry, RuntimeError> {
        self.manifest
            .get(language.runtime())
            .ok_or(RuntimeError::NotAvailable(language))
    }

    /// The artifact path for `language`'s interpreter (whether or not it is installed).
    pub fn module_path(&self, language: Language) -> Result<PathBuf, RuntimeError> {
        Ok(self
            .cache_dir
            .join("runtimes")
            .join(&self.entry(language)?.file))
    }

    /// A one-line description (package and version) for listings.
    pub fn describe(&self, language: Language) -> String {
        match self.entry(language) {
            Ok(e) => format!(
                "{} {}",
                e.package.as_deref().unwrap_or("local build"),
                e.version.as_deref().unwrap_or("")
            )
            .trim()
            .to_string(),
            Err(_) => "not available".into(),
        }
    }

    /// Whether the interpreter for `language` is present in the cache.
    pub fn is_installed(&self, language: Language) -> bool {
        if language == Language::Go {
            return self.go_toolchain().is_ok();
        }
        if language == Language::DataPython {
            return self.data_installed();
        }
        self.module_path(language)
            .map(|p| p.is_file())
            .unwrap_or(false)
    }

    /// Makes sure `language`'s interpreter is installed, fetching it (with progress on stderr)
    /// when this binary was built from a source tree that has the fetch script.
    pub fn ensure_installed(&self, language: Language) -> Result<(), RuntimeError> {
        if self.is_installed(language) {
            return Ok(());
        }
        self.fetch(&[language])?;
        if self.is_installed(language) {
            Ok(())
        } else {
            Err(RuntimeError::NotInstalled {
                runtime: language.runtime().into(),
                path: self.module_path(language)?,
                hint: "the fetch step did not produce it".into(),
            })
        }
    }

    /// Runs the fetch script for the given languages (all when empty).
    pub fn fetch(&self, languages: &[Language]) -> Result<(), RuntimeError> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("runtimes/fetch.py");
        if !script.is_file() {
            return Err(RuntimeError::Fetch(format!(
                "the fetch script {} is not present (this binary was built elsewhere); \
                 install the runtimes into {} with a source checkout",
                script.display(),
                self.cache_dir.display()
            )));
        }
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg("--cache-dir").arg(&self.cache_dir);
        // A language's runtime table plus its companions (`python-snapshot` for `python`).
        for language in languages {
            let name = language.runtime();
            let prefix = format!("{name}-");
            for table in self
                .manifest
                .keys()
                .filter(|t| *t == name || t.starts_with(&prefix))
            {
                cmd.arg(table);
            }
        }
        let status = cmd
            .status()
            .map_err(|e| RuntimeError::Fetch(format!("cannot start python3: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(RuntimeError::Fetch(format!(
                "{} exited with {status}",
                script.display()
            )))
        }
    }

    /// The Go toolchain's files (whether or not they are installed). Its identity (part of
    /// every compiled program's key) is read once per process.
    pub fn go_toolchain(&self) -> Result<&go::GoToolchain, RuntimeError> {
        if let Some(toolchain) = self.go.get() {
            return Ok(toolchain);
        }
        let entry = self.entry(Language::Go)?;
        let dir = self.cache_dir.join("runtimes");
        let (Some(link), Some(pkg)) = (&entry.link_file, &entry.pkg_dir) else {
            return Err(RuntimeError::NotAvailable(Language::Go));
        };
        let toolchain = go::GoToolchain::new(
            dir.join(&entry.file),
            dir.join(link),
            dir.join(pkg),
            entry.version.as_deref().unwrap_or("unknown"),
        );
        if !toolchain.is_installed() {
            return Err(RuntimeError::NotInstalled {
                runtime: "go".into(),
                path: dir.join(&entry.file),
                hint: "run `wasmbox runtimes fetch go`".into(),
            });
        }
        Ok(self.go.get_or_init(|| toolchain))
    }

    /// How to run `code` in `language`: from the pre-initialised snapshot when there is a
    /// reactor build, else the command module.
    pub fn invocation(&self, language: Language, code: &str) -> Result<Invocation, RuntimeError> {
        if language == Language::DataPython {
            return self.data_invocation(code);
        }
        let entry = self.entry(language)?;
        let substitute = |template: &[String]| -> Vec<String> {
            template
                .iter()
                .map(|a| {
                    if a == "{code}" {
                        code.to_string()
                    } else {
                        a.clone()
                    }
                })
                .collect()
        };
        if let (true, Some(file), Some(argv)) =
            (self.snapshots, &entry.reactor_file, &entry.reactor_argv)
        {
            let dir = self.cache_dir.join("runtimes");
            let reactor = dir.join(file);
            let mounts: Vec<Mount> = entry
                .reactor_mounts
                .iter()
                .map(|m| Mount {
                    host: dir.join(&m.host),
                    guest: m.guest.clone(),
                    writable: false,
                })
                .collect();
            if reactor.is_file() && mounts.iter().all(|m| m.host.is_dir()) {
                return Ok(Invocation {
                    module: reactor,
                    entry: Entry::Export("wasmbox_run".into()),
                    argv: substitute(argv),
                    env: Vec::new(),
                    snapshot: Some(self.snapshot_recipe(&mounts)),
                    mounts,
                });
            }
        }
        let env = match language {
            Language::Python => vec![(
                "PYTHONPATH".to_string(),
                format!("{SUPPORT_GUEST_DIR}/python"),
            )],
            _ => Vec::new(),
        };
        Ok(Invocation {
            module: self.module_path(language)?,
            entry: Entry::Start,
            argv: substitute(&entry.argv),
            env,
            snapshot: None,
            mounts: Vec::new(),
        })
    }

    /// How reactors are pre-initialised: `wasmbox_init` with the same mounts, in the same
    /// order, as executions get (an empty tree at `/`, then the support files).
    fn snapshot_recipe(&self, extra_mounts: &[Mount]) -> SnapshotRecipe {
        // The support files are compiled in: hash them once, not on every execution (~40 µs).
        static SUPPORT: std::sync::OnceLock<Fingerprint> = std::sync::OnceLock::new();
        let mut fingerprint = SUPPORT
            .get_or_init(|| {
                let mut fingerprint = Fingerprint::default();
                for (_, contents) in SUPPORT_FILES {
                    fingerprint.bytes(contents);
                }
                fingerprint
            })
            .clone();
        for mount in extra_mounts {
            fingerprint.mount(&mount.host, &mount.guest);
        }
        let mut mounts = vec![
            Mount {
                host: self.cache_dir.join("support-root"),
                guest: "/".into(),
                writable: false,
            },
            self.support_mount(),
        ];
        mounts.extend(extra_mounts.iter().cloned());
        SnapshotRecipe {
            init_func: "wasmbox_init".into(),
            init_turn: None,
            spec: ExecSpec {
                argv: vec!["wasmbox-init".into()],
                mounts,
                limits: Limits {
                    timeout: Duration::from_secs(300),
                    ..Limits::default()
                },
                ..ExecSpec::default()
            },
            fingerprint: fingerprint.finish(),
            interrupt_probe: None,
        }
    }

    /// What the shell may start by name: its own applets (`sh.wasm`), `python`/`python3` and
    /// `node` (their command modules, argv prefixed as for a direct run minus the code).
    pub fn spawn_config(&self) -> Result<SpawnConfig, RuntimeError> {
        let mut config = SpawnConfig::new(self.module_path(Language::Bash)?);
        let interpreter = |language: Language, prefix_len: usize| -> Option<Interpreter> {
            let entry = self.entry(language).ok()?;
            let module = self.module_path(language).ok()?;
            module.is_file().then(|| Interpreter {
                module,
                argv_prefix: entry.argv.iter().take(prefix_len).cloned().collect(),
                env: match language {
                    Language::Python => {
                        vec![("PYTHONPATH".into(), format!("{SUPPORT_GUEST_DIR}/python"))]
                    }
                    _ => Vec::new(),
                },
            })
        };
        // python: ["python"]; qjs: ["qjs", "--std", "-I", PRELUDE] (drop the trailing "-e" "{code}").
        config.python = interpreter(Language::Python, 1);
        config.javascript = self
            .entry(Language::JavaScript)
            .ok()
            .and_then(|e| interpreter(Language::JavaScript, e.argv.len().saturating_sub(2)));
        Ok(config)
    }

    /// The read-only mount with the support files.
    pub fn support_mount(&self) -> Mount {
        Mount {
            host: self.support_dir(),
            guest: SUPPORT_GUEST_DIR.into(),
            writable: false,
        }
    }

    fn write_support_files(&self) -> Result<(), RuntimeError> {
        self.write_data_init_root()?;
        let root = self.cache_dir.join("support-root");
        std::fs::create_dir_all(&root)
            .map_err(|source| RuntimeError::Support { path: root, source })?;
        for (name, contents) in SUPPORT_FILES {
            let path = self.support_dir().join(name);
            if std::fs::read_to_string(&path).ok().as_deref() == Some(contents) {
                continue;
            }
            let err = |source| RuntimeError::Support {
                path: path.clone(),
                source,
            };
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(err)?;
            }
            write_atomic(&path, contents.as_bytes()).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_aliases() {
        assert_eq!("Python3".parse::<Language>().ok(), Some(Language::Python));
        assert_eq!("node".parse::<Language>().ok(), Some(Language::JavaScript));
        assert_eq!("sh".parse::<Language>().ok(), Some(Language::Bash));
        assert_eq!("golang".parse::<Language>().ok(), Some(Language::Go));
        assert!(matches!(
            "ruby".parse::<Language>(),
            Err(RuntimeError::Unsupported(_))
        ));
        assert!(matches!(
            "cobol".parse::<Language>(),
            Err(RuntimeError::UnknownLanguage(_))
        ));
    }

    #[test]
    fn language_from_extension() {
        assert_eq!(
            Language::from_path(Path::new("a/b.py")),
            Some(Language::Python)
        );
        assert_eq!(
            Language::from_path(Path::new("x.mjs")),
            Some(Language::JavaScript)
        );
        assert_eq!(
            Language::from_path(Path::new("main.go")),
            Some(Language::Go)
        );
        assert_eq!(Language::from_path(Path::new("x.txt")), None);
    }

    #[test]
    fn alias_table_covers_every_language_once() {
        for language in Language::ALL {
            let rows = ALIASES.iter().filter(|a| a.language == language).count();
            assert_eq!(rows, 1, "{language}");
            assert_eq!(language.name().parse::<Language>().ok(), Some(language));
        }
        assert!(matches!(
            "Rust".parse::<Language>(),
            Err(RuntimeError::Unsupported(_))
        ));
        assert!(matches!(
            "cobol".parse::<Language>(),
            Err(RuntimeError::UnknownLanguage(_))
        ));
    }

    #[test]
    fn manifest_parses_and_substitutes_code() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtimes = Runtimes::new(dir.path()).expect("manifest");
        let inv = runtimes
            .invocation(Language::Python, "print(1)")
            .expect("python entry");
        assert_eq!(inv.argv.last().map(String::as_str), Some("print(1)"));
        assert!(dir.path().join("support/prelude.js").is_file());
    }
}
