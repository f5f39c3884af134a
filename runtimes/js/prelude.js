// wasmbox prelude for QuickJS-NG: a small Node-like environment.
//
// Run as `qjs --std -I /usr/lib/wasmbox/prelude.js -e CODE` (or `... main.js`).
// Needs --std (the `std` and `os` globals).
//
// It runs before every program, and QuickJS compiles only ~8 KB of code per
// millisecond under wasm, so this file holds just what most programs touch:
// the working directory, console.log/error/warn/info/debug for strings and
// numbers, process basics, timers. Formatting anything else is in inspect.js;
// the other console methods, process.on/stdin/hrtime..., the global Buffer and
// require of fs, path, os, util, events, readline, buffer, timers and relative
// files are in node-lib.js. Both sit beside this file and are compiled on
// first use.
//
// Not provided: child_process, net/http, fs.promises, ES module imports
// of node builtins, process.exitCode at natural exit, timer unref().
"use strict";
(function () {
  if (typeof std === "undefined" || typeof os === "undefined")
    throw new Error("wasmbox prelude.js needs `qjs --std`");
  const G = globalThis, _std = std, _os = os, env = _std.getenviron();

  // inspect.js and node-lib.js sit beside this file (found from this file's
  // name in a stack trace, before the chdir below); each is compiled the first
  // time it is needed.
  let dir = (/\(([^():]*\/)?[^/():]*:\d+:\d+\)/.exec(new Error().stack) || [])[1] || "/usr/lib/wasmbox/";
  if (dir[0] !== "/") dir = _os.getcwd()[0].replace(/\/$/, "") + "/" + dir;

  // WASI starts every process in "/": move to the directory the host asked for.
  const enterWorkdir = () => {
    if (!env.PWD) return;
    const r = _os.chdir(env.PWD);
    if (r < 0) _std.err.puts(`wasmbox: cannot chdir to ${env.PWD}: ${_std.strerror(-r)}\n`);
  };
  enterWorkdir();

  const load = (name) => {
    const src = _std.loadFile(dir + name);
    if (src === null) throw new Error(`wasmbox: cannot read ${dir}${name}`);
    return _std.evalScript(src)(S);
  };
  let lib = null, ilib = null;
  const L = () => lib || (lib = load("node-lib.js"));
  const I = () => ilib || (ilib = load("inspect.js"));
  // obj[name] for each name becomes a stub that calls lib[key][name].
  const lazy = (obj, key, names) => {
    for (const n of names) obj[n] = function (...a) { return L()[key][n].apply(this, a); };
  };

  // Strings and numbers are formatted here; anything else goes to node-lib.js.
  function fmtArgs(a) {
    let s = "";
    for (let i = 0; i < a.length; i++) {
      const x = a[i], t = typeof x;
      if (i) s += " ";
      if (t === "string") {
        if (i === 0 && a.length > 1 && x.includes("%")) return I().format(...a);
        s += x;
      } else if (t === "number") s += Object.is(x, -0) ? "-0" : x;
      else if (t === "boolean" || x == null) s += x;
      else return I().format(...a);
    }
    return s;
  }
  function writeLine(f, s) {
    if (S.indent) s = S.indent + s.split("\n").join("\n" + S.indent);
    f.puts(s + "\n");
    f.flush();
  }
  const out = (...a) => writeLine(_std.out, fmtArgs(a));
  const err = (...a) => writeLine(_std.err, fmtArgs(a));
  const con = { log: out, info: out, debug: out, error: err, warn: err };
  lazy(con, "console", ["dir", "trace", "assert", "time", "timeLog", "timeEnd", "count", "countReset",
    "group", "groupCollapsed", "groupEnd", "table"]);
  G.console = con;

  function stream(f, fd) {
    const s = {
      fd,
      write(c, enc, cb) {
        if (typeof c === "string") f.puts(c); else L().writeBytes(f, c);
        f.flush();
        if (typeof enc === "function") cb = enc;
        if (typeof cb === "function") queueMicrotask(cb);
        return true;
      },
      end(c, enc) { if (c != null && typeof c !== "function") s.write(c, enc); },
      get isTTY() { return _os.isatty(fd); },
    };
    lazy(s, "emitter", ["on", "once", "off", "emit", "removeListener", "addListener"]);
    return s;
  }
  const version = (/[^/]*$/.exec((G.navigator || {}).userAgent || "") || [""])[0] || "0.0.0";
  const argv = ["/usr/bin/qjs"];
  const setArgs = (args) => {
    argv.length = 1;
    argv.push(...args);
    if (argv.length > 1 && /\.[cm]?js$/.test(argv[1]) && argv[1][0] !== "/")
      argv[1] = _os.getcwd()[0].replace(/\/$/, "") + "/" + argv[1];
  };
  setArgs(G.scriptArgs || []);
  const proc = {
    env, argv, argv0: "qjs", execPath: "/usr/bin/qjs", execArgv: [],
    version: "v" + version, versions: { quickjs: version }, release: { name: "quickjs-ng" },
    platform: "wasi", arch: "wasm32", pid: 1, ppid: 0, title: "qjs", exitCode: undefined,
    exit(code) {
      if (code === undefined) code = proc.exitCode;
      code = code === undefined ? 0 : code | 0;
      if (lib && !S.exiting) { S.exiting = true; try { proc.emit("exit", code); } catch (e) { } }
      _std.out.flush(); _std.err.flush();
      _std.exit(code);
    },
    cwd() { return _os.getcwd()[0]; },
    chdir(d) { const r = _os.chdir(String(d)); if (r < 0) throw L().sysError(-r, "chdir", String(d)); },
    nextTick(fn, ...a) { queueMicrotask(a.length ? () => fn(...a) : fn); },
    stdout: stream(_std.out, 1),
    stderr: stream(_std.err, 2),
    get stdin() { return L().stdin; },
  };
  lazy(proc, "proc", ["on", "once", "off", "emit", "addListener", "removeListener", "removeAllListeners",
    "listeners", "hrtime", "uptime", "umask", "memoryUsage", "emitWarning", "cpuUsage"]);
  proc.hrtime.bigint = () => BigInt(_os.now()) * 1000n;
  G.process = proc;
  G.global = G;
  Object.defineProperty(G, "Buffer", {
    get: () => L().Buffer,
    set: (v) => Object.defineProperty(G, "Buffer", { value: v, writable: true, configurable: true }),
    configurable: true,
  });

  class Timeout {
    constructor(h) { this._h = h; }
    ref() { return this; }
    unref() { return this; } // no effect: the program waits for every timer
    hasRef() { return true; }
    [Symbol.toPrimitive]() { return this._h; }
  }
  const wrap = (fn, a) => {
    if (typeof fn !== "function") throw new TypeError('The "callback" argument must be of type function');
    return a.length ? () => fn(...a) : fn;
  };
  G.setTimeout = (fn, ms, ...a) => new Timeout(_os.setTimeout(wrap(fn, a), Math.max(0, +ms || 0)));
  G.setInterval = (fn, ms, ...a) => new Timeout(_os.setInterval(wrap(fn, a), Math.max(1, +ms || 0)));
  G.setImmediate = (fn, ...a) => new Timeout(_os.setTimeout(wrap(fn, a), 0));
  G.clearTimeout = G.clearInterval = G.clearImmediate =
    (t) => { if (t != null) _os.clearTimeout(t instanceof Timeout ? t._h : t); };

  // Relative requires resolve from the script's folder (or the cwd for -e).
  const req = (id) => L().require(id);
  req.resolve = (id) => L().require.resolve(id);
  G.require = req;
  G.module = { id: ".", exports: {}, loaded: false };
  G.exports = G.module.exports;

  // A pre-initialised snapshot runs this file once, at build time; each execution then calls
  // this to pick up its own environment, arguments and working directory.
  Object.defineProperty(G, "__wasmbox_restart", {
    value(args) {
      const fresh = _std.getenviron();
      for (const k of Object.keys(env)) delete env[k];
      Object.assign(env, fresh);
      enterWorkdir();
      G.scriptArgs = args;
      setArgs(args);
    },
  });

  // Rich outputs (kernels, display()): a mime bundle per value, handed to the host as JSON
  // through the C function __wasmbox_emit. Strings show as themselves, other values as
  // inspect() shows them; plain objects and arrays also as application/json.
  const bundle = (v) => {
    const data = { "text/plain": typeof v === "string" ? v : I().inspect(v) };
    if (v !== null && typeof v === "object") {
      try {
        const json = JSON.stringify(v);
        if (json !== undefined) data["application/json"] = JSON.parse(json);
      } catch (_) { /* cycles, BigInt: text only */ }
    }
    return data;
  };
  const emit = (v, kind) =>
    G.__wasmbox_emit(JSON.stringify({ kind, data: bundle(v), metadata: {} }));
  Object.defineProperty(G, "__wasmbox_show", {
    value(v) { if (v !== undefined) emit(v, "execute_result"); },
  });
  G.display = (...vs) => { for (const v of vs) emit(v, "display_data"); };

  // State shared with node-lib.js.
  const S = { G, env, proc, version, argv, out, err, writeLine, fmtArgs, I, indent: "", exiting: false };

  // Free room in the allocator, made while the snapshot is taken (the prelude runs only then):
  // freed at once, it stays in the heap, so a small run never grows linear memory. Each growth
  // cost an mprotect there and another on the slot's next reuse, each a TLB shootdown of every
  // other core running the server.
  { let room = new ArrayBuffer(1 << 20); room = null; }
})();
