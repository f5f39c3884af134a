"""Debian packages of another suite, downloaded without touching the system's apt state.

Shared by the recipes that need newer upstream sources or binaries than the system's release has
(runtimes/python/build_cpython.py, runtimes/go/build_go.py): a private apt state (sources, lists,
cache in a folder of the build tree) whose one entry is derived from the system's own Debian
sources (same URIs and keyring), so no archive address is written down here. Nothing is
installed: packages are fetched with `apt-get download`/`apt-get source --download-only` and
unpacked privately.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path


def run_logged(cmd, log_path: Path, f, what: str, cwd=None, env=None) -> None:
    """Run cmd with its output in log_path; on failure raise with the log's tail."""
    with open(log_path, "ab") as log:
        log.write(f"$ {' '.join(map(str, cmd))}\n".encode())
        log.flush()
        try:
            p = subprocess.run(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise f.FetchError(f"{what}: command not found: {cmd[0]}") from None
    if p.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise f.FetchError(f"{what} failed (exit {p.returncode}); log: {log_path}\n{tail}")


def system_debian_source() -> dict:
    """URIs and keyring of the system's main Debian archive entry (deb822 or one-line)."""
    entries = []
    parts = Path("/etc/apt/sources.list.d")
    for path in sorted(parts.glob("*.sources")) if parts.is_dir() else []:
        for stanza in re.split(r"\n\s*\n", path.read_text(errors="replace")):
            fields = {}
            for line in stanza.splitlines():
                m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                if m:
                    fields[m.group(1).lower()] = m.group(2).strip()
            if fields.get("enabled", "yes").lower() == "no":
                continue
            if "uris" in fields and "suites" in fields:
                entries.append((fields["uris"].split(), fields["suites"].split(),
                                fields.get("components", "main").split(),
                                fields.get("signed-by")))
    one_line = [Path("/etc/apt/sources.list")]
    one_line += sorted(parts.glob("*.list")) if parts.is_dir() else []
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            m = re.match(r"^\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", line)
            if m:
                opts = m.group(1) or ""
                signed = re.search(r"signed-by=(\S+?)\]?(\s|$)", opts)
                entries.append(([m.group(2)], [m.group(3)], m.group(4).split(),
                                signed.group(1) if signed else None))
    for uris, suites, _components, signed_by in entries:
        # The main archive: a plain release name (no -security/-updates), and "main".
        if any("-" not in s and "/" not in s for s in suites) and any(
                u.rstrip("/").endswith("/debian") for u in uris):
            return {"uris": uris, "signed_by": signed_by}
    raise RuntimeError("no Debian archive entry (a 'deb' line for a release of the "
                       "'/debian' archive) in /etc/apt/sources.list{,.d/}")


def apt_options(state: Path) -> list[str]:
    return [
        "-o", "Dir::Etc::sourcelist=/dev/null",
        "-o", f"Dir::Etc::sourceparts={state / 'sources.list.d'}",
        "-o", "Dir::Etc::preferences=/dev/null",
        "-o", f"Dir::Etc::preferencesparts={state / 'preferences.d'}",
        "-o", f"Dir::State::Lists={state / 'lists'}",
        "-o", f"Dir::Cache={state / 'cache'}",
        "-o", "Dir::State::status=/dev/null",
        "-o", "APT::Sandbox::User=root",
        "-o", "Acquire::Languages=none",
        "-o", "Debug::NoLocking=true",
    ]


def private_apt(state: Path, suite: str, log: Path, f, what: str,
                types: str = "deb deb-src") -> list[str]:
    """Set up a private apt state listing `suite`, run `apt-get update` in it, and return the
    apt-get command line (with its options) to use it."""
    for d in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial"):
        (state / d).mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        base = system_debian_source()
    except (OSError, RuntimeError) as e:
        raise f.FetchError(f"{what}: {e}") from None
    stanza = (f"Types: {types}\nURIs: {' '.join(base['uris'])}\nSuites: {suite}\n"
              f"Components: main\n")
    if base["signed_by"]:
        stanza += f"Signed-By: {base['signed_by']}\n"
    (state / "sources.list.d" / f"wasmbox-{suite}.sources").write_text(stanza)
    apt = ["apt-get", *apt_options(state)]
    run_logged([*apt, "update"], log, f, f"{what}: apt-get update (private {suite} list)",
               env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return apt
