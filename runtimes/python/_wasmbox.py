"""wasmbox's per-execution glue for the pre-initialised CPython (see wasmbox_python.c).

Stored at the root of the standard-library zip by runtimes/fetch.py. `init()` runs once, before
the snapshot is taken; `run(argv, env)` runs once per execution in a fresh instance restored from
the snapshot, with argv (list of str) and the environment (list of b"KEY=VALUE") just read from
that execution's WASI context. `cell(argv, env)` runs one cell of a kernel: the same instance
again and again, `__main__`'s namespace kept, the last expression displayed as IPython does.

Rich outputs (`display(obj)`, a cell's last value) are mime bundles built from the object's
`_repr_*_` methods and handed to the host as JSON through `_wasmbox_host.emit`:
`{"data": {mime: str | json}, "metadata": {...}, "kind": "display_data" | "execute_result"}`.

What is per execution, and what is not:
- fresh: sys.argv/orig_argv, os.environ (and the C environment), the preopened directories, the
  working directory ($PWD, else /), sys.path[0], the `random` module's seed (os.urandom), the
  clocks (read from the host on every call), `logging`'s start time, `__main__`'s namespace
  (every execution starts from the snapshot's pristine one), open files, imported user modules.
- fixed at snapshot time: the str/bytes hash secret (siphash key; `hash("x")` and the iteration
  order of sets of strings are the same in every execution of one snapshot, as with a fixed
  PYTHONHASHSEED; a new snapshot gets a new one). It cannot be changed after start-up without
  rehashing every dict, and it protects nothing across executions, which never share a process.
"""

import sys

# Imported once at snapshot time; each costs nothing per execution afterwards, where importing
# one of the larger ones fresh costs 10-100 ms (asyncio ~90, email/urllib.request ~100,
# xml.etree/zipfile/pickle/tomllib ~40, unittest/queue/concurrent.futures ~20, measured here).
# The snapshot grows by a few MB, which costs nothing per execution: its memory is mapped
# copy-on-write and frozen objects are never walked by the collector. The list is the modules
# sandboxed code most often starts with, plus what printing a traceback needs.
PRELOAD = (
    "os", "io", "re", "json", "math", "cmath", "time", "datetime", "calendar", "collections",
    "collections.abc", "itertools", "functools", "operator", "random", "statistics", "decimal",
    "fractions", "numbers", "string", "textwrap", "pathlib", "csv", "base64", "binascii",
    "hashlib", "hmac", "secrets", "uuid", "typing", "dataclasses", "enum", "copy", "pprint",
    "heapq", "bisect", "array", "struct", "contextlib", "abc", "types", "warnings", "traceback",
    "linecache", "tokenize", "glob", "fnmatch", "shutil", "tempfile", "argparse", "logging",
    "urllib.parse", "html", "difflib", "zoneinfo", "locale", "unicodedata", "weakref", "inspect",
    "ast", "runpy", "codecs", "stat", "errno", "atexit", "asyncio", "threading", "queue",
    "concurrent.futures", "subprocess", "shlex", "pickle", "copyreg", "zlib", "gzip", "zipfile",
    "tarfile", "tomllib", "xml.etree.ElementTree", "xml.dom.minidom", "email.message",
    "email.parser", "email.utils", "http.client", "urllib.request", "unittest", "doctest",
    "graphlib", "contextvars", "platform", "sqlite3",
)


def init():
    import gc
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # a module this build lacks: fine, it is imported on use (and fails)
            sys.modules.pop(name, None)
    _fix_asyncio()
    _install_display()
    try:  # kernels: the host's interrupt trips SIGINT, which raises KeyboardInterrupt
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except Exception:
        pass
    sys.dont_write_bytecode = True
    # Objects made so far live for ever: keep the collector from walking (and so touching every
    # copy-on-write page of) the snapshot's heap in each execution.
    gc.collect()
    _immortalize_heap(gc)
    gc.freeze()


def _immortalize_heap(gc):
    """Pins the reference counts of every object the snapshot holds (the collector's objects and
    what they refer to directly): each cell would otherwise write to the pages of every shared
    object it touches (functions, modules, dicts), which costs a copy-on-write fault per page in
    a fresh instance and a write-protect fault plus image bytes per page in a kernel."""
    try:
        import _wasmbox_host
        immortalize = _wasmbox_host.immortalize
    except (ImportError, AttributeError):
        return
    objs = gc.get_objects()
    seen = set(map(id, objs))
    seen.add(id(objs))
    extra = []
    for o in objs:
        for r in gc.get_referents(o):
            if id(r) not in seen:
                seen.add(id(r))
                extra.append(r)
    objs.extend(extra)
    del extra, seen
    immortalize(objs)


