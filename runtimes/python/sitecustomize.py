# Imported by CPython's `site` at start-up (wasmbox puts this folder on PYTHONPATH, read-only).
# WASI processes always start in "/"; move to the working directory the host asked for.
import os as _os

try:
    _os.chdir(_os.environ.get("PWD", "/workspace"))
except OSError:
    pass
_os.environ.pop("PYTHONPATH", None)
del _os
