"""The seed examples through the official Python SDK (hopx-ai 0.5.0) against wasmbox.

Configuration only: HOPX_API_KEY from the environment and base_url=WASMBOX_URL (the SDK reads
no environment variable for the base URL). Exits non-zero on the first failed check.
"""

import asyncio
import os
import sys

from hopx_ai import AsyncSandbox, Sandbox
from hopx_ai.errors import AgentError, FileNotFoundError as HopxFileNotFoundError

BASE_URL = os.environ["WASMBOX_URL"]


def check(condition, what, value=None):
    if not condition:
        print(f"FAIL: {what}: {value!r}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


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
sessions = sandbox.get_jupyter_sessions()
check(len(sessions) == 1 and sessions[0]["kernel_id"] == "python"
      and sessions[0]["execution_state"] == "idle", "get_jupyter_sessions", sessions)


async def async_sessions():
    connected = await AsyncSandbox.connect(sandbox.sandbox_id, base_url=BASE_URL)
    return await connected.get_jupyter_sessions()


sessions = asyncio.run(async_sessions())
check([s["kernel_id"] for s in sessions] == ["python"], "async get_jupyter_sessions", sessions)

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

sandbox.kill()
listed = [s.sandbox_id for s in Sandbox.list(base_url=BASE_URL)]
check(sandbox.sandbox_id not in listed, "kill", listed)
print("PYTHON CLIENT OK", flush=True)
