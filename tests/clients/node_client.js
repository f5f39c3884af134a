// The seed examples through the official JavaScript SDK (@hopx-ai/sdk 0.5.1) against wasmbox.
//
// Configuration only: HOPX_API_KEY from the environment and baseURL = WASMBOX_URL (the SDK
// reads no environment variable for the base URL). Exits non-zero on the first failed check.

const traced = require('./traced');

traced.trace(__filename);

const { Sandbox } = require('@hopx-ai/sdk');
const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');

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
  // code-interpreter's python is the data runtime: a DataFrame as the last value is a table.
  result = await sandbox.runIpython("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})");
  check(typeof result.html === 'string' && result.html.includes('<table'), 'runIpython DataFrame html', result);
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

  // The rest of the surface: class methods, tokens and expiry, files, env, commands.
  const health = await Sandbox.healthCheck(baseURL);
  check(['ok', 'healthy'].includes(health.status), 'healthCheck', health);
  const templates = await Sandbox.listTemplates({ baseURL });
  check(templates.some((t) => t.name === 'code-interpreter'), 'listTemplates', templates);
  check((await Sandbox.getTemplate('code-interpreter', { baseURL })).name === 'code-interpreter', 'getTemplate');
  let refused = null;
  try { await Sandbox.deleteTemplate('code-interpreter', { baseURL }); } catch (e) { refused = e; }
  check(refused && String(refused.message).includes('built in'), 'deleteTemplate refused: templates are built in', String(refused));
  const iterated = [];
  for await (const s of Sandbox.iter({ baseURL })) iterated.push(s.sandboxId);
  check(iterated.includes(sandbox.sandboxId), 'iter', iterated);
  const again = await Sandbox.connect(sandbox.sandboxId, undefined, baseURL);
  check((await again.runCode('print(3)')).stdout === '3\n', 'connect');
  const info = await sandbox.getInfo();
  check(info.sandboxId === sandbox.sandboxId && info.status === 'running', 'getInfo', info);
  const token = await sandbox.getToken();
  check(token.split('.').length === 3, 'getToken', token);
  await sandbox.refreshToken();
  check((await sandbox.getToken()).split('.').length === 3, 'refreshToken');
  await sandbox.setTimeout(900);
  const ttl = await sandbox.getTimeToExpiry();
  check(ttl > 800 && ttl <= 900, 'setTimeout + getTimeToExpiry', ttl);
  check((await sandbox.isExpiringSoon()) === false, 'isExpiringSoon');
  const expiry = await sandbox.getExpiryInfo();
  check(expiry.hasTimeout && !expiry.isExpired, 'getExpiryInfo', expiry);
  sandbox.startExpiryMonitor(() => {}, 60, 1);
  sandbox.stopExpiryMonitor();
  check(true, 'startExpiryMonitor/stopExpiryMonitor');
  check((await sandbox.getHealth()).status === 'healthy', 'getHealth');
  check((await sandbox.getAgentInfo()).agent === 'wasmbox', 'getAgentInfo');
  check((await sandbox.isHealthy()) === true, 'isHealthy');
  await sandbox.ensureHealthy();
  check((await sandbox.getJupyterSessions()).some((s) => s.kernel_id === 'python-data'), 'getJupyterSessions');

  await sandbox.files.writeBytes('/workspace/b.bin', Buffer.from([0, 1, 254, 255]));
  check(Buffer.compare(await sandbox.files.readBytes('/workspace/b.bin'), Buffer.from([0, 1, 254, 255])) === 0, 'files.writeBytes/readBytes');
  await sandbox.files.mkdir('/workspace/up/nested');
  check(await sandbox.files.exists('/workspace/up/nested'), 'files.mkdir/exists');
  const local = fs.mkdtempSync(path.join(os.tmpdir(), 'wasmbox-client-'));
  fs.writeFileSync(path.join(local, 'in.bin'), Buffer.from('\u0000upload'));
  await sandbox.files.upload(path.join(local, 'in.bin'), '/workspace/up/in.bin');
  const downloaded = await sandbox.files.download('/workspace/up/in.bin');
  check(downloaded.toString() === '\u0000upload', 'files.upload/download', downloaded.toString());
  const entries = (await sandbox.files.list('/workspace/up')).map((f) => f.name).sort();
  check(JSON.stringify(entries) === JSON.stringify(['in.bin', 'nested']), 'files.list', entries);
  await sandbox.files.remove('/workspace/up');
  check(!(await sandbox.files.exists('/workspace/up')), 'files.remove');

  const events = [];
  const watching = (async () => {
    for await (const event of sandbox.watchFiles('/workspace')) {
      events.push(event);
      if (String(event.path).endsWith('seen.txt')) return;
    }
  })();
  await new Promise((r) => setTimeout(r, 500));
  await sandbox.files.write('/workspace/seen.txt', 'x');
  await Promise.race([watching, new Promise((r) => setTimeout(r, 20000))]);
  check(events.some((e) => String(e.path).endsWith('seen.txt')), 'watchFiles', events);

  const bgCommand = await sandbox.commands.runBackground('echo started; sleep 30');
  check(typeof bgCommand.process_id === 'string' || typeof bgCommand.processId === 'string', 'commands.runBackground', bgCommand);

  check((await sandbox.env.get('MY_VAR')) === '1', 'env.get');
  await sandbox.env.update({ U: 'u' });
  check((await sandbox.env.get('U')) === 'u', 'env.update');
  await sandbox.env.delete('U');
  check((await sandbox.env.get('U')) == null, 'env.delete');
  await sandbox.env.setAll({ ONLY: 'x' });
  const replaced = await sandbox.env.getAll();
  check(replaced.ONLY === 'x' && replaced.MY_VAR === undefined, 'env.setAll', replaced);

  const bodies = [];
  const receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { bodies.push(body); res.end(); });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
  const queued = await sandbox.runCodeAsync("print('js hook')", { callbackUrl: `http://127.0.0.1:${receiver.address().port}/cb` });
  check(queued.status === 'queued', 'runCodeAsync', queued);
  for (let i = 0; i < 600 && bodies.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
  check(bodies.length === 1 && bodies[0].includes('js hook'), 'runCodeAsync delivered', bodies);
  receiver.close();

  await sandbox.pause();
  check((await sandbox.getInfo()).status === 'paused', 'pause');
  await sandbox.resume();
  check((await sandbox.getInfo()).status === 'running', 'resume');

  await sandbox.kill();
  const listed = (await Sandbox.list({ baseURL })).map((s) => s.sandboxId);
  check(!listed.includes(sandbox.sandboxId), 'kill', listed);
  traced.report();
  console.log('NODE CLIENT OK');
  process.exit(0);
}

main().catch((err) => {
  console.log(`FAIL: uncaught ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
