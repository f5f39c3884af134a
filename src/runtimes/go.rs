//! Go: the toolchain built for wasip1 (`runtimes/go/build_go.py`) and what wasmbox feeds it.
//!
//! The `go` command cannot drive a build under WASI (it starts the compiler and linker as
//! subprocesses), so wasmbox runs the two steps itself, each as a fresh instance: `compile`
//! turns `main.go` into `main.a`, `link` turns that into `prog.wasm`, which is then run like any
//! other program. This module knows the argv of those steps, where their files are, and how a
//! snippet becomes a program.

use std::path::PathBuf;

use crate::fingerprint::Fingerprint;

/// Where the standard library's archives (and `importcfg`) appear in the toolchain's instances.
pub const GUEST_PKG: &str = "/goroot/pkg";
/// The toolchain's scratch folder in its instances: the source, `main.a`, `prog.wasm`.
pub const GUEST_BUILD: &str = "/build";
/// The file the source is written to (named in compiler messages as `main.go:LINE:COL`).
pub const SOURCE_FILE: &str = "main.go";
/// The linker's output in the scratch folder.
pub const PROGRAM_FILE: &str = "prog.wasm";
/// Bump when the wrapping or the tools' flags change: compiled programs are keyed by it.
const RECIPE_VERSION: u32 = 1;

/// The installed toolchain.
#[derive(Clone, Debug)]
pub struct GoToolchain {
    /// `compile.wasm`.
    pub compile: PathBuf,
    /// `link.wasm`.
    pub link: PathBuf,
    /// The archives folder, mounted read-only at [`GUEST_PKG`].
    pub pkg: PathBuf,
    /// A digest of the toolchain's files: part of every compiled program's cache key.
    identity: String,
    /// The Go release, e.g. `go1.24.4`.
    release: String,
}

impl GoToolchain {
    /// The toolchain in these files; `package_version` is its package's (`1.24.4-1`).
    pub(super) fn new(
        compile: PathBuf,
        link: PathBuf,
        pkg: PathBuf,
        package_version: &str,
    ) -> Self {
        let mut identity = Fingerprint::default();
        identity.number(RECIPE_VERSION.into());
        for path in [&compile, &link, &pkg.join("importcfg")] {
            let meta = std::fs::metadata(path).ok();
            identity
                .path(path)
                .number(meta.as_ref().map_or(0, |m| m.len().into()))
                .mtime(meta.and_then(|m| m.modified().ok()));
        }
        Self {
            compile,
            link,
            pkg,
            identity: identity.digest_hex(),
            release: format!("go{}", go_release(package_version)),
        }
    }

    /// What `go version` prints.
    pub fn version_line(&self) -> String {
        format!("go version {} wasip1/wasm", self.release)
    }

    /// Whether the three artifacts are present.
    pub fn is_installed(&self) -> bool {
        self.compile.is_file() && self.link.is_file() && self.pkg.join("importcfg").is_file()
    }

    /// The cache key of the program built from `source` (a full SHA-256: collisions between
    /// tenants' sources are not feasible).
    pub fn program_key(&self, source: &str) -> String {
        let mut key = Fingerprint::default();
        key.bytes(&self.identity).bytes(source);
        key.digest_hex()
    }

    /// The compile step's argv (the scratch folder is its working directory).
    pub fn compile_argv(&self) -> Vec<String> {
        let importcfg = format!("{GUEST_PKG}/importcfg");
        [
            "compile",
            "-o",
            "main.a",
            "-p",
            "main",
            "-lang=go1.24",
            "-complete",
            "-c=1",
            "-nolocalimports",
            "-importcfg",
            &importcfg,
            "-pack",
            SOURCE_FILE,
        ]
        .map(String::from)
        .to_vec()
    }

    /// The link step's argv: no symbol table or DWARF (smaller, faster to link and to compile
    /// to machine code; panics still print Go stack traces, which use the pclntab).
    pub fn link_argv(&self) -> Vec<String> {
        let importcfg = format!("{GUEST_PKG}/importcfg");
        [
            "link",
            "-o",
            PROGRAM_FILE,
            "-importcfg",
            &importcfg,
            "-buildmode=exe",
            "-s",
            "-w",
            "main.a",
        ]
        .map(String::from)
        .to_vec()
    }

    /// The toolchain's environment: its target and working directory (Go's wasip1 port takes
    /// the working directory from `PWD`).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("GOOS", "wasip1"),
            ("GOARCH", "wasm"),
            ("PWD", GUEST_BUILD),
            ("HOME", GUEST_BUILD),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    }
}

/// The upstream release in a Debian package version: `1:1.24.4-1` → `1.24.4`.
fn go_release(package_version: &str) -> &str {
    let upstream = package_version
        .split_once(':')
        .map_or(package_version, |(_, v)| v);
    upstream.rsplit_once('-').map_or(upstream, |(v, _)| v)
}

/// A source the toolchain cannot take as it is.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// A package clause other than `package main`.
    #[error("a Go program must be `package main` (this source is `package {0}`)")]
    NotMain(String),
}

/// Standard packages a snippet may use without importing them.
const SNIPPET_IMPORTS: [&str; 8] = [
    "fmt", "os", "strings", "strconv", "math", "time", "sort", "errors",
];

