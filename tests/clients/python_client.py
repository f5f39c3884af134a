"""The seed examples through the official Python SDK (hopx-ai 0.5.0) against wasmbox.

Configuration only: HOPX_API_KEY from the environment and base_url=WASMBOX_URL (the SDK reads
no environment variable for the base URL). Exits non-zero on the first failed check.
"""

import asyncio
import os

import traced

traced.trace("sync", __file__)

from hopx_ai import AsyncSandbox, Sandbox  # noqa: E402
from hopx_ai.errors import AgentError, HopxError, FileNotFoundError as HopxFileNotFoundError  # noqa: E402

from checks import BASE_URL, check  # noqa: E402


sandbox = Sandbox.create(template="code-interpreter", base_url=BASE_URL, env_vars={"FROM_CREATE": "c"})
check(sandbox.sandbox_id.startswith("sbx_"), "create", sandbox.sandbox_id)
info = sandbox.get_info()
check(info.status == "running" and info.public_host.endswith(sandbox.sandbox_id), "get_info", info)

result = sandbox.run_code('print("Hello, World!")')
check(result.stdout == "Hello, World!\n", "run_code stdout", result.stdout)
check(result.success is True and result.exit_code == 0, "run_code success", result)
check(isinstance(result.execution_time, float), "execution_time", result.execution_time)
check(result.rich_outputs == [], "no rich outputs", result.rich_outputs)

result = sandbox.run_code(
    'import os; print(os.getenv("API_KEY"), os.getenv("DEBUG"), os.getenv("FROM_CREATE"))',
    language="python",
    env={"API_KEY": "sk-123", "DEBUG": "true"},
)
check(result.stdout == "sk-123 true c\n", "python env", result.stdout)

result = sandbox.run_code("import os; print(os.getcwd())", language="python", working_dir="/tmp/myproject")
check(result.stdout == "/tmp/myproject\n", "python working_dir", result.stdout)

result = sandbox.run_code(
    "console.log(process.env.FOO, 6 * 7)",
    language="javascript",
    env={"FOO": "bar"},
    working_dir="/tmp",
    timeout=10,
)
check(result.stdout == "bar 42\n" and result.success, "javascript env/workdir/timeout", result)

result = sandbox.run_code(
    'package main\n\nimport (\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n\tfmt.Println("go", os.Getenv("FOO"))\n}\n',
    language="go",
    env={"FOO": "bar"},
    timeout=60,
)
check(result.stdout == "go bar\n" and result.success, "go run_code", result)

# The shell's `go run`: the same toolchain, building a file of the sandbox.
sandbox.files.write(
    "/tmp/gohello/main.go",
    'package main\n\nimport (\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n\tfmt.Println("args", os.Args[1:])\n}\n',
)
got = sandbox.commands.run("cd gohello && go run main.go x y", working_dir="/tmp", timeout=60)
check(got.stdout == "args [x y]\n" and got.exit_code == 0, "commands.run go run", got)

result = sandbox.run_code("print(undefined_var)", language="python")
check(result.success is False and result.exit_code == 1 and "NameError" in result.stderr, "failing code", result)

result = sandbox.run_code("import time; time.sleep(10)", timeout=2)
check(result.success is False and result.exit_code == 124, "timeout", result)

result = sandbox.run_code(
    "import base64\n"
    "class Chart:\n"
    "    def _repr_png_(self):\n"
    "        return base64.b64decode('iVBORw0KGgo=')\n"
    "    def _repr_html_(self):\n"
    "        return '<b>chart</b>'\n"
    "display(Chart())"
)
kinds = [list(o.data)[0] for o in result.rich_outputs]
check(kinds == ["image/png", "text/html"], "rich_outputs from display()", result.rich_outputs)
check(result.rich_outputs[0].data["image/png"] == "iVBORw0KGgo=", "png as base64", result.rich_outputs)

check(sandbox.get_jupyter_sessions() == [], "no kernels yet", sandbox.get_jupyter_sessions())
# hopx-ai has no run_ipython: start the kernel through its agent client, as the JS client does.
sandbox._agent_client.post("/execute/ipython", json={"code": "k = 1"}, operation="ipython cell")
cell = sandbox._agent_client.post(
    "/execute/ipython",
    json={"code": "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})\ndf"},
    operation="ipython cell",
).json()
check("<table" in cell.get("html", "") and cell["dataframe"]["columns"] == ["a", "b"]
      and any("text/html" in o["data"] for o in cell["rich_outputs"]),
      "a DataFrame as a cell's last value: text/html table", cell)
sessions = sandbox.get_jupyter_sessions()
# code-interpreter's python is the data runtime (the server's default).
check(len(sessions) == 1 and sessions[0]["kernel_id"] == "python-data"
      and sessions[0]["execution_state"] == "idle", "get_jupyter_sessions", sessions)


