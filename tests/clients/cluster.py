"""A 3-node wasmbox cluster on loopback, driven through the official Python SDK (hopx-ai 0.5.0)
and plain HTTP (tests/cluster.rs runs this inside a loopback-only network namespace, so the
fixed ports below are free and nothing outside can be reached).

usage: cluster.py WASMBOX_BIN DATA_DIR
Exits non-zero on the first failed check.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import time

import httpx

KEY = "wasmbox-cluster-test"
SECRET = "cluster-secret-for-tests"
NODES = ["n1", "n2", "n3"]
PORTS = {"n1": 18081, "n2": 18082, "n3": 18083}
URLS = {n: f"http://127.0.0.1:{p}" for n, p in PORTS.items()}
HEADERS = {"X-API-Key": KEY}

bin_path, data = sys.argv[1], sys.argv[2]
os.environ["WASMBOX_URL"] = URLS["n1"]
os.environ["HOPX_API_KEY"] = KEY

from checks import check  # noqa: E402
from hopx_ai import Sandbox  # noqa: E402

procs = {}


def start(node):
    log = open(os.path.join(data, f"{node}.log"), "ab")
    procs[node] = subprocess.Popen(
        [bin_path, "serve", "--listen", f"127.0.0.1:{PORTS[node]}", "--data-dir", os.path.join(data, node),
         "--api-key", KEY, "--node-id", node, "--peers", ",".join(URLS.values()), "--cluster-secret", SECRET],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        env={**os.environ, "WASMBOX_LOG": "info"},
    )


def health(node):
    try:
        r = httpx.get(f"{URLS[node]}/health", timeout=2)
        return r.json() if r.status_code == 200 else None
    except httpx.HTTPError:
        return None


def wait_for(what, condition, seconds=60):
    """Polls `condition` until it holds; the deadline only bounds a hang, nothing is timed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            print(f"ok: {what}", flush=True)
            return
        time.sleep(0.1)
    check(False, f"waiting for {what}")


def sees(node, up, down=()):
    h = health(node)
    if not h:
        return False
    state = {p["node_id"]: p["healthy"] for p in h.get("peers", []) if p.get("node_id")}
    return all(state.get(n) is True for n in up) and all(state.get(n) is False for n in down)


def owner(sandbox_id):
    return sandbox_id.split("_")[1]


def api(method, node, path, **kw):
    return httpx.request(method, f"{URLS[node]}{path}", headers=HEADERS, timeout=30, **kw)


def list_all(node, limit):
    ids, cursor, pages = [], None, 0
    while True:
        params = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = api("GET", node, "/v1/sandboxes", params=params)
        check(r.status_code == 200, f"list page from {node}", r.text[:300])
        body = r.json()
        ids += [s["id"] for s in body["data"]]
        check(all("cursor" not in s for s in body["data"]), "merged items carry no internal cursor")
        pages += 1
        if not body["has_more"]:
            return ids, pages, r.headers.get("x-wasmbox-cluster-partial")
        cursor = body["next_cursor"]


def exercise(sbx, via, tag):
    """Runs python, javascript and bash, writes and reads a file, through the SDK."""
    r = sbx.run_code(f'print("py {tag}")')
    check(r.stdout == f"py {tag}\n", f"python on {owner(sbx.sandbox_id)} via {via}", r.stdout)
    r = sbx.run_code(f'console.log("js {tag}")', language="javascript")
    check(r.stdout == f"js {tag}\n", f"javascript on {owner(sbx.sandbox_id)} via {via}", r.stdout)
    r = sbx.run_code(f'echo "sh {tag}" | tr a-z A-Z', language="bash")
    check(r.stdout == f"SH {tag.upper()}\n", f"bash on {owner(sbx.sandbox_id)} via {via}", r.stdout)
    sbx.files.write(f"/workspace/{tag}.txt", f"file {tag}")
    check(sbx.files.read(f"/workspace/{tag}.txt") == f"file {tag}", f"files on {owner(sbx.sandbox_id)} via {via}")


