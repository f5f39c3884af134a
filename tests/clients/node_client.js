// The seed examples through the official JavaScript SDK (@hopx-ai/sdk 0.5.1) against wasmbox.
//
// Configuration only: HOPX_API_KEY from the environment and baseURL = WASMBOX_URL (the SDK
// reads no environment variable for the base URL). Exits non-zero on the first failed check.

const { Sandbox } = require('@hopx-ai/sdk');

const baseURL = process.env.WASMBOX_URL;

function check(condition, what, value) {
  if (!condition) {
    console.log(`FAIL: ${what}: ${JSON.stringify(value)}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

async function main() {
  const sandbox = await Sandbox.create({ template: 'code-interpreter', baseURL });
  check(sandbox.sandboxId.startsWith('sbx_'), 'create', sandbox.sandboxId);

  let result = await sandbox.runCode('print("Hello, World!")');
  check(result.stdout === 'Hello, World!\n', 'runCode stdout', result.stdout);
  check(result.success === true && result.exitCode === 0, 'runCode success', result);
  check(typeof result.executionTime === 'number', 'executionTime', result.executionTime);

  result = await sandbox.runCode('import os; print(os.getenv("API_KEY"))', {
    language: 'python',
    env: { API_KEY: 'sk-123', DEBUG: 'true' },
  });
  check(result.stdout === 'sk-123\n', 'python env', result.stdout);

  result = await sandbox.runCode('import os; print(os.getcwd())', {
    language: 'python',
    workingDir: '/tmp/myproject',
  });
  check(result.stdout === '/tmp/myproject\n', 'python workingDir', result.stdout);

  result = await sandbox.runCode('console.log(process.env.FOO, 6 * 7)', {
    language: 'javascript',
    env: { FOO: 'bar' },
    workingDir: '/tmp',
    timeout: 10,
  });
  check(result.stdout === 'bar 42\n' && result.success, 'javascript env/workingDir/timeout', result);

  result = await sandbox.runCode('print(undefined_var)', { language: 'python' });
  check(result.success === false && result.exitCode === 1, 'failing code', result);

  result = await sandbox.runCode('import time; time.sleep(10)', { timeout: 2 });
  check(result.success === false && result.exitCode === 124, 'timeout', result);

  // A kernel: state kept between runIpython calls, the last expression is the result.
  result = await sandbox.runIpython('x = 41\nimport math\ndef area(r):\n    return math.pi * r * r');
  check(result.success === true && result.result === undefined, 'runIpython define', result);
  result = await sandbox.runIpython('x + 1');
  check(result.result === '42' && result.success, 'runIpython keeps variables', result);
  result = await sandbox.runIpython('round(area(2), 2)');
  check(result.result === '12.57', 'runIpython keeps imports and functions', result);
  result = await sandbox.runIpython("class T:\n    def _repr_html_(self):\n        return '<b>t</b>'\nT()");
  check(result.html === '<b>t</b>', 'runIpython rich html', result);
  result = await sandbox.runIpython('while True: pass', { timeout: 2 });
  check(result.success === false && result.stderr.includes('KeyboardInterrupt'), 'runIpython interrupt', result);
  result = await sandbox.runIpython('x');
  check(result.result === '41', 'kernel survives the interrupt', result);

  const command = await sandbox.commands.run('echo hello');
  check(command.stdout === 'hello\n' && command.exit_code === 0, 'commands.run', command);
  const failing = await sandbox.commands.run('ls /nonexistent');
  check(failing.exit_code === 2 && failing.stderr.includes('nonexistent'), 'commands.run failing', failing);

  await sandbox.env.set('MY_VAR', '1');
  const env = await sandbox.env.getAll();
  check(env.MY_VAR === '1', 'env.set/getAll', env);
  result = await sandbox.runCode('console.log(process.env.MY_VAR)', { language: 'javascript' });
  check(result.stdout === '1\n', 'sandbox env reaches code', result.stdout);

  // Background work: started at once, listed, killed.
  const started = await sandbox.runCodeBackground("import time\nprint('bg', flush=True)\ntime.sleep(30)", { name: 'sleeper' });
  check(started.status === 'running' && started.process_id.startsWith('proc_'), 'runCodeBackground', started);
  let processes = await sandbox.listProcesses();
  check(processes.some((p) => p.process_id === started.process_id && p.status === 'running'), 'listProcesses', processes);
  const system = await sandbox.listSystemProcesses();
  check(system.some((p) => p.process_id === started.process_id && typeof p.pid === 'number'), 'listSystemProcesses', system);
  await sandbox.killProcess(started.process_id);
  processes = await sandbox.listProcesses();
  check(processes.some((p) => p.process_id === started.process_id && p.status === 'killed'), 'killProcess', processes);
  const bg = await sandbox.commands.run('echo from-bg; sleep 30', { background: true });
  check(typeof bg.process_id === 'string' && bg.process_id.startsWith('cmd_'), 'commands.run background', bg);
  await sandbox.killProcess(bg.process_id);

  // Streaming: lines as they are printed, then result and complete.
  const frames = [];
  for await (const message of sandbox.runCodeStream("import time\nfor i in range(3):\n    print('line', i)\n    time.sleep(0.2)")) {
    frames.push(message);
  }
  check(JSON.stringify(frames.map((f) => f.type)) === JSON.stringify(['stdout', 'stdout', 'stdout', 'result', 'complete']), 'runCodeStream frames', frames);
  check(frames.filter((f) => f.type === 'stdout').map((f) => f.data).join('') === 'line 0\nline 1\nline 2\n', 'runCodeStream output', frames);

  // Metrics and the cache (the sandbox's /tmp).
  const metrics = await sandbox.getMetricsSnapshot();
  check(metrics.system.disk.quota_bytes > 0 && metrics.executions.executions > 0, 'getMetricsSnapshot', metrics);
  const agentMetrics = await sandbox.getAgentMetrics();
  check(agentMetrics.total_requests > 0, 'getAgentMetrics', agentMetrics);
  const before = (await sandbox.cache.stats()).count;
  await sandbox.runCode("open('/tmp/c.txt', 'w').write('c')");
  const stats = await sandbox.cache.stats();
  check(stats.count === before + 1, 'cache.stats', stats);
  const cleared = await sandbox.cache.clear();
  check(cleared.entries_removed === before + 1 && (await sandbox.cache.stats()).count === 0, 'cache.clear', cleared);

  // Terminal: an interactive shell over the socket, state kept between lines.
  const ws = await sandbox.terminal.connect();
  sandbox.terminal.resize(ws, 100, 30);
  sandbox.terminal.sendInput(ws, 'x=41; cd /tmp\r');
  sandbox.terminal.sendInput(ws, 'echo $((x + 1)) $PWD\n');
  sandbox.terminal.sendInput(ws, 'exit 3\n');
  let terminalOutput = '';
  let terminalCode = null;
  for await (const message of sandbox.terminal.output(ws)) {
    if (message.type === 'output') terminalOutput += message.data;
    if (message.type === 'exit') terminalCode = message.code;
  }
  check(terminalOutput.includes('42 /tmp\r\n') && terminalCode === 3, 'terminal connect/sendInput/resize/output', { terminalOutput, terminalCode });

  await sandbox.files.write('/workspace/a.txt', 'hello');
  const content = await sandbox.files.read('/workspace/a.txt');
  check(content === 'hello', 'files.write/read', content);

  await sandbox.kill();
  const listed = (await Sandbox.list({ baseURL })).map((s) => s.sandboxId);
  check(!listed.includes(sandbox.sandboxId), 'kill', listed);
  console.log('NODE CLIENT OK');
}

main().catch((err) => {
  console.log(`FAIL: uncaught ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