def _fix_asyncio():
    """asyncio's selector event loop wakes itself up through a socketpair, which WASI cannot
    make, so `asyncio.run()` fails upstream. There are no other threads or signals to wake the
    loop on WASI: run it without the self-pipe (timers, sleeps, tasks, queues all work)."""
    try:
        from asyncio import selector_events
    except Exception:
        return

    def _make_self_pipe(self):
        self._ssock = self._csock = None

    def _close_self_pipe(self):
        pass

    def _write_to_self(self):
        pass

    cls = selector_events.BaseSelectorEventLoop
    cls._make_self_pipe = _make_self_pipe
    cls._close_self_pipe = _close_self_pipe
    cls._write_to_self = _write_to_self


_OPTIONS_IGNORED = {"-u", "-B", "-E", "-s", "-S", "-I", "-q", "-b", "-bb", "-O", "-OO", "-P"}


def _enter(env):
    """This call's environment and working directory (scripts and cells alike)."""
    import os

    # Environment: clear and refill os.environ's storage (bytes on POSIX) without calling
    # putenv(); the C environment was re-read from WASI by the C entry point already.
    data = os.environ._data
    data.clear()
    for item in env:
        key, sep, value = item.partition(b"=")
        if sep and key:
            data[key] = value
    try:
        import posix
        if posix.environ is not data:  # on POSIX os.environ stores into posix.environ itself
            posix.environ.clear()
            posix.environ.update(data)
    except ImportError:
        pass

    # PYTHONUNBUFFERED (set by the streaming routes) makes stdout line-buffered for this call,
    # so lines reach a streaming client as they are printed; otherwise block-buffered (faster).
    # (stderr is always line-buffered.)
    unbuffered = bool(data.get(b"PYTHONUNBUFFERED"))
    try:
        if sys.stdout.line_buffering != unbuffered:
            sys.stdout.reconfigure(line_buffering=unbuffered)
    except (AttributeError, ValueError):
        pass

    for cwd in (os.environ.get("PWD"), "/"):
        if cwd:
            if os.getcwd() == cwd:  # a kernel's next cell: chdir costs host calls (~50 us)
                break
            try:
                os.chdir(cwd)
                break
            except OSError:  # not mounted: stay where WASI starts (the path "/")
                pass

    # Directory finders are per call: the folders may have changed. The standard-library zip's
    # finder is kept (importlib.invalidate_caches() would re-read it, ~25 ms).
    for path in list(sys.path_importer_cache):
        if not path.endswith(".zip"):
            del sys.path_importer_cache[path]


def _reset(argv, env):
    _enter(env)
    sys.orig_argv = list(argv)

    if "random" in sys.modules:
        sys.modules["random"].seed()  # from os.urandom, i.e. the host's random_get
    if "logging" in sys.modules:
        import time
        sys.modules["logging"]._startTime = time.time_ns()


def _parse(argv):
    """-> (mode, target, sys.argv) with mode in "c", "m", "file", "stdin"."""
    args = list(argv[1:])
    while args:
        a = args[0]
        if a == "-c":
            if len(args) < 2:
                raise _Usage("Argument expected for the -c option")
            return "c", args[1], ["-c", *args[2:]]
        if a.startswith("-c") and len(a) > 2:
            return "c", a[2:], ["-c", *args[1:]]
        if a == "-m":
            if len(args) < 2:
                raise _Usage("Argument expected for the -m option")
            return "m", args[1], [args[1], *args[2:]]
        if a == "-":
            return "stdin", "<stdin>", ["-", *args[1:]]
        if a == "--":
            args.pop(0)
            break
        if a in _OPTIONS_IGNORED or a.startswith("-X") or a.startswith("-W"):
            args.pop(0)
            if a in ("-X", "-W") and args:
                args.pop(0)
            continue
        if a.startswith("-"):
            raise _Usage(f"Unknown option: {a}")
        break
    if not args:
        return "stdin", "<stdin>", [""]
    return "file", args[0], list(args)


class _Usage(Exception):
    pass


