"""What every client script shares: the server's URL and `check`, which exits non-zero on the
first failed check (tests/api_official_clients.rs reads the `ok:`/`FAIL:` lines)."""

import os
import sys

BASE_URL = os.environ["WASMBOX_URL"]


def check(condition, what, value=None):
    if not condition:
        print(f"FAIL: {what}: {value!r}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)
