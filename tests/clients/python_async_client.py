"""Every public method of the official async Python SDK (hopx-ai 0.5.0, `AsyncSandbox` and its
`files`, `commands`, `env`, `cache`, `terminal`) against wasmbox, with assertions on what comes
back. The README's compatibility table is checked against the `COVERED` line this prints.

Configuration only: HOPX_API_KEY from the environment and base_url=WASMBOX_URL.
"""

import asyncio

import traced

traced.trace("async", __file__)

from hopx_ai import AsyncSandbox  # noqa: E402
from hopx_ai.errors import HopxError  # noqa: E402

from checks import BASE_URL, check  # noqa: E402


async def main():
    health = await AsyncSandbox.health_check(base_url=BASE_URL)
    check(health.get("status") in ("ok", "healthy"), "health_check", health)
    templates = await AsyncSandbox.list_templates(base_url=BASE_URL)
    check(any(t.name == "code-interpreter" for t in templates), "list_templates", templates)
    template = await AsyncSandbox.get_template("code-interpreter", base_url=BASE_URL)
    check(template.name == "code-interpreter", "get_template", template)
    try:
        await AsyncSandbox.delete_template("code-interpreter", base_url=BASE_URL)
        check(False, "delete_template refused")
    except HopxError as e:
        check("built in" in str(e), "delete_template refused: templates are built in", e)

    async with AsyncSandbox.create(template="code-interpreter", base_url=BASE_URL,
                                   env_vars={"A": "1"}) as sandbox:
        sid = sandbox.sandbox_id
        info = await sandbox.get_info()
        check(info.sandbox_id == sid and info.status == "running", "create + get_info", info)
        token = await sandbox.get_token()
        check(token.count(".") == 2, "get_token (a JWT)", token)
        await sandbox.refresh_token()
        check(await sandbox.get_token() != "", "refresh_token")

        ttl = await sandbox.get_time_to_expiry()
        check(ttl is None or ttl > 0, "get_time_to_expiry", ttl)
        await sandbox.set_timeout(600)
        ttl = await sandbox.get_time_to_expiry()
        check(ttl is not None and 500 < ttl <= 600, "set_timeout moves the expiry", ttl)
        check(await sandbox.is_expiring_soon(threshold_seconds=60) is False, "is_expiring_soon")
        expiry = await sandbox.get_expiry_info()
        check(expiry.has_timeout and not expiry.is_expired, "get_expiry_info", expiry)
        check(await sandbox.is_healthy() is True, "is_healthy")
        await sandbox.ensure_healthy()
        check(True, "ensure_healthy")

        listed = [s.sandbox_id for s in await AsyncSandbox.list(base_url=BASE_URL)]
        check(sid in listed, "list", listed)
        iterated = [s.sandbox_id async for s in AsyncSandbox.iter(base_url=BASE_URL)]
        check(sid in iterated, "iter", iterated)
        connected = await AsyncSandbox.connect(sid, base_url=BASE_URL)
        check(connected.sandbox_id == sid, "connect")

        result = await sandbox.run_code("import os; print(6 * 7, os.environ['A'])")
        check(result.stdout == "42 1\n" and result.success, "run_code", result)
        result = await sandbox.run_code("import time; time.sleep(5)", timeout_seconds=1)
        check(result.success is False and result.exit_code == 124, "run_code timeout", result)
        frames = [m async for m in sandbox.run_code_stream("print('s1'); print('s2')")]
        check([f["type"] for f in frames][-2:] == ["result", "complete"]
              and "".join(f.get("data", "") for f in frames if f["type"] == "stdout") == "s1\ns2\n",
              "run_code_stream", frames)
        started = await sandbox.run_code_background("import time; time.sleep(30)", name="bg")
        processes = await sandbox.list_processes()
        check(any(p["process_id"] == started["process_id"] and p["status"] == "running"
                  for p in processes), "run_code_background + list_processes", processes)
        system = await sandbox.list_system_processes()
        check(any(p["process_id"] == started["process_id"] for p in system),
              "list_system_processes", system)
        killed = await sandbox.kill_process(started["process_id"])
        check(killed["status"] == "killed", "kill_process", killed)

        await sandbox._agent_client.post("/execute/ipython", json={"code": "k = 1"},
                                         operation="ipython cell")
        sessions = await sandbox.get_jupyter_sessions()
        check([s["kernel_id"] for s in sessions] == ["python-data"], "get_jupyter_sessions", sessions)
        agent = await sandbox.get_agent_info()
        check(agent["agent"] == "wasmbox", "get_agent_info", agent)
        metrics = await sandbox.get_agent_metrics()
        check(metrics["total_requests"] > 0, "get_agent_metrics", metrics)
        snapshot = await sandbox.get_metrics_snapshot()
        check(snapshot["executions"]["executions"] > 0, "get_metrics_snapshot", snapshot)

        # run_code_async posts the result to a loopback receiver.
        received = asyncio.get_running_loop().create_future()

        async def on_callback(reader, writer):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            body = await reader.readexactly(length)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            writer.close()
            if not received.done():
                received.set_result(body)

        server = await asyncio.start_server(on_callback, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        queued = await sandbox.run_code_async("print('later')",
                                              callback_url=f"http://127.0.0.1:{port}/cb")
        check(queued["status"] == "queued", "run_code_async queued", queued)
        body = await asyncio.wait_for(received, 30)
        check(b'"later\\n"' in body, "run_code_async delivered", body)
        server.close()

        files = sandbox.files
        await files.write("/workspace/a.txt", "alpha")
        check(await files.read("/workspace/a.txt") == "alpha", "files.write + files.read")
        await files.write_bytes("/workspace/b.bin", bytes(range(256)))
        check(await files.read_bytes("/workspace/b.bin") == bytes(range(256)),
              "files.write_bytes + files.read_bytes")
        await files.mkdir("/workspace/d/e")
        check(await files.exists("/workspace/d/e"), "files.mkdir + files.exists")
        names = sorted(f.name for f in await files.list("/workspace"))
        check(names == ["a.txt", "b.bin", "d"], "files.list", names)
        await files.remove("/workspace/d")
        check(not await files.exists("/workspace/d"), "files.remove")

        events = []

        async def watch():
            async for event in files.watch("/workspace"):
                events.append(event)
                if any(e.get("path", "").endswith("w.txt") for e in events):
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        await files.write("/workspace/w.txt", "w")
        await asyncio.wait_for(watcher, 20)
        check(any(e.get("event") in ("created", "modified") and e["path"].endswith("w.txt")
                  for e in events), "files.watch", events)

        command = await sandbox.commands.run("echo $((20 + 22)); echo err >&2")
        check(command.stdout == "42\n" and command.stderr == "err\n" and command.exit_code == 0,
              "commands.run", command)
        command = await sandbox.commands.run("echo bg; sleep 30", background=True)
        check("Background process started" in command.stdout, "commands.run background", command)

        env = sandbox.env
        check((await env.get_all()).get("A") == "1", "env.get_all")
        await env.set("B", "2")
        check(await env.get("B") == "2" and await env.get("NOPE", "d") == "d", "env.set + env.get")
        updated = await env.update({"C": "3"})
        check(updated.get("C") == "3" and updated.get("B") == "2", "env.update", updated)
        await env.delete("C")
        check(await env.get("C") is None, "env.delete")
        replaced = await env.set_all({"ONLY": "x"})
        check(replaced.get("ONLY") == "x" and "B" not in replaced, "env.set_all", replaced)

        cache = sandbox.cache
        await sandbox.run_code("open('/tmp/c', 'w').write('c')")
        stats = await cache.stats()
        check(stats["count"] >= 1, "cache.stats", stats)
        await cache.clear()
        check((await cache.stats())["count"] == 0, "cache.clear")

        terminal = sandbox.terminal
        async with await terminal.connect() as ws:
            await terminal.resize(ws, cols=80, rows=24)
            await terminal.send_input(ws, "echo term-$ONLY\r")
            await terminal.send_input(ws, "exit\r")
            output = ""
            async for message in terminal.iter_output(ws):
                if message["type"] == "output":
                    output += message["data"]
                elif message["type"] == "exit":
                    break
        check("term-x\r\n" in output, "terminal.connect/resize/send_input/iter_output", output)

        await sandbox.pause()
        check((await sandbox.get_info()).status == "paused", "pause")
        await sandbox.resume()
        check((await sandbox.get_info()).status == "running", "resume")
        await sandbox.kill()
    listed = [s.sandbox_id for s in await AsyncSandbox.list(base_url=BASE_URL)]
    check(sid not in listed, "kill", listed)


asyncio.run(main())
traced.report("python-async")
print("PYTHON ASYNC CLIENT OK", flush=True)