async def async_sessions():
    connected = await AsyncSandbox.connect(sandbox.sandbox_id, base_url=BASE_URL)
    return await connected.get_jupyter_sessions()


sessions = asyncio.run(async_sessions())
check([s["kernel_id"] for s in sessions] == ["python-data"], "async get_jupyter_sessions", sessions)

command = sandbox.commands.run("echo hello")
check(command.stdout == "hello\n" and command.exit_code == 0, "commands.run", command)
command = sandbox.commands.run("ls /nonexistent")
check(command.exit_code == 2 and "nonexistent" in command.stderr, "commands.run failing", command)

sandbox.env.set("MY_VAR", "1")
env = sandbox.env.get_all()
check(env.get("MY_VAR") == "1" and env.get("FROM_CREATE") == "c", "env.set/get_all", env)
result = sandbox.run_code('import os; print(os.environ["MY_VAR"])')
check(result.stdout == "1\n", "sandbox env reaches code", result.stdout)

sandbox.files.write("/workspace/a.txt", "hello")
check(sandbox.files.read("/workspace/a.txt") == "hello", "files.write/read")
sandbox.files.write_bytes("/workspace/b.bin", bytes(range(256)))
check(sandbox.files.exists("/workspace/b.bin"), "files.exists")
names = sorted(f.name for f in sandbox.files.list("/workspace"))
check(names == ["a.txt", "b.bin"], "files.list", names)
result = sandbox.run_code("print(open('/workspace/a.txt').read())")
check(result.stdout == "hello\n", "code sees written file", result.stdout)
try:
    sandbox.files.read("/workspace/missing.txt")
    check(False, "missing file raises")
except HopxFileNotFoundError:
    check(True, "missing file raises FileNotFoundError")

listed = [s.sandbox_id for s in Sandbox.list(base_url=BASE_URL)]
check(sandbox.sandbox_id in listed, "Sandbox.list", listed)

# Metrics, agent info, the cache (the sandbox's /tmp).
metrics = sandbox.get_metrics_snapshot()
check(metrics["system"]["cpu"]["usage_percent"] >= 0 and metrics["process"]["count"] >= 0
      and metrics["executions"]["executions"] > 0, "get_metrics_snapshot", metrics)
agent = sandbox.get_agent_metrics()
check(agent["total_requests"] > 0 and "total_errors" in agent, "get_agent_metrics", agent)
check(sandbox.get_agent_info()["agent"] == "wasmbox", "get_agent_info")
before = sandbox.cache.stats()["count"]
sandbox.run_code("open('/tmp/cached.txt', 'w').write('x' * 100)")
stats = sandbox.cache.stats()
check(stats["count"] == before + 1 and stats["hits"] == 0, "cache.stats", stats)
cleared = sandbox.cache.clear()
check(cleared["entries_removed"] == before + 1 and sandbox.cache.stats()["count"] == 0, "cache.clear", cleared)


async def async_metrics():
    connected = await AsyncSandbox.connect(sandbox.sandbox_id, base_url=BASE_URL)
    return (await connected.get_metrics_snapshot(), await connected.get_agent_info(),
            await connected.list_system_processes())


metrics, agent_info, system = asyncio.run(async_metrics())

# run_code_async: the result is POSTed, signed, to a receiver on loopback.
import hashlib
import hmac
import http.server
import json
import threading
import time

received = []


