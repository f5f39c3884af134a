#!/usr/bin/env python3
"""Record the expected stdout/exit status of every snippet in cases.txt by running Debian's dash
natively (LC_ALL=C, fresh empty working directory each). Writes cases.json next to this file.
Usage: python3 record_cases.py [--check]   (--check: compare with the existing cases.json only)"""
import json, os, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

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

def run_dash(script):
    with tempfile.TemporaryDirectory() as d:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LC_ALL": "C", "PWD": d}
        p = subprocess.run(["dash", "-c", script], cwd=d, env=env, capture_output=True, timeout=30)
        return p.stdout.decode("utf-8", "replace"), p.returncode

def main():
    cases = parse_cases(os.path.join(HERE, "cases.txt"))
    out = []
    for name, script in cases:
        stdout, status = run_dash(script)
        out.append({"name": name, "script": script, "stdout": stdout, "status": status})
    path = os.path.join(HERE, "cases.json")
    if "--check" in sys.argv:
        old = json.load(open(path))
        bad = [a["name"] for a, b in zip(old, out) if a != b]
        print("mismatches:", bad)
        sys.exit(1 if bad or len(old) != len(out) else 0)
    json.dump(out, open(path, "w"), indent=1, ensure_ascii=False)
    open(path, "a").write("\n")
    print(f"recorded {len(out)} cases")

main()
