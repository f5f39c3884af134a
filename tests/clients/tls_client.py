"""The official Python client (hopx-ai) over HTTPS: `serve --tls-cert/--tls-key`, the client
trusting the test's self-signed certificate through SSL_CERT_FILE (configuration only), with
`public_host` an https:// URL and the terminal WebSocket over wss://."""

import asyncio

from hopx_ai import Sandbox

from checks import BASE_URL, check


check(BASE_URL.startswith("https://"), "an https server", BASE_URL)
sandbox = Sandbox.create(template="code-interpreter", base_url=BASE_URL)
info = sandbox.get_info()
check(info.public_host.startswith("https://"), "public_host is https", info.public_host)
result = sandbox.run_code("print(6 * 7)")
check(result.stdout == "42\n", "run_code over https", result)
check(sandbox.commands.run("echo tls").stdout == "tls\n", "commands.run over https")


async def terminal():
    output = ""
    async with await sandbox.terminal.connect() as ws:
        await sandbox.terminal.send_input(ws, "echo wss-$((1 + 1))\rexit\r")
        async for message in sandbox.terminal.iter_output(ws):
            if message["type"] == "output":
                output += message["data"]
            elif message["type"] == "exit":
                break
    return output


output = asyncio.run(terminal())
check("wss-2\r\n" in output, "terminal over wss", output)
sandbox.kill()
print("PYTHON TLS CLIENT OK", flush=True)