def _exit_status(exc):
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def _report(exc):
    """Print exc like the interpreter does for an uncaught exception, minus our own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _report.__code__.co_filename:
        tb = tb.tb_next
    exc.__traceback__ = tb  # the default hook prints the exception's own traceback
    try:
        sys.excepthook(type(exc), exc, tb)
    except BaseException:
        import traceback
        traceback.print_exception(type(exc), exc, tb)


def _execute(mode, target, source):
    import os

    main = sys.modules["__main__"]
    g = main.__dict__
    if mode == "m":
        import runpy
        sys.path.insert(0, os.getcwd())
        runpy._run_module_as_main(target, alter_argv=True)
        return
    if mode == "c":
        sys.path.insert(0, "")
        filename = "<string>"
    elif mode == "stdin":
        sys.path.insert(0, "")
        source, filename = sys.stdin.read(), "<stdin>"
    else:
        filename = target
        sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
        g["__file__"] = target
        g["__cached__"] = None
    code = compile(source, filename, "exec")
    exec(code, g)


def run(argv, env):
    status = 0
    try:
        _reset(argv, env)
        mode, target, sys.argv = _parse(argv)
        import os
        extra = os.environ.get("PYTHONPATH")
        if extra:
            sys.path[0:0] = [p for p in extra.split(os.pathsep) if p]
    except _Usage as e:
        print(f"{e}\nusage: python [-c cmd | -m mod | file | -] [arg] ...", file=sys.stderr)
        return 2
    source = target
    if mode == "file":
        try:
            with open(target, "rb") as f:
                source = f.read()
        except OSError as e:
            print(f"python3: can't open file {target!r}: [Errno {e.errno}] {e.strerror}",
                  file=sys.stderr)
            return 2
    try:
        _execute(mode, target, source)
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException as e:
        _report(e)
        status = 1
    finally:
        status = _finish(status)
    return status


def _finish(status):
    import atexit
    try:
        atexit._run_exitfuncs()
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException as e:
        _report(e)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            if status == 0:
                status = 120
    return status


# ---------------------------------------------------------------------------------------------
# Rich outputs and kernels

# The order IPython's formatters use; the first one present names the output's type.
_REPR_METHODS = (
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("image/svg+xml", "_repr_svg_"),
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
)


def _mime_bundle(obj):
    """-> (data, metadata): every representation obj offers, text/plain always included."""
    import base64

    data, metadata = {}, {}
    method = getattr(type(obj), "_repr_mimebundle_", None)
    if method is not None and not isinstance(obj, type):
        try:
            got = obj._repr_mimebundle_(include=None, exclude=None)
        except TypeError:
            got = obj._repr_mimebundle_()
        if isinstance(got, tuple):
            got, meta = got
            metadata.update(meta or {})
        data.update(got or {})
    if not isinstance(obj, type):
        for mime, name in _REPR_METHODS:
            if mime in data or getattr(type(obj), name, None) is None:
                continue
            value = getattr(obj, name)()
            if isinstance(value, tuple) and len(value) == 2:
                value, meta = value
                if meta:
                    metadata[mime] = meta
            if value is None:
                continue
            data[mime] = value
    for mime, value in list(data.items()):
        if isinstance(value, (bytes, bytearray)):
            data[mime] = base64.b64encode(value).decode("ascii")
    if "text/plain" not in data:
        import pprint
        data["text/plain"] = pprint.pformat(obj)
    return data, metadata


def _emit(obj, kind):
    import json

    try:
        data, metadata = _mime_bundle(obj)
        doc = json.dumps({"kind": kind, "data": data, "metadata": metadata}, default=str)
    except Exception as e:  # a broken _repr_*_ shows as text, as IPython does
        doc = json.dumps({"kind": kind, "data": {"text/plain": object.__repr__(obj)},
                          "metadata": {}})
        print(f"wasmbox: could not format {type(obj).__name__}: {e!r}", file=sys.stderr)
    import _wasmbox_host
    for stream in (sys.stdout, sys.stderr):  # keep output and displays in order
        try:
            stream.flush()
        except Exception:
            pass
    _wasmbox_host.emit(doc.encode("utf-8"))


def display(*objs, **_ignored):
    """Show each object as a rich output (IPython's display())."""
    for obj in objs:
        _emit(obj, "display_data")


def _install_display():
    import builtins
    builtins.display = display


def cell(argv, env):
    """Runs argv[2] in the kernel's __main__; the value of a final expression is displayed.
    -> 0, or 1 if the cell raised (its traceback is on stderr)."""
    import ast

    status = 0
    try:
        _enter(env)
        source = argv[2] if len(argv) > 2 else ""
        g = sys.modules["__main__"].__dict__
        if "" not in sys.path[:1]:
            sys.path.insert(0, "")
        # A one-line expression (`x + 1`, the common cell) compiles straight to `eval` code;
        # anything else goes through the AST to split off a final expression.
        last = None
        if "\n" not in source.strip():
            try:
                last = compile(source, "<cell>", "eval")
            except SyntaxError:
                pass
        if last is None:
            tree = ast.parse(source, "<cell>", "exec")
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = compile(ast.Expression(tree.body.pop().value), "<cell>", "eval")
            exec(compile(tree, "<cell>", "exec"), g)
        if last is not None:
            value = eval(last, g)
            if value is not None:
                g["_"] = value
                _emit(value, "execute_result")
    except SystemExit as e:
        status = _exit_status(e)
    except BaseException as e:
        _report(e)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    return status
