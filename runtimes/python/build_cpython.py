"""Build CPython for wasm32-wasip1 as wasmbox's pre-initialisable reactor.

Called by runtimes/fetch.py (source = "cpython-wasi", table `python-snapshot` of manifest.toml):

    fetch(name, spec, ctx, f)   # f: the fetch module (log, run, FetchError, ...)

Recipe (everything by package name through apt, pinned by sha256, built under the cache):
 1. A private apt state (sources, lists, cache under <cache>/build/...; the system's apt state
    is not touched) with a `trixie` deb/deb-src entry derived from the system's own Debian
    sources (same URIs and keyring). From it: `apt-get source --download-only python3.13` (only
    the upstream .orig tarball is used, not Debian's packaging patches) and
    `apt-get download wasi-libc` (a 2024 wasi-libc sysroot), unpacked with `dpkg-deb -x` into a
    private folder, and `apt-get source --download-only zlib` (upstream tarball, compiled here to
    a wasm32 static library for the zlib module). All checked against the sha256 pinned in the
    manifest.
 2. Build tools from the system's own release (bookworm) with apt-get when missing:
    clang-19, lld-19, llvm-19 (llvm-ar), libclang-rt-19-dev-wasm32, build-essential.
 3. A native "build python" (same version; the cross build runs it to freeze modules).
 4. The cross build: configure --host=wasm32-wasip1 with Tools/wasm/config.site-wasm32-wasi and
    CC="clang-19 --target=wasm32-wasip1 --sysroot=<private wasi-libc>", then make.
    Steps 1-4 are cached in <cache>/build/cpython-<version>-wasi-<key>/, keyed by the pins,
    the flags and the compiler version, and reused while they do not change.
 5. Link runtimes/python/wasmbox_python.c with libpython's objects as a WASI reactor
    (-mexec-model=reactor) -> <cache>/runtimes/python313.wasm.
 6. The standard library (Lib/ minus tests and GUI modules, the cross build's sysconfig data
    and runtimes/python/_wasmbox.py), compiled to unchecked-hash .pyc next to each .py, stored
    uncompressed in a deterministic zip -> <cache>/runtimes/python313-lib/python313.zip.
 Steps 5-6 take seconds: changing our C/Python entry points does not rebuild CPython.

The host mounts <cache>/runtimes/python313-lib/ read-only at /usr/local/lib; the snapshot is made
from python313.wasm by wasmbox itself (src/engine/preinit.rs).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from private_apt import private_apt, run_logged

HERE = Path(__file__).resolve().parent

# Bump when anything below changes what gets built (part of both cache keys).
BUILD_VERSION = 1
# Bump when the link or the zip recipe changes (the stamp of the installed artifacts only).
LINK_VERSION = 1

CLANG = "clang-19"
CLANGXX = "clang++-19"
AR = "llvm-ar-19"
RANLIB = "llvm-ranlib-19"
TRIPLE = "wasm32-wasip1"
# Debian 12 packages providing the tools, and a file each one installs.
TOOLS = {
    "clang-19": "/usr/bin/clang-19",
    "lld-19": "/usr/bin/wasm-ld-19",
    "llvm-19": "/usr/bin/llvm-ar-19",
    "libclang-rt-19-dev-wasm32": "/usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a",
    "build-essential": "/usr/bin/make",
    "gcc": "/usr/bin/gcc",
    "libc6-dev": "/usr/include/stdio.h",
}
NATIVE_OPT = "-DNDEBUG -O1"            # the build python only freezes modules: build it fast
WASI_OPT = "-DNDEBUG -O2"              # no -g: no DWARF in the module
CONFIGURE_ARGS = ["--disable-test-modules", "--without-ensurepip"]
# Entry points, built into the reactor / the zip.
ENTRY_C = HERE / "wasmbox_python.c"
ENTRY_PY = HERE / "_wasmbox.py"
# Left out of the zip: tests, GUI, installers, demos.
STDLIB_EXCLUDE_DIRS = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "__phello__",
                       "site-packages", "lib2to3", "venv"}
STDLIB_EXCLUDE_FILES = {"turtle.py", "antigravity.py", "this.py"}
GUEST_STDLIB_DIR = "/usr/local/lib"


# ---------------------------------------------------------------------------


def fetch(name: str, spec: dict, ctx, f) -> Path:
    f.require_keys(name, spec, "version", "debian_suite", "source_package", "debian_version",
                   "dsc_sha256", "orig_file", "orig_sha256", "wasi_libc_version",
                   "wasi_libc_sha256", "file", "stdlib_dir", "stdlib_zip")
    what = f"{name} (CPython {spec['version']} for {TRIPLE})"
    module_dest = ctx.cache / spec["file"]
    zip_dest = ctx.cache / spec["stdlib_dir"] / spec["stdlib_zip"]
    stamp = module_dest.with_name(module_dest.name + ".stamp")

    inputs = {
        "pins": {k: spec[k] for k in sorted(spec) if k not in ("argv",)},
        "build_version": BUILD_VERSION,
        "link_version": LINK_VERSION,
        "entry_c": f.sha256_file(ENTRY_C),
        "entry_py": f.sha256_file(ENTRY_PY),
        "exclude": sorted(STDLIB_EXCLUDE_DIRS | STDLIB_EXCLUDE_FILES),
    }
    if module_dest.exists() and zip_dest.exists() and not ctx.force:
        recorded = f.read_stamp(stamp)
        if (recorded.get("inputs") == inputs
                and recorded.get("sha256") == f.sha256_file(module_dest)
                and recorded.get("stdlib_sha256") == f.sha256_file(zip_dest)):
            f.log(f"{name}: up to date ({module_dest}, {zip_dest})")
            return module_dest
        f.log(f"{name}: {module_dest.name} or {zip_dest.name} does not match the manifest or "
              f"the build recipe, rebuilding")
    for p in (module_dest, zip_dest, stamp):
        p.unlink(missing_ok=True)

    ensure_tools(f, what)
    tree_key, tree_inputs = build_key(spec)
    tree = ensure_tree(name, spec, ctx, f, tree_key, tree_inputs, what)
    timings = json.loads((tree / ".complete").read_text()).get("seconds", {})

    tmp_root = ctx.cache.parent / "build"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="wasmbox-python-", dir=tmp_root) as tmp:
        tmp = Path(tmp)
        t0 = time.monotonic()
        wasm = link_reactor(tree, tmp, f, what)
        timings["link"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        zpath = make_stdlib_zip(tree, tmp, f, what)
        timings["stdlib_zip"] = round(time.monotonic() - t0, 1)

        def copier(src):
            def write(fo):
                with open(src, "rb") as s:
                    shutil.copyfileobj(s, fo, 1 << 20)
            return write

        zsha = f.install_atomically(ctx, name, copier(zpath), zip_dest, None, what)
        wsha = f.install_atomically(ctx, name, copier(wasm), module_dest, None, what)
    f.write_text_atomically(stamp, json.dumps({
        "inputs": inputs, "tree_inputs": tree_inputs, "sha256": wsha, "stdlib_sha256": zsha,
        "seconds": timings,
    }, indent=1) + "\n")
    f.log(f"{name}: {module_dest} ({module_dest.stat().st_size} bytes), {zip_dest} "
          f"({zip_dest.stat().st_size} bytes); step times (s): {timings}")
    return module_dest


def ensure_tools(f, what: str) -> None:
    missing = [pkg for pkg, path in TOOLS.items() if not os.path.exists(path)]
    if missing:
        f.ensure_debian_packages(list(TOOLS), missing)
        still = [pkg for pkg, path in TOOLS.items() if not os.path.exists(path)]
        if still:
            raise f.FetchError(f"{what}: build tools still missing after apt-get: {still}")


def clang_version() -> str:
    p = subprocess.run([CLANG, "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       text=True)
    return p.stdout.splitlines()[0].strip() if p.stdout else "unknown"


def build_key(spec: dict) -> tuple[str, dict]:
    inputs = {
        "build_version": BUILD_VERSION,
        "version": spec["version"],
        "orig_sha256": spec["orig_sha256"],
        "wasi_libc_sha256": spec["wasi_libc_sha256"],
        "clang": clang_version(),
        "native_opt": NATIVE_OPT,
        "wasi_opt": WASI_OPT,
        "configure": CONFIGURE_ARGS,
        "zlib_orig_sha256": spec.get("zlib_orig_sha256"),
    }
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    return key, inputs


# ---------------------------------------------------------------------------
# the cached CPython build tree


def ensure_tree(name, spec, ctx, f, key, inputs, what) -> Path:
    builds = ctx.cache.parent / "build"
    tree = builds / f"cpython-{spec['version']}-wasi-{key}"
    done = tree / ".complete"
    if done.exists():
        f.log(f"{name}: reusing the CPython build in {tree}")
        return tree
    if tree.exists():
        f.log(f"{name}: removing the unfinished build {tree}")
        shutil.rmtree(tree)
    (tree / "logs").mkdir(parents=True)
    jobs = str(os.cpu_count() or 2)
    seconds = {}

    def step(label, fn):
        return f.timed_step(name, seconds, label, fn)

    dl = tree / "downloads"
    step("download", lambda: download_sources(spec, tree / "apt", dl, f, what))
    orig = dl / spec["orig_file"]
    deb = next(dl.glob(f"wasi-libc_*.deb"))

    sysroot_pkg = tree / "wasi-libc"
    run_logged(["dpkg-deb", "-x", str(deb), str(sysroot_pkg)], tree / "logs" / "dpkg.log", f,
               f"{what}: unpacking wasi-libc")
    sysroot = sysroot_pkg / "usr"
    for sub in ("lib", "include"):
        if not (sysroot / sub / TRIPLE).exists():
            raise f.FetchError(f"{what}: the wasi-libc package has no {sub}/{TRIPLE} folder")
    resource = make_resource_dir(tree / "clang-resource", f, what)

    src = step("extract", lambda: extract_orig(orig, tree / "src", spec["version"], f, what))
    cc = [CLANG, f"--target={TRIPLE}", f"--sysroot={sysroot}", f"-resource-dir={resource}"]
    zlib = None
    if spec.get("zlib_orig_file"):
        zlib = step("zlib", lambda: build_zlib(dl / spec["zlib_orig_file"], tree / "zlib", cc,
                                                tree / "logs" / "zlib.log", f, what))

    native = tree / "native"
    native.mkdir()
    step("native_configure", lambda: run_logged(
        [os.path.relpath(src / "configure", native), f"OPT={NATIVE_OPT}"],
        tree / "logs" / "native-configure.log", f, f"{what}: configuring the build python",
        cwd=native))
    step("native_make", lambda: run_logged(
        ["make", "-j", jobs, "all"], tree / "logs" / "native-make.log", f,
        f"{what}: building the build python", cwd=native))
    build_python = native / "python"

    wasi = tree / "wasi"
    wasi.mkdir()
    cc_flags = f"--target={TRIPLE} --sysroot={sysroot} -resource-dir={resource}"
    env = dict(os.environ)
    for k in ("CFLAGS", "CPPFLAGS", "LDFLAGS", "PYTHONPATH", "PYTHONHOME", "MAKEFLAGS"):
        env.pop(k, None)
    env.update({
        "CONFIG_SITE": str(src / "Tools" / "wasm" / "config.site-wasm32-wasi"),
        "CC": f"{CLANG} {cc_flags}",
        "CPP": f"{CLANG} -E {cc_flags}",
        "CXX": f"{CLANGXX} {cc_flags}",
        "AR": AR,
        "RANLIB": RANLIB,
        "PKG_CONFIG_PATH": "",
        "PKG_CONFIG_LIBDIR": f"{sysroot}/lib/pkgconfig",
        "PKG_CONFIG_SYSROOT_DIR": str(sysroot),
        "SOURCE_DATE_EPOCH": "1750000000",
    })
    if zlib is not None:  # found by configure through these instead of pkg-config
        env["ZLIB_CFLAGS"] = f"-I{zlib / 'include'}"
        env["ZLIB_LIBS"] = f"-L{zlib / 'lib'} -lz"
    build_triple = subprocess.run(["sh", str(src / "config.guess")], stdout=subprocess.PIPE,
                                  text=True, check=True).stdout.strip()
    step("wasi_configure", lambda: run_logged(
        [os.path.relpath(src / "configure", wasi), f"--host={TRIPLE}", f"--build={build_triple}",
         f"--with-build-python={build_python}", f"OPT={WASI_OPT}", *CONFIGURE_ARGS],
        tree / "logs" / "wasi-configure.log", f, f"{what}: configuring the wasm32-wasip1 build",
        cwd=wasi, env=env))
    step("wasi_make", lambda: run_logged(
        ["make", "-j", jobs, "all"], tree / "logs" / "wasi-make.log", f,
        f"{what}: building CPython for wasm32-wasip1", cwd=wasi, env=env))

    # Keep what linking and zipping need; drop the downloads and apt state.
    shutil.rmtree(tree / "apt", ignore_errors=True)
    shutil.rmtree(dl, ignore_errors=True)
    done.write_text(json.dumps({"inputs": inputs, "seconds": seconds}, indent=1) + "\n")
    for old in builds.glob(f"cpython-*-wasi-*"):
        if old != tree and old.is_dir():
            f.log(f"{name}: removing the superseded build {old}")
            shutil.rmtree(old, ignore_errors=True)
    return tree


# ---------------------------------------------------------------------------
# downloads through a private apt state


def download_sources(spec: dict, state: Path, out: Path, f, what: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    suite = spec["debian_suite"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = out.parent / "logs" / "apt.log"
    apt = private_apt(state, suite, log, f, what)

    pkg, rev = spec["source_package"], spec["debian_version"]
    pinned = apt_source(apt, f"{pkg}={rev}", pkg, spec["orig_file"], spec["orig_sha256"], out,
                        log, env, f, what)
    if pinned:
        dsc = out / f"{pkg}_{rev.split(':')[-1]}.dsc"
        got = f.sha256_file(dsc) if dsc.exists() else "missing"
        if got != spec["dsc_sha256"]:
            raise f.FetchError(f"{what}: sha256 mismatch for {dsc.name}: expected "
                               f"{spec['dsc_sha256']}, got {got}")
    else:
        f.log(f"{what}: note: {pkg}={rev} could not be had from {suite}; its upstream tarball "
              f"(all that is used) came from another revision and matches the pinned sha256; "
              f"update debian_version/dsc_sha256 in the manifest")
    if spec.get("zlib_orig_file"):
        apt_source(apt, spec["zlib_source_package"], spec["zlib_source_package"],
                   spec["zlib_orig_file"], spec["zlib_orig_sha256"], out, log, env, f, what)

    wl = f"wasi-libc={spec['wasi_libc_version']}"
    run_logged([*apt, "download", wl], log, f, f"{what}: apt-get download {wl}", cwd=out,
               env=env)
    debs = sorted(out.glob("wasi-libc_*.deb"))
    if len(debs) != 1:
        raise f.FetchError(f"{what}: expected one wasi-libc .deb, got {[d.name for d in debs]}")
    got = f.sha256_file(debs[0])
    if got != spec["wasi_libc_sha256"]:
        raise f.FetchError(f"{what}: sha256 mismatch for {debs[0].name}: expected "
                           f"{spec['wasi_libc_sha256']}, got {got}")


def apt_source(apt, request, pkg, orig_file, orig_sha, out, log, env, f, what) -> bool:
    """`apt-get source --download-only` REQUEST (falling back to PKG's newest revision). Only the
    upstream tarball is used: if it arrived and matches the pin, a failure to fetch Debian's
    packaging files (an archive that moved on to a newer revision) does not matter. Returns
    whether REQUEST itself fully succeeded."""
    err = "nothing downloaded"
    for attempt in dict.fromkeys([request, pkg]):
        try:
            run_logged([*apt, "source", "--download-only", attempt], log, f,
                       f"{what}: apt-get source {attempt}", cwd=out, env=env)
            ok = True
        except f.FetchError as e:
            ok = False
            err = e
        orig = out / orig_file
        if orig.exists():
            got = f.sha256_file(orig)
            if got != orig_sha:
                raise f.FetchError(f"{what}: sha256 mismatch for {orig.name}: expected "
                                   f"{orig_sha}, got {got}")
            return ok and attempt == request
    raise f.FetchError(f"{what}: apt-get source did not produce {orig_file}: {err}")


def extract_orig(orig: Path, dest: Path, version: str, f, what: str) -> Path:
    with tarfile.open(orig, "r:*") as t:
        if hasattr(tarfile, "data_filter"):
            t.extractall(dest, filter="data")
        else:
            for m in t.getmembers():
                if m.name.startswith("/") or ".." in m.name.split("/"):
                    raise f.FetchError(f"{what}: unsafe path in {orig.name}: {m.name}")
            t.extractall(dest)
    src = dest / f"Python-{version}"
    if not (src / "configure").exists():
        raise f.FetchError(f"{what}: {orig.name} has no Python-{version}/configure")
    return src


ZLIB_SOURCES = ["adler32", "compress", "crc32", "deflate", "gzclose", "gzlib", "gzread",
                "gzwrite", "infback", "inffast", "inflate", "inftrees", "trees", "uncompr",
                "zutil"]


def build_zlib(orig: Path, dest: Path, cc: list, log: Path, f, what: str) -> Path:
    """zlib (for the zlib module, hence gzip, zipfile's deflate, ...) as a wasm32 static lib."""
    with tarfile.open(orig, "r:*") as t:
        top = {m.name.split("/")[0] for m in t.getmembers()}
        t.extractall(dest / "src", **({"filter": "data"} if hasattr(tarfile, "data_filter")
                                       else {}))
    if len(top) != 1:
        raise f.FetchError(f"{what}: unexpected layout of {orig.name}: {sorted(top)}")
    src = dest / "src" / top.pop()
    (dest / "lib").mkdir(parents=True)
    (dest / "include").mkdir()
    objs = []
    for name in ZLIB_SOURCES:
        obj = dest / "lib" / f"{name}.o"
        run_logged([*cc, "-O2", "-DHAVE_UNISTD_H", "-D_LARGEFILE64_SOURCE=1", "-c",
                    f"{name}.c", "-o", str(obj)], log, f, f"{what}: compiling zlib {name}.c",
                   cwd=src)
        objs.append(str(obj))
    run_logged([AR, "rcs", str(dest / "lib" / "libz.a"), *objs], log, f,
               f"{what}: archiving zlib", cwd=src)
    for h in ("zlib.h", "zconf.h"):
        shutil.copyfile(src / h, dest / "include" / h)
    return dest


def make_resource_dir(dest: Path, f, what: str) -> Path:
    """clang-19 looks for wasm32-wasip1's compiler-rt under a per-target name; Debian ships it
    under the older wasi/ name. A private resource dir links both (no system file changes)."""
    p = subprocess.run([CLANG, "-print-resource-dir"], stdout=subprocess.PIPE, text=True)
    system = Path(p.stdout.strip())
    builtins = system / "lib" / "wasi" / "libclang_rt.builtins-wasm32.a"
    if not builtins.exists():
        raise f.FetchError(f"{what}: {builtins} is missing (libclang-rt-19-dev-wasm32)")
    target = dest / "lib" / f"wasm32-unknown-{TRIPLE.split('-', 1)[1]}"
    target.mkdir(parents=True)
    (dest / "include").symlink_to(system / "include")
    (target / "libclang_rt.builtins.a").symlink_to(builtins)
    return dest


# ---------------------------------------------------------------------------
# our reactor and the standard-library zip

WASMBOX_MK = """\
include Makefile
# wasmbox: CPython as a WASI reactor with our entry points instead of Programs/python.c.
$(WASMBOX_OBJ): $(WASMBOX_C) pyconfig.h
\t$(CC) -c $(PY_CFLAGS) $(PY_CPPFLAGS) -o $@ $(WASMBOX_C)
$(WASMBOX_OUT): $(WASMBOX_OBJ) $(LINK_PYTHON_DEPS)
\t$(LINKCC) $(PY_CORE_LDFLAGS) $(LINKFORSHARED) -mexec-model=reactor -o $@ $(WASMBOX_OBJ) \
$(LINK_PYTHON_OBJS) $(LIBS) $(MODLIBS) $(SYSLIBS)
"""


def link_reactor(tree: Path, tmp: Path, f, what: str) -> Path:
    mk = tmp / "wasmbox.mk"
    mk.write_text(WASMBOX_MK)
    out = tmp / "python313.wasm"
    run_logged(["make", "-f", str(mk), f"WASMBOX_C={ENTRY_C}", f"WASMBOX_OBJ={tmp / 'wasmbox_python.o'}",
                f"WASMBOX_OUT={out}", str(out)],
               tmp / "link.log", f, f"{what}: linking the reactor", cwd=tree / "wasi")
    return out


ZIP_SCRIPT = r'''
import importlib._bootstrap_external as ext, importlib.util, os, sys, zipfile
lib, sysconfigdata, entry, out, guest, excl_dirs, excl_files = sys.argv[1:8]
excl_dirs, excl_files = set(excl_dirs.split(",")), set(excl_files.split(","))
files = {}
for root, dirs, names in os.walk(lib):
    rel_root = os.path.relpath(root, lib)
    dirs[:] = sorted(d for d in dirs if d not in excl_dirs and d != "__pycache__"
                     and not (rel_root == "." and d in ("site-packages",)))
    for n in names:
        if n.endswith(".py") and n not in excl_files:
            rel = os.path.normpath(os.path.join(rel_root, n))
            files[rel] = os.path.join(root, n)
files[os.path.basename(sysconfigdata)] = sysconfigdata
files["_wasmbox.py"] = entry
skipped = []
with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
    def add(name, data):
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        z.writestr(info, data)
    for rel in sorted(files):
        with open(files[rel], "rb") as f:
            data = f.read()
        add(rel, data)
        try:
            code = compile(data, f"{guest}/{rel}", "exec", dont_inherit=True)
        except SyntaxError:
            skipped.append(rel)
            continue
        pyc = ext._code_to_hash_pyc(code, importlib.util.source_hash(data), checked=False)
        add(rel[:-3] + ".pyc", bytes(pyc))
print(len(files), "modules;", "no .pyc for:", skipped)
'''


def make_stdlib_zip(tree: Path, tmp: Path, f, what: str) -> Path:
    src = next((tree / "src").glob("Python-*"))
    wasi = tree / "wasi"
    builddir = (wasi / "pybuilddir.txt").read_text().strip()
    sysconfigdata = sorted((wasi / builddir).glob("_sysconfigdata_*.py"))
    if len(sysconfigdata) != 1:
        raise f.FetchError(f"{what}: expected one _sysconfigdata_*.py in {wasi / builddir}, "
                           f"got {sysconfigdata}")
    out = tmp / "python313.zip"
    script = tmp / "mkzip.py"
    script.write_text(ZIP_SCRIPT)
    guest = f"{GUEST_STDLIB_DIR}/python313.zip"
    run_logged([str(tree / "native" / "python"), "-I", "-S", str(script), str(src / "Lib"),
                str(sysconfigdata[0]), str(ENTRY_PY), str(out), guest,
                ",".join(sorted(STDLIB_EXCLUDE_DIRS)), ",".join(sorted(STDLIB_EXCLUDE_FILES))],
               tmp / "zip.log", f, f"{what}: making the standard-library zip")
    return out