try:
    for node in NODES:
        start(node)
    for node in NODES:
        wait_for(f"{node} sees both peers", lambda n=node: sees(n, [m for m in NODES if m != n]))

    # 300 creates through n1 spread over every node.
    def create(i):
        r = api("POST", "n1", "/v1/sandboxes", json={"template_name": "code-interpreter", "env_vars": {"I": str(i)}})
        check(r.status_code == 201, "create through n1", r.text[:300])
        body = r.json()
        check(body["public_host"] == f"{URLS[owner(body['id'])]}/sandboxes/{body['id']}", "public_host names the owner", body)
        return body["id"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        created = list(pool.map(create, range(300)))
    env_of = {sandbox_id: str(i) for i, sandbox_id in enumerate(created)}
    per_node = {n: sum(1 for i in created if owner(i) == n) for n in NODES}
    print(f"spread: {per_node}", flush=True)
    check(all(count >= 60 for count in per_node.values()), "300 creates spread over all nodes", per_node)

    for node in NODES:
        ids, pages, partial = list_all(node, 70)
        check(sorted(ids) == sorted(created) and len(ids) == 300 and pages == 5 and partial is None,
              f"list from {node} returns all 300 in 5 pages", (len(ids), pages, partial))
    check(len(api("GET", "n2", "/v1/sandboxes").json()["data"]) == 100, "default page size 100")

    # The SDK through every node, on sandboxes of every node.
    by_owner = {n: [i for i in created if owner(i) == n] for n in NODES}
    for via in NODES:
        fresh = Sandbox.create(template="code-interpreter", base_url=URLS[via])
        exercise(fresh, via, f"fresh{via}")
        for own in NODES:
            sbx = Sandbox.connect(by_owner[own][0], base_url=URLS[via])
            exercise(sbx, via, f"c{via}{own}")
            info = sbx.get_info()
            check(info.public_host.startswith(URLS[own]), f"get_info via {via} names owner {own}", info.public_host)
            doomed = Sandbox.connect(by_owner[own].pop(), base_url=URLS[via])
            doomed.kill()
            r = api("GET", via, f"/v1/sandboxes/{doomed.sandbox_id}")
            check(r.status_code == 404, f"kill on {own} via {via}", r.status_code)
            created.remove(doomed.sandbox_id)
        fresh.kill()

    # A token minted by the owner (through n1) works on the owner's agent directly and through
    # another node's agent route (forwarded).
    n2_sbx = by_owner["n2"][1]
    token = api("POST", "n1", f"/v1/sandboxes/{n2_sbx}/token/refresh").json()["auth_token"]
    for via in NODES:
        r = httpx.post(f"{URLS[via]}/sandboxes/{n2_sbx}/execute", headers={"Authorization": f"Bearer {token}"},
                       json={"code": "print(6*7)", "language": "python"}, timeout=60)
        check(r.status_code == 200 and r.json()["stdout"] == "42\n", f"token of n2 sandbox via {via}", r.text[:300])

    # A WebSocket to n1 about n2's sandbox is forwarded to n2 and spliced.
    from websockets.sync.client import connect as ws_connect  # the SDK's own dependency

    with ws_connect(f"ws://127.0.0.1:{PORTS['n1']}/sandboxes/{n2_sbx}/execute/stream",
                    additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        ws.send('{"code": "print(\'streamed\')", "language": "python"}')
        frames = []
        while not frames or frames[-1].get("type") != "complete":
            frames.append(json.loads(ws.recv(timeout=60)))
    out = "".join(f.get("data", "") for f in frames if f.get("type") == "stdout")
    check(out == "streamed\n" and frames[-1].get("success") is True, "WebSocket forwarded n1 -> n2", frames)

    # kill -9 n3: only its sandboxes become unavailable.
    n3_sbx = Sandbox.connect(by_owner["n3"][1], base_url=URLS["n1"])
    n3_sbx.files.write("/workspace/keep.txt", "survives")
    r = api("POST", "n1", f"/sandboxes/{n3_sbx.sandbox_id}/execute/ipython", json={"code": "kept = 41"})
    check(r.status_code == 200, "kernel cell on n3 via n1", r.text[:300])
    procs["n3"].kill()
    procs["n3"].wait()
    for node in ["n1", "n2"]:
        wait_for(f"{node} sees n3 down", lambda n=node: sees(n, [m for m in ["n1", "n2"] if m != n], ["n3"]))
    for via in ["n1", "n2"]:
        for path in [f"/v1/sandboxes/{n3_sbx.sandbox_id}", f"/sandboxes/{n3_sbx.sandbox_id}/files/read?path=/workspace/keep.txt"]:
            r = api("GET", via, path)
            check(r.status_code == 503 and "NODE_UNAVAILABLE" in r.text, f"n3 sandbox via {via} is 503 NODE_UNAVAILABLE", (r.status_code, r.text[:200]))
        for own in ["n1", "n2"]:
            sbx = Sandbox.connect(by_owner[own][1], base_url=URLS[via])
            exercise(sbx, via, f"down{via}{own}")
    new_ids = [api("POST", via, "/v1/sandboxes", json={}).json()["id"] for via in ["n1", "n2"] for _ in range(10)]
    check(len(new_ids) == 20 and all(owner(i) in ("n1", "n2") for i in new_ids), "creates succeed on healthy nodes", new_ids)
    created += new_ids
    ids, _, partial = list_all("n2", 100)
    check(sorted(ids) == sorted(i for i in created if owner(i) != "n3") and partial == "n3",
          "list while n3 is down: the rest, n3 named as missing", (len(ids), partial))

    # n3 comes back with the same data dir: everything is back, through every node.
    start("n3")
    for node in NODES:
        wait_for(f"{node} sees everyone after the restart", lambda n=node: sees(n, [m for m in NODES if m != n]))
    for via in NODES:
        again = Sandbox.connect(n3_sbx.sandbox_id, base_url=URLS[via])
        check(again.files.read("/workspace/keep.txt") == "survives", f"n3 file after restart via {via}")
        exercise(again, via, f"back{via}")
        r = again.run_code('import os; print(os.getenv("I"))')
        check(r.stdout == env_of[again.sandbox_id] + "\n", f"n3 env after restart via {via}", r.stdout)
        r = api("POST", via, f"/sandboxes/{again.sandbox_id}/execute/ipython", json={"code": "kept = kept + 1\nkept"})
        check(r.status_code == 200 and r.json().get("result") == str(42 + NODES.index(via)),
              f"n3 kernel state after restart via {via}", r.text[:300])
        ids, _, partial = list_all(via, 1000)
        check(sorted(ids) == sorted(created) and partial is None, f"list from {via} after restart", len(ids))
    print("cluster: all checks passed", flush=True)
finally:
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    for node, proc in procs.items():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
