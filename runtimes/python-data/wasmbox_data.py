"""wasmbox's glue for the data runtime (CPython 3.15 with numpy, pandas, matplotlib, ...).

Run once through the runtime's `turn` export before wasmbox snapshots the instance
(src/runtimes/data.rs): it becomes the module `_wasmbox_data`, imports the data stack (so every
execution starts with it loaded) and installs `display()`. Each execution then is one more turn
in a fresh instance restored from that snapshot, calling `execute(payload)` with a JSON document
the host wrote into the source: `{"mode": "run" | "cell", "code", "env": {KEY: VALUE}}`.

Rich outputs (`display(obj)`, `plt.show()`, figures left open at the end, a cell's last value)
are mime bundles handed to the host through the runtime's one host import (`_host.call(frame)`),
as `b"wasmbox-display\\n" + JSON` with `{"kind", "data": {mime: str | json}, "metadata"}`.

Fresh per execution: os.environ, the working directory ($PWD), sys.argv, the seeds of `random`
and numpy's global RandomState (from the host's random_get), `__main__`'s namespace (a fresh
instance each time; kept between the cells of a kernel). Fixed at snapshot time: the str hash
secret, as for the other Python runtimes.
"""

import sys

DISPLAY_FRAME = b"wasmbox-display\n"
# The largest DataFrame sent as application/vnd.dataframe+json (its html is pandas' own, which
# truncates by itself).
DATAFRAME_ROWS = 1000


def init():
    import gc
    import os

    os.makedirs("/tmp/matplotlib", exist_ok=True)
    os.environ["MPLCONFIGDIR"] = "/tmp/matplotlib"
    os.environ["MPLBACKEND"] = "Agg"
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.show = _show
    # What the first savefig of every execution would import (~40 ms): Pillow's PNG writer.
    import PIL.Image
    import PIL.PngImagePlugin  # noqa: F401
    PIL.Image.init()
    import builtins
    builtins.display = display
    sys.dont_write_bytecode = True
    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------------------------------------
# Rich outputs

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


def _figure_png(fig):
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _dataframe_json(df):
    import json
    part = df.head(DATAFRAME_ROWS)
    doc = json.loads(part.to_json(orient="split", date_format="iso", default_handler=str))
    doc["shape"] = list(df.shape)
    doc["dtypes"] = {str(k): str(v) for k, v in df.dtypes.items()}
    return doc


def _mime_bundle(obj):
    """-> (data, metadata): every representation obj offers, text/plain always included."""
    import base64

    data, metadata = {}, {}
    cls = type(obj)
    module = getattr(cls, "__module__", "") or ""
    if module.startswith("matplotlib") and hasattr(obj, "savefig"):
        png = _figure_png(obj)
        data["image/png"] = png
        # The image's own size (IHDR), which the tight bounding box makes smaller than the
        # figure's.
        w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        metadata["image/png"] = {"width": w, "height": h}
    elif module.startswith("pandas") and cls.__name__ == "DataFrame":
        data["application/vnd.dataframe+json"] = _dataframe_json(obj)
    method = getattr(cls, "_repr_mimebundle_", None)
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
            if mime in data or getattr(cls, name, None) is None:
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
    for stream in (sys.stdout, sys.stderr):  # keep output and displays in order
        try:
            stream.flush()
        except Exception:
            pass
    import _host
    try:
        _host.call(DISPLAY_FRAME + doc.encode("utf-8"))
    except OSError:
        pass


def display(*objs, **_ignored):
    """Show each object as a rich output (IPython's display())."""
    for obj in objs:
        _emit(obj, "display_data")


def _show(*_args, **_kwargs):
    """plt.show(): every open figure becomes a PNG output, then is closed (as Jupyter's inline
    backend does)."""
    _flush_figures()


def _flush_figures():
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in plt.get_fignums():
        fig = plt.figure(num)
        _emit(fig, "display_data")
    plt.close("all")


# ---------------------------------------------------------------------------------------------
# Executions and cells

def _enter(env):
    import os

    data = os.environ._data
    data.clear()
    for key, value in env.items():
        data[os.fsencode(key)] = os.fsencode(value)
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    try:
        if sys.stdout.line_buffering != unbuffered:
            sys.stdout.reconfigure(line_buffering=unbuffered)
    except (AttributeError, ValueError):
        pass
    for cwd in (env.get("PWD"), "/"):
        if cwd:
            try:
                if os.getcwd() != cwd:  # a kernel's next cell: chdir costs host calls
                    os.chdir(cwd)
                break
            except OSError:
                pass
    for path in list(sys.path_importer_cache):
        if not path.endswith(".zip"):
            del sys.path_importer_cache[path]
    extra = env.get("PYTHONPATH")
    if extra:
        for p in reversed([p for p in extra.split(os.pathsep) if p]):
            if p not in sys.path:
                sys.path.insert(0, p)


def _reseed():
    if "random" in sys.modules:
        sys.modules["random"].seed()
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()


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
    """Print exc as the interpreter does for an uncaught exception, minus our own frames."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _report.__code__.co_filename:
        tb = tb.tb_next
    exc.__traceback__ = tb
    try:
        sys.excepthook(type(exc), exc, tb)
    except BaseException:
        import traceback
        traceback.print_exception(type(exc), exc, tb)


def execute(payload):
    """One execution (mode "run": a script in a fresh instance) or kernel cell (mode "cell": the
    last expression is displayed). -> the exit status, also left in `_wasmbox_data.status`."""
    import ast
    import json

    global status
    status = 0
    request = json.loads(payload)
    mode, source = request["mode"], request["code"]
    g = sys.modules["__main__"].__dict__
    try:
        _enter(request.get("env") or {})
        if mode == "run":
            _reseed()
            sys.argv = ["-c"]
            filename = "<string>"
        else:
            filename = "<cell>"
        if "" not in sys.path[:1]:
            sys.path.insert(0, "")
        # In a cell, a one-line expression (`x + 1`, the common cell) compiles straight to
        # `eval` code; anything else goes through the AST to split off a final expression.
        last = None
        if mode == "cell" and "\n" not in source.strip():
            try:
                last = compile(source, filename, "eval")
            except SyntaxError:
                pass
        if last is None:
            tree = ast.parse(source, filename, "exec")
            if mode == "cell" and tree.body and isinstance(tree.body[-1], ast.Expr):
                last = compile(ast.Expression(tree.body.pop().value), filename, "eval")
            exec(compile(tree, filename, "exec"), g)
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
    try:
        _flush_figures()
    except Exception as e:
        print(f"wasmbox: could not render the open figures: {e!r}", file=sys.stderr)
    # Descriptors do not outlive a turn's WASI context (a kernel's cells each get one, and a
    # restored kernel is a new instance): matplotlib's loaded fonts keep their files open, so
    # they are closed now, while the descriptors are valid, and loaded again when next used.
    font_manager = sys.modules.get("matplotlib.font_manager")
    if font_manager is not None:
        font_manager._get_font.cache_clear()
    if mode == "run":
        import atexit
        try:
            atexit._run_exitfuncs()
        except BaseException as e:
            _report(e)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            if status == 0:
                status = 120
    return status


status = 0
