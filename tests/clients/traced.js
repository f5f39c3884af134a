// Records which public methods of the official JS client (@hopx-ai/sdk) a test script calls
// itself, so the README's compatibility table is checked against what really ran
// (tests/api_official_clients.rs). Same protocol as traced.py: `report()` prints
// `PUBLIC node …` and `COVERED node …` with the table's row names (`runCode`, `files.read`).

const sdk = require('@hopx-ai/sdk');

// TypeScript-private plumbing of Sandbox, public only in the compiled JS.
const INTERNAL = new Set([
  'ensureValidToken', 'ensureAgentClientSync', 'ensureWSClientSync', 'ensureAgentClient',
  'ensureWSClient', 'init',
]);

const publicNames = new Set();
const called = new Set();
let script = null;

function calledFromScript() {
  // Frame 0 is this function, 1 the wrapper, 2 the caller.
  const frames = (new Error().stack || '').split('\n').slice(1);
  return frames.length > 2 && frames[2].includes(script);
}

function wrapFunction(fn, row) {
  return function traced(...args) {
    if (calledFromScript()) called.add(row);
    return fn.apply(this, args);
  };
}

function traceObject(target, prefix) {
  for (const name of Object.getOwnPropertyNames(target)) {
    if (['constructor', 'length', 'name', 'prototype'].includes(name) || name.startsWith('_')) continue;
    if (INTERNAL.has(name)) continue;
    const descriptor = Object.getOwnPropertyDescriptor(target, name);
    const row = prefix + name;
    if (descriptor.get) {
      descriptor.get = wrapFunction(descriptor.get, row);
    } else if (typeof descriptor.value === 'function') {
      descriptor.value = wrapFunction(descriptor.value, row);
    } else {
      continue;
    }
    Object.defineProperty(target, name, descriptor);
    publicNames.add(row);
  }
}

function trace(scriptPath) {
  script = scriptPath;
  traceObject(sdk.Sandbox, '');
  traceObject(sdk.Sandbox.prototype, '');
  traceObject(sdk.Files.prototype, 'files.');
  traceObject(sdk.Commands.prototype, 'commands.');
  traceObject(sdk.EnvironmentVariables.prototype, 'env.');
  traceObject(sdk.Cache.prototype, 'cache.');
  traceObject(sdk.Terminal.prototype, 'terminal.');
}

function report() {
  console.log(`PUBLIC node ${[...publicNames].sort().join(' ')}`);
  console.log(`COVERED node ${[...called].sort().join(' ')}`);
}

module.exports = { trace, report };
