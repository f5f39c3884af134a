"""The Go toolchain compiled to WebAssembly, for wasmbox's `go` language.

Called by runtimes/fetch.py (source = "go-wasip1", table `go` of manifest.toml):

    fetch(name, spec, ctx, f)   # f: the fetch module (log, FetchError, sha256_file, ...)

Untrusted Go source is never compiled by a host process: wasmbox runs the compiler and the linker
themselves as WASI modules, inside the sandbox. This recipe makes them, once:
 1. A private apt state listing the manifest's suite (runtimes/private_apt.py; the system's apt
    state is untouched): `apt-get download` of the pinned Go compiler and standard-library source
    packages, checked against their sha256, unpacked with `dpkg-deb -x` into a private folder
    (never installed). Their `go` binary is static and runs on older releases.
 2. With that native `go` (in a private GOCACHE, no network: GOPROXY=off, GOTOOLCHAIN=local):
    `GOOS=wasip1 GOARCH=wasm go build cmd/compile` and `cmd/link` -> compile.wasm, link.wasm.
 3. The whole standard library compiled for wasip1/wasm (`go list -export -deps std`): one archive
    per package under pkg/, and pkg/importcfg naming them by the path the guest sees them at
    (`/goroot/pkg/...`, mounted read-only), used by both compile and link.
Everything lands in <cache>/runtimes/<dir>/ at once (built in a temporary folder, renamed into
place), with a stamp of the inputs; a re-run with unchanged inputs is a no-op.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from private_apt import private_apt, run_logged

# Bump when anything below changes what gets built: it is part of the stamp.
BUILD_VERSION = 1
# Where wasmbox mounts the archives folder in the toolchain's instances (src/runtimes/go.rs).
GUEST_PKG = "/goroot/pkg"
GO_ENV = {
    "GOOS": "wasip1",
    "GOARCH": "wasm",
    "CGO_ENABLED": "0",
    "GOTOOLCHAIN": "local",
    "GOPROXY": "off",
    "GOTELEMETRY": "off",
    "GOFLAGS": "-trimpath",
    "GOENV": "off",
    "GOWORK": "off",
}


def fetch(name: str, spec: dict, ctx, f) -> Path:
    f.require_keys(name, spec, "version", "debian_suite", "package", "deb_sha256",
                   "src_package", "src_deb_sha256", "dir", "file", "link_file", "pkg_dir")
    what = f"{name} (Go {spec['version']} for wasip1)"
    dest = ctx.cache / spec["dir"]
    stamp = ctx.cache / f"{spec['dir']}.stamp"
    inputs = {
        "pins": {k: spec[k] for k in sorted(spec) if k != "argv"},
        "build_version": BUILD_VERSION,
        "guest_pkg": GUEST_PKG,
        "env": GO_ENV,
    }
    artifacts = [ctx.cache / spec[k] for k in ("file", "link_file")]
    importcfg = ctx.cache / spec["pkg_dir"] / "importcfg"
    if dest.is_dir() and not ctx.force:
        recorded = f.read_stamp(stamp)
        if (recorded.get("inputs") == inputs and importcfg.is_file()
                and all(p.is_file() for p in artifacts)
                and recorded.get("sha256") == {p.name: f.sha256_file(p) for p in artifacts}):
            f.log(f"{name}: up to date ({dest})")
            return artifacts[0]
        f.log(f"{name}: {dest} does not match the manifest or the build recipe, rebuilding")

    tmp_root = ctx.cache.parent / "build"
    tmp_root.mkdir(parents=True, exist_ok=True)
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="wasmbox-go-", dir=tmp_root) as tmp:
        tmp = Path(tmp)
        logs = tmp / "logs"

        def step(label, fn):
            return f.timed_step(name, seconds, label, fn)

        goroot = step("download", lambda: download_toolchain(spec, tmp, f, what))
        out = tmp / "out"
        env = go_env(goroot, tmp)
        go = str(goroot / "bin" / "go")
        for tool, key in (("compile", "file"), ("link", "link_file")):
            target = out / Path(spec[key]).relative_to(spec["dir"])
            target.parent.mkdir(parents=True, exist_ok=True)
            step(f"build {tool}.wasm", lambda: run_logged(
                [go, "build", "-o", str(target), f"cmd/{tool}"], logs / "go.log", f,
                f"{what}: go build cmd/{tool}", cwd=goroot / "src", env=env))
        pkg = out / Path(spec["pkg_dir"]).relative_to(spec["dir"])
        count = step("standard library", lambda: build_std(go, goroot, env, pkg, logs, f, what))
        f.log(f"{name}: {count} packages")

        if dest.exists():
            shutil.rmtree(dest)
        os.replace(out, dest)
        for p in artifacts:
            os.chmod(p, 0o644)
        f.write_text_atomically(stamp, json.dumps({
            "inputs": inputs,
            "sha256": {p.name: f.sha256_file(p) for p in artifacts},
            "seconds": seconds,
        }, indent=1) + "\n")
    f.log(f"{name}: {dest}; step times (s): {seconds}")
    return artifacts[0]


def download_toolchain(spec: dict, tmp: Path, f, what: str) -> Path:
    """The pinned debs, verified and unpacked privately; returns their GOROOT."""
    dl = tmp / "downloads"
    dl.mkdir(parents=True)
    log = tmp / "logs" / "apt.log"
    apt = private_apt(tmp / "apt", spec["debian_suite"], log, f, what, types="deb")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    root = tmp / "root"
    for pkg, sha in ((spec["package"], spec["deb_sha256"]),
                     (spec["src_package"], spec["src_deb_sha256"])):
        request = f"{pkg}={spec['version']}"
        run_logged([*apt, "download", request], log, f, f"{what}: apt-get download {request}",
                   cwd=dl, env=env)
        debs = sorted(dl.glob(f"{pkg}_*.deb"))
        if len(debs) != 1:
            raise f.FetchError(f"{what}: expected one {pkg} .deb, got {[d.name for d in debs]}")
        got = f.sha256_file(debs[0])
        if got != sha:
            raise f.FetchError(f"{what}: sha256 mismatch for {debs[0].name}: expected {sha}, "
                               f"got {got}")
        run_logged(["dpkg-deb", "-x", str(debs[0]), str(root)], log, f,
                   f"{what}: unpacking {debs[0].name}")
    goroots = sorted(p.parent.parent for p in (root / "usr" / "lib").glob("go-*/bin/go"))
    if len(goroots) != 1 or not (goroots[0] / "src" / "cmd" / "compile").is_dir():
        raise f.FetchError(f"{what}: the packages hold no usable GOROOT under usr/lib/go-*")
    return goroots[0]


def go_env(goroot: Path, tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(GO_ENV)
    env.update({
        "GOROOT": str(goroot),
        "GOCACHE": str(tmp / "gocache"),
        "GOPATH": str(tmp / "gopath"),
        "GOMODCACHE": str(tmp / "gopath" / "mod"),
        "HOME": str(tmp),
        "PATH": f"{goroot / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
    })
    return env


def build_std(go: str, goroot: Path, env: dict, pkg: Path, logs: Path, f, what: str) -> int:
    """Every standard package's wasip1 archive under pkg/, and pkg/importcfg naming them by
    their guest path."""
    listing = logs / "go-list.json"
    with open(listing, "w") as out:
        p = subprocess.run(
            [go, "list", "-export", "-deps", "-f",
             "{{if .Export}}{{.ImportPath}}\t{{.Export}}{{end}}", "std"],
            cwd=goroot / "src", env=env, stdout=out, stderr=subprocess.PIPE,
            text=True)
    if p.returncode != 0:
        raise f.FetchError(f"{what}: go list -export std failed:\n{p.stderr[-3000:]}")
    lines = []
    for row in listing.read_text().splitlines():
        if not row.strip():
            continue
        path, export = row.split("\t", 1)
        rel = Path(path + ".a")
        if rel.is_absolute() or ".." in rel.parts:
            raise f.FetchError(f"{what}: unexpected package path {path!r}")
        target = pkg / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(export, target)
        lines.append(f"packagefile {path}={GUEST_PKG}/{rel.as_posix()}")
    if not any(line.startswith("packagefile runtime=") for line in lines):
        raise f.FetchError(f"{what}: go list did not export the runtime package")
    (pkg / "importcfg").write_text("\n".join(sorted(lines)) + "\n")
    return len(lines)