/// The program to compile for `code`.
///
/// A source with a package clause must be `package main` and is compiled as it is (the compiler
/// then requires `func main`). A source without one is a snippet: its leading `import`
/// declarations stay at the top, the rest becomes the body of `func main`, and the packages of
/// [`SNIPPET_IMPORTS`] it names (`fmt.`) without importing them are imported. `//line`
/// directives keep compiler messages pointing at the user's own lines, in `file_name` (the
/// shell's `go run bad.go` reports `bad.go:2:5`).
pub fn program_source(code: &str, file_name: &str) -> Result<String, SourceError> {
    // The name goes into `//line` directives: anything but a plain file name stays `main.go`.
    let plain = !file_name.is_empty()
        && file_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let file_name = if plain { file_name } else { SOURCE_FILE };
    if let Some(package) = package_clause(code) {
        return match package.as_str() {
            "main" if file_name == SOURCE_FILE => Ok(code.to_string()),
            "main" => Ok(format!("//line {file_name}:1:1\n{code}")),
            _ => Err(SourceError::NotMain(package)),
        };
    }
    let lines: Vec<&str> = code.lines().collect();
    let imports_end = leading_imports(&lines);
    let (head, body) = lines.split_at(imports_end);
    let mut out = String::from("package main\n\n");
    let missing: Vec<&str> = SNIPPET_IMPORTS
        .iter()
        .copied()
        .filter(|pkg| names_package(body, pkg) && !imports_package(head, pkg))
        .collect();
    for pkg in &missing {
        out.push_str(&format!("import {pkg:?}\n"));
    }
    if !head.is_empty() {
        out.push_str(&format!("//line {file_name}:1:1\n"));
        for line in head {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("\nfunc main() {\n");
    out.push_str(&format!("//line {file_name}:{}:1\n", imports_end + 1));
    for line in body {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("}\n");
    Ok(out)
}

/// The package name if the source's first token (after comments) is `package`.
fn package_clause(code: &str) -> Option<String> {
    let rest = skip_comments(code);
    let rest = rest.strip_prefix("package")?;
    if !rest.starts_with(|c: char| c.is_whitespace() || c == '/') {
        return None;
    }
    let name: String = skip_comments(rest)
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    Some(name)
}

/// `s` without leading whitespace and comments.
fn skip_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("//") {
            s = rest.find('\n').map_or("", |at| &rest[at..]);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.find("*/").map_or("", |at| &rest[at + 2..]);
        } else {
            return s;
        }
    }
}

/// How many leading lines are blank, comments or `import` declarations (single or grouped).
fn leading_imports(lines: &[&str]) -> usize {
    let mut end = 0;
    let mut in_group = false;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if in_group {
            if t.starts_with(')') {
                in_group = false;
                end = i + 1;
            }
            continue;
        }
        if t.starts_with("import") && t[6..].starts_with([' ', '\t', '(', '"']) {
            in_group = t.ends_with('(');
            end = i + 1;
        } else if !(t.is_empty() || t.starts_with("//")) {
            break;
        }
    }
    if in_group {
        0
    } else {
        end
    }
}

fn imports_package(head: &[&str], pkg: &str) -> bool {
    let quoted = format!("\"{pkg}\"");
    head.iter().any(|line| line.contains(&quoted))
}

/// Whether `pkg.` appears as a qualified identifier (not as the tail of another name).
fn names_package(body: &[&str], pkg: &str) -> bool {
    let needle = format!("{pkg}.");
    body.iter().any(|line| {
        line.match_indices(&needle).any(|(at, _)| {
            !line[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_is_kept_and_must_be_main() {
        let program = "// hi\npackage main\n\nfunc main() {}\n";
        assert_eq!(program_source(program, SOURCE_FILE).as_deref(), Ok(program));
        // Another file's messages name it; a name that could break the directive does not.
        assert_eq!(
            program_source(program, "bad.go").as_deref(),
            Ok(format!("//line bad.go:1:1\n{program}").as_str())
        );
        assert_eq!(program_source(program, "a\nb.go").as_deref(), Ok(program));
        assert_eq!(
            program_source("/* x */ package foo\n", SOURCE_FILE),
            Err(SourceError::NotMain("foo".into()))
        );
    }

    #[test]
    fn a_snippet_is_wrapped_with_its_imports() {
        let out = program_source("import \"os\"\n\nfmt.Println(os.Args[0])\n", SOURCE_FILE)
            .expect("wraps");
        assert!(out.starts_with("package main\n\nimport \"fmt\"\n"), "{out}");
        assert!(!out.contains("import \"os\"\n//line"), "{out}");
        assert!(
            out.contains("func main() {\n//line main.go:2:1\n\nfmt.Println"),
            "{out}"
        );
        let plain = program_source("x := 1\n_ = x\n", SOURCE_FILE).expect("wraps");
        assert!(!plain.contains("import"), "{plain}");
        assert!(!program_source("myfmt.X()\n", SOURCE_FILE)
            .expect("wraps")
            .contains("import \"fmt\""));
    }

    #[test]
    fn grouped_imports_stay_at_the_top() {
        let out = program_source(
            "import (\n\t\"strings\"\n)\nprintln(strings.ToUpper(\"a\"))\n",
            SOURCE_FILE,
        )
        .expect("wraps");
        assert!(out.contains("//line main.go:1:1\nimport (\n"), "{out}");
        assert!(!out.contains("import \"strings\""), "{out}");
        assert!(out.contains("//line main.go:4:1\nprintln"), "{out}");
    }
}
