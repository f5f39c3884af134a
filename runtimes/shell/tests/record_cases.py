#!/usr/bin/env python3
"""Record the expected stdout/exit status of every snippet of a case file by running the reference
shell natively (LC_ALL=C or C.UTF-8, fresh empty working directory each) and write them next to it as JSON.

  python3 record_cases.py [dash|bash] [--check]

dash (the default): cases.txt -> cases.json, run with Debian's dash (the sh-mode table).
bash:               bash_cases.txt -> bash_cases.json, run with Debian's bash (the bash-mode table).
--check: only compare with the existing JSON (exit 1 on any difference)."""
import json, os, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
# (cases, recording, locale): our shell works on UTF-8 text, so bash (whose $'\u…' and ${#v}
# follow the locale) is recorded in C.UTF-8; dash has no locale-dependent behaviour here.
TABLES = {
    "dash": ("cases.txt", "cases.json", "C"),
    "bash": ("bash_cases.txt", "bash_cases.json", "C.UTF-8"),
}

def parse_cases(path):
    cases, name, buf = [], None, []
    for line in open(path, encoding="utf-8").read().split("\n"):
        if line.startswith("### "):
            if name is not None:
                cases.append((name, "\n".join(buf).rstrip("\n") + "\n"))
            name, buf = line[4:].strip(), []
        else:
            buf.append(line)
    if name is not None:
        cases.append((name, "\n".join(buf).rstrip("\n") + "\n"))
    return cases

def run(shell, script, locale):
    with tempfile.TemporaryDirectory() as d:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LC_ALL": locale, "PWD": d}
        p = subprocess.run([shell, "-c", script], cwd=d, env=env, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=30)
        return p.stdout.decode("utf-8", "replace"), p.returncode

def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    shell = args[0] if args else "dash"
    if shell not in TABLES:
        sys.exit(f"unknown table {shell!r} (expected one of {', '.join(TABLES)})")
    src, dst, locale = TABLES[shell]
    cases = parse_cases(os.path.join(HERE, src))
    names = [n for n, _ in cases]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        sys.exit(f"duplicate case names: {dup}")
    out = []
    for name, script in cases:
        stdout, status = run(shell, script, locale)
        out.append({"name": name, "script": script, "stdout": stdout, "status": status})
    path = os.path.join(HERE, dst)
    if "--check" in sys.argv:
        old = json.load(open(path))
        bad = [a["name"] for a, b in zip(old, out) if a != b]
        print("mismatches:", bad)
        sys.exit(1 if bad or len(old) != len(out) else 0)
    json.dump(out, open(path, "w"), indent=1, ensure_ascii=False)
    open(path, "a").write("\n")
    print(f"recorded {len(out)} cases from {shell}")

main()