class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        received.append((self.headers, self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


hook = http.server.HTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=hook.serve_forever, daemon=True).start()


async def async_webhook():
    connected = await AsyncSandbox.connect(sandbox.sandbox_id, base_url=BASE_URL)
    return await connected.run_code_async(
        "print('hooked')", callback_url=f"http://127.0.0.1:{hook.server_port}/cb",
        callback_signature_secret="s3cret", callback_headers={"X-Trace": "t1"})


queued = asyncio.run(async_webhook())
check(queued["status"] == "queued" and queued["execution_id"], "run_code_async", queued)
deadline = time.time() + 30
while not received and time.time() < deadline:
    time.sleep(0.05)
check(received, "callback received")
headers, body = received[0]
payload = json.loads(body)
expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
check(payload["execution_id"] == queued["execution_id"] and payload["stdout"] == "hooked\n"
      and headers.get("X-HOPX-Signature") == expected and headers.get("X-Trace") == "t1",
      "callback signed", (headers, payload))

check(metrics["system"]["memory"]["limit_bytes"] > 0, "async get_metrics_snapshot", metrics)
check(agent_info["agent"] == "wasmbox" and isinstance(system, list), "async get_agent_info/list_system_processes")


# Background work: started at once, listed, killed; commands too.
started = sandbox.run_code_background(
    "import time\nprint('bg', flush=True)\ntime.sleep(30)", name="sleeper"
)
bg_id = started["process_id"]
check(started["status"] == "running" and bg_id.startswith("proc_"), "run_code_background", started)
procs = sandbox.list_processes()
check(any(p["process_id"] == bg_id and p["status"] == "running" and p["name"] == "sleeper"
          for p in procs), "list_processes", procs)
# Killed once it has printed (its interpreter may still be loading: code-interpreter's python is
# the data runtime, whose first instance in a server takes longer).
for _ in range(100):
    if any(p["process_id"] == bg_id and p.get("stdout", "").startswith("bg") for p in sandbox.list_processes()):
        break
    time.sleep(0.1)
killed = sandbox.kill_process(bg_id)
check(killed["status"] == "killed" and killed["stdout"].startswith("bg"), "kill_process", killed)
procs = sandbox.list_processes()
check([p["status"] for p in procs if p["process_id"] == bg_id] == ["killed"], "killed is listed", procs)
command = sandbox.commands.run("echo from-bg; sleep 30", background=True)
check(command.stdout.startswith("Background process started: cmd_"), "commands.run(background=True)", command)
cmd_id = command.stdout.rsplit(" ", 1)[-1]
system = sandbox.list_system_processes()
check(any(p["process_id"] == cmd_id and isinstance(p["pid"], int) and p["name"] for p in system),
      "list_system_processes", system)
check(sandbox.kill_process(cmd_id)["status"] == "killed", "kill a background command")


async def stream_code():
    return [m async for m in sandbox.run_code_stream(
        "import time\nfor i in range(3):\n    print('line', i)\n    time.sleep(0.2)")]


messages = asyncio.run(stream_code())
check([m["type"] for m in messages] == ["stdout", "stdout", "stdout", "result", "complete"],
      "run_code_stream frames", messages)
check("".join(m["data"] for m in messages if m["type"] == "stdout") == "line 0\nline 1\nline 2\n"
      and messages[3]["exit_code"] == 0 and messages[4]["success"] is True, "run_code_stream", messages)


async def async_background():
    connected = await AsyncSandbox.connect(sandbox.sandbox_id, base_url=BASE_URL)
    started = await connected.run_code_background("import time; time.sleep(30)", name="async-job")
    listed = await connected.list_processes()
    killed = await connected.kill_process(started["process_id"])
    return started, listed, killed


started, listed, killed = asyncio.run(async_background())
check(any(p["process_id"] == started["process_id"] and p["status"] == "running" for p in listed),
      "async run_code_background + list_processes", listed)
check(killed["status"] == "killed", "async kill_process", killed)



async def terminal_session(terminal):
    """Types into an interactive shell; -> the output and the exit code."""
    output, code = "", None
    async with await terminal.connect() as ws:
        await terminal.resize(ws, cols=100, rows=30)
        await terminal.send_input(ws, "x=41; cd /tmp\r")
        await terminal.send_input(ws, "echo $((x + 1)) $PWD\n")
        await terminal.send_input(ws, "exit 3\n")
        async for message in terminal.iter_output(ws):
            if message["type"] == "output":
                output += message["data"]
            elif message["type"] == "exit":
                code = message["code"]
                break
    return output, code


output, code = asyncio.run(terminal_session(sandbox.terminal))
check("42 /tmp\r\n" in output and "echo $((x + 1)) $PWD\r\n" in output and code == 3,
      "terminal connect/send_input/resize/iter_output (state kept between lines, echo, exit code)",
      (output, code))


async def async_terminal():
    connected = await AsyncSandbox.connect(sandbox.sandbox_id, base_url=BASE_URL)
    return await terminal_session(connected.terminal)


output, code = asyncio.run(async_terminal())
check("42 /tmp\r\n" in output and code == 3, "async terminal", (output, code))


# The rest of the sync surface: class methods, tokens and expiry, files, env.
health = Sandbox.health_check(base_url=BASE_URL)
check(health.get("status") in ("ok", "healthy"), "health_check", health)
check(any(t.name == "code-interpreter" for t in Sandbox.list_templates(base_url=BASE_URL)),
      "list_templates")
check(Sandbox.get_template("code-interpreter", base_url=BASE_URL).name == "code-interpreter",
      "get_template")
try:
    Sandbox.delete_template("code-interpreter", base_url=BASE_URL)
    check(False, "delete_template refused")
except HopxError as e:
    check("built in" in str(e), "delete_template refused: templates are built in", e)
check(sandbox.sandbox_id in [s.sandbox_id for s in Sandbox.iter(base_url=BASE_URL)], "iter")
again = Sandbox.connect(sandbox.sandbox_id, base_url=BASE_URL)
check(again.run_code("print(2)").stdout == "2\n", "connect")
token = sandbox.get_token()
check(token.count(".") == 2, "get_token", token)
sandbox.refresh_token()
check(sandbox.get_token().count(".") == 2, "refresh_token")
debug = Sandbox.debug(agent_url=sandbox.get_info().public_host, jwt_token=sandbox.get_token(),
                      sandbox_id=sandbox.sandbox_id)
check(debug.run_code("print('via debug')").stdout == "via debug\n", "debug (agent URL + token)")
sandbox.set_timeout(900)
ttl = sandbox.get_time_to_expiry()
check(ttl is not None and 800 < ttl <= 900, "set_timeout + get_time_to_expiry", ttl)
check(sandbox.is_expiring_soon() is False, "is_expiring_soon")
expiry = sandbox.get_expiry_info()
check(expiry.has_timeout and not expiry.is_expired, "get_expiry_info", expiry)
check(sandbox.is_healthy() is True, "is_healthy")
sandbox.ensure_healthy()

check(sandbox.files.read_bytes("/workspace/b.bin") == bytes(range(256)), "files.read_bytes")
sandbox.files.mkdir("/workspace/up/nested")
check(sandbox.files.exists("/workspace/up/nested"), "files.mkdir")
import tempfile  # noqa: E402

with tempfile.TemporaryDirectory() as local:
    source = os.path.join(local, "in.bin")
    with open(source, "wb") as f:
        f.write(b"\x00upload\xff")
    sandbox.files.upload(source, "/workspace/up/in.bin")
    target = os.path.join(local, "out.bin")
    sandbox.files.download("/workspace/up/in.bin", target)
    with open(target, "rb") as f:
        check(f.read() == b"\x00upload\xff", "files.upload + files.download")
sandbox.files.remove("/workspace/up")
check(not sandbox.files.exists("/workspace/up"), "files.remove")


async def watch_once():
    events = []

    async def watch():
        async for event in sandbox.files.watch("/workspace"):
            events.append(event)
            if event.get("path", "").endswith("seen.txt"):
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.5)
    await asyncio.to_thread(sandbox.files.write, "/workspace/seen.txt", "x")
    await asyncio.wait_for(task, 20)
    return events


