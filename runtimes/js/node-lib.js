// wasmbox: the lazily loaded part of the QuickJS prelude (see prelude.js).
//
// prelude.js evaluates this file with std.evalScript on first use and calls
// the function below with its shared state. It returns what prelude.js's stubs
// call: sysError, console extras, event methods for process and its streams,
// process extras, process.stdin, writeBytes, and require (builtins fs, path,
// os, util, events, readline, timers, plus relative .js/.json/.cjs files in
// CommonJS style). Object formatting is in inspect.js.
"use strict";
(function (S) {
  const { G, env, proc } = S;
  const qjsVersion = S.version;
  const _std = std, _os = os;
  const inspect = (v, o) => S.I().inspect(v, o), format = (...a) => S.I().format(...a);
  const toBytes = (c) => c instanceof ArrayBuffer ? new Uint8Array(c)
    : ArrayBuffer.isView(c) ? new Uint8Array(c.buffer, c.byteOffset, c.byteLength) : null;
  function writeBytes(f, c) {
    const b = toBytes(c);
    if (b) f.write(b.buffer, b.byteOffset, b.byteLength); else f.puts(String(c));
  }
  // All of standard input, read once and shared by process.stdin, readline and fs.
  let stdinText = null;
  const readStdin = () => (stdinText === null ? (stdinText = _std.in.readAsString()) : stdinText);

  // ---------------------------------------------------------------- errors
  const ERRNO = { 2: "EACCES", 8: "EBADF", 10: "EBUSY", 20: "EEXIST", 28: "EINVAL", 29: "EIO",
    31: "EISDIR", 37: "ENAMETOOLONG", 44: "ENOENT", 51: "ENOSPC", 52: "ENOSYS", 54: "ENOTDIR",
    55: "ENOTEMPTY", 58: "ENOTSUP", 63: "EPERM", 64: "EPIPE", 76: "ENOTCAPABLE" };
  function sysError(errno, syscall, path, dest) {
    const code = ERRNO[errno] || `E${errno}`;
    const m = _std.strerror(errno);
    let msg = `${code}: ${m.charAt(0).toLowerCase() + m.slice(1)}, ${syscall}`;
    if (path !== undefined) msg += ` '${path}'`;
    if (dest !== undefined) msg += ` -> '${dest}'`;
    const e = new Error(msg);
    e.errno = -errno; e.code = code; e.syscall = syscall;
    if (path !== undefined) e.path = path;
    if (dest !== undefined) e.dest = dest;
    return e;
  }
  // ---------------------------------------------------------------- events
  class EventEmitter {
    on(ev, fn) { ((this._ev ||= new Map()).get(ev) || this._ev.set(ev, []).get(ev)).push(fn); return this; }
    once(ev, fn) { const w = (...a) => { this.off(ev, w); fn.apply(this, a); }; w.listener = fn; return this.on(ev, w); }
    off(ev, fn) {
      const l = this._ev && this._ev.get(ev);
      if (l) { const i = l.findIndex((f) => f === fn || f.listener === fn); if (i >= 0) l.splice(i, 1); }
      return this;
    }
    emit(ev, ...a) {
      const l = this._ev && this._ev.get(ev);
      if (!l || !l.length) { if (ev === "error") throw a[0]; return false; }
      for (const f of l.slice()) f.apply(this, a);
      return true;
    }
    listeners(ev) { return ((this._ev && this._ev.get(ev)) || []).map((f) => f.listener || f); }
    listenerCount(ev) { return (this._ev && this._ev.get(ev) || []).length; }
    removeAllListeners(ev) { if (this._ev) ev === undefined ? this._ev.clear() : this._ev.delete(ev); return this; }
  }
  const EP = EventEmitter.prototype;
  EP.addListener = EP.on; EP.removeListener = EP.off; EP.prependListener = EP.on;
  EP.setMaxListeners = function () { return this; };
  // --------------------------------------------------------------- modules
  const path = (() => {
    function normalizeParts(p, abs) {
      const res = [];
      for (const seg of p.split("/")) {
        if (!seg || seg === ".") continue;
        if (seg === "..") { if (res.length && res[res.length - 1] !== "..") res.pop(); else if (!abs) res.push(".."); }
        else res.push(seg);
      }
      return res;
    }
    const P = {
      sep: "/", delimiter: ":",
      isAbsolute: (p) => String(p).startsWith("/"),
      normalize(p) {
        p = String(p);
        if (!p) return ".";
        const abs = p.startsWith("/"), trail = p.endsWith("/");
        let r = normalizeParts(p, abs).join("/");
        if (!r && !abs) r = ".";
        if (r && trail) r += "/";
        return (abs ? "/" : "") + r;
      },
      join: (...a) => { const j = a.filter((x) => String(x) !== "").join("/"); return j ? P.normalize(j) : "."; },
      resolve(...a) {
        let r = "";
        for (let i = a.length - 1; i >= 0 && !r.startsWith("/"); i--) if (a[i]) r = r ? `${a[i]}/${r}` : String(a[i]);
        if (!r.startsWith("/")) r = `${proc.cwd()}/${r}`;
        return "/" + normalizeParts(r, true).join("/");
      },
      relative(from, to) {
        const f = P.resolve(from).split("/").filter(Boolean), t = P.resolve(to).split("/").filter(Boolean);
        let i = 0;
        while (i < f.length && i < t.length && f[i] === t[i]) i++;
        return [...Array(f.length - i).fill(".."), ...t.slice(i)].join("/");
      },
      dirname(p) {
        p = String(p);
        if (!p) return ".";
        const s = p.replace(/\/+$/, "");
        if (!s) return "/";
        const i = s.lastIndexOf("/");
        if (i < 0) return ".";
        return s.slice(0, i).replace(/\/+$/, "") || "/";
      },
      basename(p, ext) {
        const b = String(p).replace(/\/+$/, "").split("/").pop();
        return ext && b.endsWith(ext) && b !== ext ? b.slice(0, -ext.length) : b;
      },
      extname(p) {
        const b = P.basename(p), i = b.lastIndexOf(".");
        return i <= 0 ? "" : b.slice(i);
      },
      parse(p) {
        const root = String(p).startsWith("/") ? "/" : "", base = P.basename(p), ext = P.extname(p);
        let dir = P.dirname(p);
        if (dir === "." && !String(p).startsWith(".")) dir = "";
        return { root, dir, base, ext, name: ext ? base.slice(0, -ext.length) : base };
      },
      format: (o) => { const b = o.base || `${o.name || ""}${o.ext || ""}`; const d = o.dir || o.root || ""; return d ? (d.endsWith("/") ? d + b : `${d}/${b}`) : b; },
    };
    P.posix = P;
    return P;
  })();

  function makeFs() {
    const enc = (o) => (typeof o === "string" ? o : o && o.encoding) || null;
    function open(p, mode) {
      const e = {};
      const f = _std.open(String(p), mode, e);
      if (!f) throw sysError(e.errno, "open", String(p));
      return f;
    }
    function stat(p, link) {
      const [s, e] = ((link && _os.lstat) || _os.stat)(String(p));
      if (e) throw sysError(e, link ? "lstat" : "stat", String(p));
      const type = s.mode & _os.S_IFMT;
      return {
        dev: s.dev, ino: s.ino, mode: s.mode, nlink: s.nlink, uid: s.uid, gid: s.gid, size: s.size,
        blocks: s.blocks, atimeMs: s.atime, mtimeMs: s.mtime, ctimeMs: s.ctime,
        atime: new Date(s.atime), mtime: new Date(s.mtime), ctime: new Date(s.ctime),
        isFile: () => type === _os.S_IFREG, isDirectory: () => type === _os.S_IFDIR,
        isSymbolicLink: () => type === _os.S_IFLNK, isFIFO: () => type === _os.S_IFIFO,
        isCharacterDevice: () => type === _os.S_IFCHR, isBlockDevice: () => false, isSocket: () => false,
      };
    }
    const fs = {
      readFileSync(p, o) {
        const e = enc(o);
        if (p === 0 || p === "/dev/stdin") {
          const t = readStdin();
          return e ? t : Buffer.from(t);
        }
        const f = open(p, "rb");
        try {
          if (e && e !== "latin1" && e !== "binary") return f.readAsString();
          const b = new Buffer(f.readAsArrayBuffer());
          return e ? b.toString(e) : b;
        } finally { f.close(); }
      },
      writeFileSync(p, data, o) {
        const flag = (o && typeof o === "object" && o.flag) || "w";
        if (p === 1 || p === 2) return proc[p === 1 ? "stdout" : "stderr"].write(data);
        const f = open(p, flag.replace(/[^rwa+x]/g, "") + "b");
        try {
          writeBytes(f, data);
          f.flush();
          if (f.error()) throw sysError(29, "write", String(p));
        } finally { f.close(); }
      },
      appendFileSync(p, data, o) { fs.writeFileSync(p, data, { flag: "a", ...(typeof o === "object" ? o : {}) }); },
      existsSync: (p) => { try { return _os.stat(String(p))[1] === 0; } catch (e) { return false; } },
      statSync: (p, o) => {
        try { return stat(p, false); } catch (e) { if (o && o.throwIfNoEntry === false && e.code === "ENOENT") return undefined; throw e; }
      },
      lstatSync: (p) => stat(p, true),
      mkdirSync(p, o) {
        p = String(p);
        const mode = (o && typeof o === "object" ? o.mode : o) || 0o777;
        if (!(o && o.recursive)) {
          const r = _os.mkdir(p, mode);
          if (r < 0) throw sysError(-r, "mkdir", p);
          return undefined;
        }
        const full = path.resolve(p);
        let first, cur = "";
        for (const seg of full.split("/").filter(Boolean)) {
          cur += "/" + seg;
          const r = _os.mkdir(cur, mode);
          if (r === 0) { if (first === undefined) first = cur; }
          else if (-r !== 20 || !fs.statSync(cur).isDirectory()) throw sysError(r === -20 ? 54 : -r, "mkdir", p);
        }
        return first;
      },
      readdirSync(p, o) {
        const [names, e] = _os.readdir(String(p));
        if (e) throw sysError(e, "scandir", String(p));
        const list = names.filter((n) => n !== "." && n !== "..").sort();
        if (o && o.withFileTypes) return list.map((n) => {
          const s = stat(path.join(String(p), n), true);
          return { name: n, isFile: s.isFile, isDirectory: s.isDirectory, isSymbolicLink: s.isSymbolicLink };
        });
        return list;
      },
      unlinkSync(p) {
        if (stat(p, true).isDirectory()) throw sysError(31, "unlink", String(p));
        const r = _os.remove(String(p)); if (r < 0) throw sysError(-r, "unlink", String(p));
      },
      rmdirSync(p) { const r = _os.remove(String(p)); if (r < 0) throw sysError(-r, "rmdir", String(p)); },
      rmSync(p, o) {
        let s;
        try { s = stat(p, true); } catch (e) { if (o && o.force && e.code === "ENOENT") return; throw e; }
        if (s.isDirectory()) {
          if (!(o && o.recursive)) throw sysError(31, "rm", String(p));
          for (const n of fs.readdirSync(p)) fs.rmSync(path.join(String(p), n), o);
        }
        const r = _os.remove(String(p)); if (r < 0) throw sysError(-r, "rm", String(p));
      },
      renameSync(a, b) { const r = _os.rename(String(a), String(b)); if (r < 0) throw sysError(-r, "rename", String(a), String(b)); },
      copyFileSync(a, b) { fs.writeFileSync(b, fs.readFileSync(a)); },
      realpathSync(p) {
        if (!_os.realpath) { stat(p, false); return path.resolve(String(p)); } // not in WASI builds
        const [r, e] = _os.realpath(String(p)); if (e) throw sysError(e, "realpath", String(p)); return r;
      },
      accessSync(p) { stat(p, false); },
    };
    fs.constants = { F_OK: 0, R_OK: 4, W_OK: 2, X_OK: 1 };
    return fs;
  }
  // ----------------------------------------------------------------- Buffer
  // A small Buffer (a Uint8Array with Node's common methods). UTF-8 is done by
  // hand: this QuickJS has no TextEncoder/TextDecoder.
  function utf8Encode(s) {
    const out = [];
    for (const ch of s) {
      let c = ch.codePointAt(0);
      if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd; // lone surrogate
      if (c < 0x80) out.push(c);
      else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
      else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    }
    return out;
  }
  function utf8Decode(b) {
    const parts = [];
    let cps = [];
    for (let i = 0; i < b.length;) {
      let c = b[i++], need = 0;
      if (c >= 0xf0 && c < 0xf8) { need = 3; c &= 7; } else if (c >= 0xe0) { need = 2; c &= 15; }
      else if (c >= 0xc0) { need = 1; c &= 31; } else if (c >= 0x80) c = 0xfffd;
      if (c >= 0xf8) c = 0xfffd;
      for (; need > 0; need--) {
        if (i >= b.length || (b[i] & 0xc0) !== 0x80) { c = 0xfffd; break; }
        c = (c << 6) | (b[i++] & 63);
      }
      cps.push(c);
      if (cps.length >= 8192) { parts.push(String.fromCodePoint(...cps)); cps = []; }
    }
    parts.push(String.fromCodePoint(...cps));
    return parts.join("");
  }
  const latin1 = (b) => { let s = ""; for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192)); return s; };
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  class Buffer extends Uint8Array {
    static from(x, enc) {
      if (typeof x === "string") {
        if (enc === "hex") return new Buffer((x.match(/[0-9a-f]{2}/gi) || []).map((h) => parseInt(h, 16)));
        if (enc === "latin1" || enc === "binary" || enc === "ascii") return new Buffer(Array.from(x, (c) => c.charCodeAt(0) & 255));
        if (enc === "base64" || enc === "base64url") {
          const out = [];
          let acc = 0, bits = 0;
          for (const ch of x.replace(/-/g, "+").replace(/_/g, "/")) {
            const v = B64.indexOf(ch);
            if (v < 0) continue;
            acc = (acc << 6) | v; bits += 6;
            if (bits >= 8) { bits -= 8; out.push((acc >> bits) & 255); }
          }
          return new Buffer(out);
        }
        return new Buffer(utf8Encode(x));
      }
      if (x instanceof ArrayBuffer) return new Buffer(x.slice(0));
      return new Buffer(Array.from(x));
    }
    static alloc(n, fill = 0) { return new Buffer(n).fill(typeof fill === "string" ? fill.charCodeAt(0) : fill); }
    static allocUnsafe(n) { return new Buffer(n); }
    static isBuffer(b) { return b instanceof Buffer; }
    static byteLength(s, enc) { return typeof s === "string" ? Buffer.from(s, enc).length : s.byteLength; }
    static concat(list, total) {
      if (total === undefined) total = list.reduce((n, b) => n + b.length, 0);
      const r = new Buffer(total);
      let o = 0;
      for (const b of list) { if (o >= total) break; r.set(b.subarray(0, total - o), o); o += b.length; }
      return r;
    }
    toString(enc = "utf8", start = 0, end = this.length) {
      const b = this.subarray(start, end);
      switch (String(enc).toLowerCase()) {
        case "hex": return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
        case "latin1": case "binary": case "ascii": return latin1(b);
        case "base64": case "base64url": {
          let s = "";
          for (let i = 0; i < b.length; i += 3) {
            const n = (b[i] << 16) | ((b[i + 1] || 0) << 8) | (b[i + 2] || 0);
            s += B64[n >> 18] + B64[(n >> 12) & 63] + (i + 1 < b.length ? B64[(n >> 6) & 63] : "=") + (i + 2 < b.length ? B64[n & 63] : "=");
          }
          return enc === "base64url" ? s.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "") : s;
        }
        default: return utf8Decode(b);
      }
    }
    equals(o) { if (this.length !== o.length) return false; for (let i = 0; i < o.length; i++) if (this[i] !== o[i]) return false; return true; }
    toJSON() { return { type: "Buffer", data: Array.from(this) }; }
  }

  const builtins = {
    fs: makeFs,
    path: () => path,
    events: () => { const E = EventEmitter; E.EventEmitter = E; E.default = E; return E; },
    util: () => ({
      format, inspect, inherits(c, s) { Object.setPrototypeOf(c.prototype, s.prototype); Object.setPrototypeOf(c, s); },
      promisify: (fn) => (...a) => new Promise((res, rej) => fn(...a, (e, v) => (e ? rej(e) : res(v)))),
      isDeepStrictEqual: (a, b) => inspect(a, { depth: null }) === inspect(b, { depth: null }),
      types: { isDate: (v) => v instanceof Date, isRegExp: (v) => v instanceof RegExp, isPromise: (v) => v instanceof Promise },
    }),
    os: () => ({
      EOL: "\n", platform: () => "wasi", type: () => "WASI", arch: () => "wasm32", release: () => qjsVersion,
      tmpdir: () => env.TMPDIR || "/tmp", homedir: () => env.HOME || "/", hostname: () => "wasmbox",
      cpus: () => [], totalmem: () => 0, freemem: () => 0, endianness: () => "LE", uptime: () => proc.uptime(),
      userInfo: () => ({ username: env.USER || "user", uid: -1, gid: -1, shell: null, homedir: env.HOME || "/" }),
    }),
    process: () => proc,
    readline: () => ({ createInterface }),
    buffer: () => ({ Buffer }),
    timers: () => ({ setTimeout: G.setTimeout, setInterval: G.setInterval, setImmediate: G.setImmediate,
      clearTimeout: G.clearTimeout, clearInterval: G.clearInterval, clearImmediate: G.clearImmediate }),
  };
  const cache = new Map();
  function makeRequire(dir) {
    function req(id) {
      id = String(id);
      const b = id.startsWith("node:") ? id.slice(5) : id;
      if (Object.prototype.hasOwnProperty.call(builtins, b)) {
        if (!cache.has(b)) cache.set(b, { exports: builtins[b]() });
        return cache.get(b).exports;
      }
      if (!(b.startsWith("./") || b.startsWith("../") || b.startsWith("/") || b === "." || b === "..")) {
        const e = new Error(`Cannot find module '${id}' (wasmbox provides fs, path, os, util, events, readline, buffer, timers and relative files)`);
        e.code = "MODULE_NOT_FOUND";
        throw e;
      }
      const file = req.resolve(id);
      if (cache.has(file)) return cache.get(file).exports;
      const module = { id: file, filename: file, exports: {}, loaded: false };
      cache.set(file, module);
      try {
        const src = _std.loadFile(file);
        if (src === null) throw sysError(44, "open", file);
        if (file.endsWith(".json")) module.exports = JSON.parse(src);
        else {
          const fn = _std.evalScript(`(function (exports, require, module, __filename, __dirname) {${src.replace(/^#!.*/, "")}\n})`);
          fn.call(module.exports, module.exports, makeRequire(path.dirname(file)), module, file, path.dirname(file));
        }
      } catch (e) { cache.delete(file); throw e; }
      module.loaded = true;
      return module.exports;
    }
    req.resolve = (id) => {
      const base = path.resolve(dir || proc.cwd(), String(id));
      for (const c of [base, `${base}.js`, `${base}.json`, `${base}.cjs`, `${base}/index.js`, `${base}/index.json`]) {
        const [s, e] = _os.stat(c);
        if (!e && (s.mode & _os.S_IFMT) === _os.S_IFREG) return c;
      }
      const e = new Error(`Cannot find module '${id}'`);
      e.code = "MODULE_NOT_FOUND";
      throw e;
    };
    req.cache = cache;
    return req;
  }

  // ------------------------------------------------- stdin and readline
  function makeStdin() {
    const s = new EventEmitter();
    let started = false, pending = null;
    s.fd = 0;
    Object.defineProperty(s, "isTTY", { get: () => _os.isatty(0), enumerable: true });
    const start = () => {
      if (started) return;
      started = true;
      setTimeout(() => {
        const d = readStdin();
        pending = d || null;
        if (s.listenerCount("readable")) s.emit("readable");
        if (d && s.listenerCount("data")) s.emit("data", d);
        pending = null;
        s.emit("end");
        s.emit("close");
      }, 0);
    };
    const on = s.on;
    s.on = s.addListener = function (ev, fn) {
      on.call(this, ev, fn);
      if (ev === "data" || ev === "end" || ev === "readable") start();
      return this;
    };
    s.read = () => { const r = pending; pending = null; return r; };
    s.setEncoding = s.pause = s.ref = s.unref = () => s;
    s.resume = () => { start(); return s; };
    s[Symbol.asyncIterator] = async function* () { const d = readStdin(); if (d) yield d; };
    return s;
  }
  let stdin = null;
  // readline over standard input (the only input there is): all lines are
  // delivered after the current script has run, then 'close'.
  function createInterface(input, output) {
    const o = input && input.input ? input : { input, output };
    const rl = new EventEmitter();
    let lines = null, closed = false, started = false;
    const take = () => {
      if (lines === null) {
        lines = readStdin().split(/\r?\n/);
        if (lines[lines.length - 1] === "") lines.pop();
      }
      return lines;
    };
    rl.close = () => { if (!closed) { closed = true; rl.emit("close"); } };
    const on = rl.on;
    rl.on = rl.addListener = function (ev, fn) {
      on.call(this, ev, fn);
      if (ev === "line" && !started) {
        started = true;
        setTimeout(() => {
          const l = take();
          while (l.length && !closed) rl.emit("line", l.shift());
          rl.close();
        }, 0);
      }
      return this;
    };
    rl.question = (q, opts, cb) => {
      if (typeof opts === "function") cb = opts;
      if (o.output && o.output.write) o.output.write(q);
      const l = take();
      const ans = l.length ? l.shift() : "";
      if (typeof cb === "function") setTimeout(() => cb(ans), 0);
      return Promise.resolve(ans);
    };
    rl.setPrompt = () => {};
    rl.prompt = () => { };
    rl.write = () => { };
    rl.pause = rl.resume = () => rl;
    rl[Symbol.asyncIterator] = async function* () {
      const l = take();
      while (l.length && !closed) yield l.shift();
      rl.close();
    };
    return rl;
  }

  // ---------------------------------------------------------- console extras
  const timers = new Map(), counts = new Map();
  const consoleExtras = {
    dir: (o, opts) => S.writeLine(_std.out, inspect(o, opts)),
    trace: (...a) => {
      const st = String(new Error().stack).replace(/^.*\n/, "").replace(/\n+$/, "");
      S.writeLine(_std.err, `Trace${a.length ? ": " + format(...a) : ""}\n${st}`);
    },
    assert: (ok, ...a) => { if (!ok) S.err(...(a.length ? ["Assertion failed:", ...a] : ["Assertion failed"])); },
    time: (l = "default") => { timers.set(String(l), _os.now()); },
    timeLog: (l = "default", ...a) => {
      const t = timers.get(String(l));
      if (t !== undefined) S.out(`${l}: ${((_os.now() - t) / 1000).toFixed(3)}ms`, ...a);
    },
    timeEnd: (l = "default") => { consoleExtras.timeLog(l); timers.delete(String(l)); },
    count: (l = "default") => { const n = (counts.get(String(l)) || 0) + 1; counts.set(String(l), n); S.out(`${l}: ${n}`); },
    countReset: (l = "default") => { counts.delete(String(l)); },
    group: (...a) => { if (a.length) S.out(...a); S.indent += "  "; },
    groupEnd: () => { S.indent = S.indent.slice(2); },
    table: (...a) => S.out(...a),
  };
  consoleExtras.groupCollapsed = consoleExtras.group;

  // ----------------------------------------------------------- process extras
  const t0 = _os.now();
  const procExtras = {
    ...EP_methods(),
    hrtime(prev) {
      const us = _os.now();
      let s = Math.floor(us / 1e6), ns = (us % 1e6) * 1000;
      if (prev) { s -= prev[0]; ns -= prev[1]; if (ns < 0) { s--; ns += 1e9; } }
      return [s, ns];
    },
    uptime: () => (_os.now() - t0) / 1e6,
    umask: () => 0o22,
    memoryUsage: () => ({ rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 }),
    cpuUsage: () => ({ user: Math.round(_os.cputime ? _os.cputime() : 0), system: 0 }),
    emitWarning(w) { S.err(`(qjs) ${w instanceof Error ? `${w.name}: ${w.message}` : `Warning: ${w}`}`); },
  };
  function EP_methods() {
    const m = {};
    for (const k of ["on", "once", "off", "emit", "addListener", "removeListener", "removeAllListeners",
      "listeners", "listenerCount"]) m[k] = EP[k];
    return m;
  }

  return {
    inspect, format, sysError, writeBytes, Buffer,
    console: consoleExtras,
    emitter: EP_methods(),
    proc: procExtras,
    get stdin() { return stdin || (stdin = makeStdin()); },
    require: makeRequire(S.argv.length > 1 && S.argv[1][0] === "/" ? path.dirname(S.argv[1]) : null),
  };
})