events = asyncio.run(watch_once())
check(any(e["path"].endswith("seen.txt") for e in events), "files.watch", events)

check(sandbox.env.get("MY_VAR") == "1" and sandbox.env.get("NOPE", "d") == "d", "env.get")
check(sandbox.env.update({"U": "u"}).get("U") == "u", "env.update")
sandbox.env.set("MY_TOKEN", "t0ps3cret")
check(sandbox.env.get_all().get("MY_TOKEN") == "***MASKED***", "secret-looking values are masked")
sandbox.env.delete("U")  # the SDK PUTs the masked listing back
check(sandbox.run_code("import os; print(os.environ['MY_TOKEN'])").stdout == "t0ps3cret\n",
      "a masked value written back keeps the secret")
check(sandbox.env.get("U") is None, "env.delete")
replaced = sandbox.env.set_all({"ONLY": "x"})
check(replaced.get("ONLY") == "x" and "MY_VAR" not in replaced, "env.set_all", replaced)

queued = sandbox.run_code_async("print('sync hook')",
                                callback_url=f"http://127.0.0.1:{hook.server_port}/cb2")
check(queued["status"] == "queued", "run_code_async (sync)", queued)
deadline = time.time() + 30
while len(received) < 2 and time.time() < deadline:
    time.sleep(0.05)
check(len(received) >= 2 and b"sync hook" in received[-1][1], "sync run_code_async delivered")

sandbox.pause()
check(sandbox.get_info().status == "paused", "pause")
sandbox.resume()
check(sandbox.get_info().status == "running", "resume")


# The bash issue's reproducers through commands.run, each against native bash in an empty
# directory (stdout and exit status).
import subprocess  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "bash_reproducers.txt")) as f:
    reproducers = [line.rstrip("\n") for line in f if line.strip() and not line.startswith("#")]
mismatches = []
for i, script in enumerate(reproducers):
    with tempfile.TemporaryDirectory() as empty:
        native = subprocess.run(["bash", "-c", script], cwd=empty, capture_output=True,
                                env={**os.environ, "HOME": empty, "LC_ALL": "C.UTF-8"})
    expected = (native.stdout.decode(errors="replace"), native.returncode)
    got = sandbox.commands.run(script, working_dir=f"/workspace/repro{i}", timeout=30)
    if (got.stdout, got.exit_code) != expected:
        mismatches.append((script, expected, (got.stdout, got.exit_code, got.stderr)))
check(len(reproducers) >= 30 and not mismatches, "bash reproducers through commands.run match bash",
      mismatches)

sandbox.kill()
listed = [s.sandbox_id for s in Sandbox.list(base_url=BASE_URL)]
check(sandbox.sandbox_id not in listed, "kill", listed)
traced.report("python")
print("PYTHON CLIENT OK", flush=True)
