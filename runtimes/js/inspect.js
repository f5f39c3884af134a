// wasmbox: object formatting for the QuickJS prelude (see prelude.js), loaded
// the first time console.log & co. get something other than strings and numbers.
// prelude.js evaluates this file with std.evalScript and calls the function with
// its shared state; it returns { inspect, format }, a simplified version of
// Node's util.inspect / util.format (breakLength 80, compact 3, depth 2).
"use strict";
(function (S) {
  // A compact version of Node's util.inspect (breakLength 80, compact 3, depth 2).
  const IDENT = /^[a-zA-Z_][a-zA-Z_0-9]*$/;
  const ESC = /[\x00-\x1f\x7f'\\]/;
  function strEscape(s) {
    let q = "'";
    if (s.includes("'")) {
      if (!s.includes('"')) q = '"';
      else if (!s.includes("`") && !s.includes("${")) q = "`";
    }
    if (!ESC.test(s) && !s.includes(q)) return q + s + q;
    let out = "";
    for (let i = 0; i < s.length; i++) {
      const c = s[i], n = s.charCodeAt(i);
      if (c === q || c === "\\") out += "\\" + c;
      else if (c === "\n") out += "\\n";
      else if (c === "\t") out += "\\t";
      else if (c === "\r") out += "\\r";
      else if (c === "\b") out += "\\b";
      else if (c === "\f") out += "\\f";
      else if (c === "\v") out += "\\v";
      else if (n < 0x20 || n === 0x7f) out += "\\x" + n.toString(16).padStart(2, "0").toUpperCase();
      else out += c;
    }
    return q + out + q;
  }
  function fnBase(f) {
    let src = "";
    try { src = Function.prototype.toString.call(f); } catch (e) { }
    if (src.startsWith("class") && /^class\b/.test(src)) return `[class ${f.name || "(anonymous)"}]`;
    const kind = (f.constructor && f.constructor.name) || "Function";
    return f.name ? `[${kind}: ${f.name}]` : `[${kind} (anonymous)]`;
  }
  function errBase(e) {
    let s = "";
    try { s = String(e); } catch (x) { s = "Error"; }
    const st = e.stack;
    if (typeof st === "string" && st) {
      // QuickJS's stack holds only the frames; Node's starts with "Name: message".
      if (st.startsWith(s)) return st.replace(/\n+$/, "");
      return (s + "\n" + st).replace(/\n+$/, "");
    }
    return `[${s}]`;
  }
  function ctorName(o) {
    let p = o;
    while (p) {
      const d = Object.getOwnPropertyDescriptor(p, "constructor");
      if (d && typeof d.value === "function" && d.value.name) return d.value.name;
      p = Object.getPrototypeOf(p);
    }
    return null;
  }
  function formatPrimitive(v, top) {
    switch (typeof v) {
      case "string": return top ? v : strEscape(v);
      case "number": return Object.is(v, -0) ? "-0" : String(v);
      case "bigint": return `${v}n`;
      case "symbol": return v.toString();
      case "undefined": return "undefined";
      default: return String(v);
    }
  }
  function inspect(v, opts) {
    const ctx = { seen: [], circular: null, indent: 0, depth: 2, cur: 0 };
    if (opts && typeof opts === "object") {
      if (opts.depth === null) ctx.depth = Infinity;
      else if (typeof opts.depth === "number") ctx.depth = opts.depth;
    }
    return fmt(ctx, v, 0, false);
  }
  function fmt(ctx, v, level, top) {
    if (v === null) return "null";
    if (typeof v !== "object" && typeof v !== "function") return formatPrimitive(v, top);
    if (ctx.seen.includes(v)) {
      if (!ctx.circular) ctx.circular = new Map();
      let i = ctx.circular.get(v);
      if (i === undefined) { i = ctx.circular.size + 1; ctx.circular.set(v, i); }
      return `[Circular *${i}]`;
    }
    return fmtRaw(ctx, v, level);
  }
  function fmtRaw(ctx, v, level) {
    let keys, braces, base = "", isArr = false, out;
    const proto = Object.getPrototypeOf(v);
    const name = proto === null ? null : ctorName(v);
    const prefix = (def, size) => {
      const n = name === null ? `[${def}: null prototype]` : name;
      const s = size === undefined ? "" : `(${size})`;
      return (n === def && def === "Object") ? "" : `${n}${s} `;
    };
    if (Array.isArray(v)) {
      isArr = true;
      keys = Object.keys(v).filter((k) => !(String(k >>> 0) === k && (k >>> 0) < 4294967295));
      braces = [`${name === "Array" ? "" : prefix("Array", v.length)}[`, "]"];
      if (v.length === 0 && keys.length === 0) return `${braces[0]}]`;
    } else if (typeof v === "function") {
      base = fnBase(v);
      keys = Object.keys(v);
      if (keys.length === 0) return base;
      braces = ["{", "}"];
    } else if (v instanceof Error) {
      base = errBase(v);
      if (ctx.indent) base = base.split("\n").join("\n" + " ".repeat(ctx.indent));
      keys = Object.keys(v).filter((k) => k !== "stack" && k !== "message");
      if (keys.length === 0) return base;
      braces = ["{", "}"];
    } else if (v instanceof Date) {
      base = isNaN(v.getTime()) ? "Invalid Date" : v.toISOString();
      keys = Object.keys(v);
      if (keys.length === 0) return base;
      braces = ["{", "}"];
    } else if (v instanceof RegExp) {
      base = RegExp.prototype.toString.call(v);
      keys = Object.keys(v).filter((k) => k !== "lastIndex");
      if (keys.length === 0) return base;
      braces = ["{", "}"];
    } else if (v instanceof Map) {
      keys = Object.keys(v);
      braces = [`${prefix("Map", v.size)}{`, "}"];
      if (v.size === 0 && keys.length === 0) return `${braces[0]}}`;
    } else if (v instanceof Set) {
      keys = Object.keys(v);
      braces = [`${prefix("Set", v.size)}{`, "}"];
      if (v.size === 0 && keys.length === 0) return `${braces[0]}}`;
    } else if (name === "Buffer" && v instanceof Uint8Array) {
      let h = Array.from(v.subarray(0, 50), (x) => x.toString(16).padStart(2, "0")).join(" ");
      if (v.length > 50) h += ` ... ${v.length - 50} more byte${v.length > 51 ? "s" : ""}`;
      return `<Buffer${h ? " " + h : ""}>`;
    } else if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      isArr = true;
      keys = [];
      braces = [`${name}(${v.length}) [`, "]"];
      if (v.length === 0) return `${braces[0]}]`;
    } else if (v instanceof Promise) {
      return "Promise { <unknown> }";
    } else if (v instanceof WeakMap || v instanceof WeakSet) {
      return `${name} { <items unknown> }`;
    } else if (v instanceof Number || v instanceof String || v instanceof Boolean) {
      const t = v instanceof Number ? "Number" : v instanceof String ? "String" : "Boolean";
      return `[${t}: ${formatPrimitive(v.valueOf(), false)}]`;
    } else {
      keys = Object.keys(v);
      braces = [`${prefix("Object")}{`, "}"];
    }
    const syms = Object.getOwnPropertySymbols(v).filter((s) => Object.prototype.propertyIsEnumerable.call(v, s));
    if (syms.length) keys = keys.concat(syms);
    if (!isArr && !(v instanceof Map) && !(v instanceof Set) && keys.length === 0) {
      if (base) return base;
      return `${braces[0]}}`;
    }
    if (level > ctx.depth) {
      if (isArr) return `[${name || "Array"}]`;
      return `[${name === null ? "Object: null prototype" : name}]`;
    }
    ctx.seen.push(v);
    ctx.cur = level;
    out = [];
    ctx.indent += 2;
    if (isArr) {
      const n = v.length, shown = Math.min(n, 100);
      let holes = 0;
      for (let i = 0; i < shown; i++) {
        if (!Object.prototype.hasOwnProperty.call(v, i)) { holes++; continue; }
        if (holes) { out.push(`<${holes} empty item${holes > 1 ? "s" : ""}>`); holes = 0; }
        out.push(fmt(ctx, v[i], level + 1, false));
      }
      if (holes) out.push(`<${holes} empty item${holes > 1 ? "s" : ""}>`);
      if (n > shown) out.push(`... ${n - shown} more item${n - shown > 1 ? "s" : ""}`);
    } else if (v instanceof Map) {
      for (const [k, x] of v) out.push(`${fmt(ctx, k, level + 1, false)} => ${fmt(ctx, x, level + 1, false)}`);
    } else if (v instanceof Set) {
      for (const x of v) out.push(fmt(ctx, x, level + 1, false));
    }
    for (const k of keys) {
      const d = Object.getOwnPropertyDescriptor(v, k);
      let key = typeof k === "symbol" ? `[${k.toString()}]` : IDENT.test(k) ? k : strEscape(k);
      let s;
      if (d && (d.get || d.set)) s = d.get ? (d.set ? "[Getter/Setter]" : "[Getter]") : "[Setter]";
      else s = fmt(ctx, d ? d.value : v[k], level + 1, false);
      out.push(`${key}: ${s}`);
    }
    ctx.indent -= 2;
    ctx.seen.pop();
    let res = reduce(ctx, out, base, braces, isArr, level, v);
    if (ctx.circular && ctx.circular.has(v)) res = `<ref *${ctx.circular.get(v)}> ${res}`;
    return res;
  }
  function reduce(ctx, out, base, braces, isArr, level, v) {
    const entries = out.length;
    if (isArr && entries > 6) out = group(ctx, out, v);
    if (ctx.cur - level < 3 && entries === out.length) {
      const start = out.length + ctx.indent + braces[0].length + base.length + 10;
      let total = out.length + start;
      let fits = total + out.length <= 80;
      for (let i = 0; fits && i < out.length; i++) { total += out[i].length; if (total > 80) fits = false; }
      if (fits && !base.includes("\n")) {
        const joined = out.join(", ");
        if (!joined.includes("\n")) return `${base ? base + " " : ""}${braces[0]} ${joined} ${braces[1]}`;
      }
    }
    const ind = "\n" + " ".repeat(ctx.indent);
    return `${base ? base + " " : ""}${braces[0]}${ind}  ${out.join(`,${ind}  `)}${ind}${braces[1]}`;
  }
  // Node's groupArrayElements: print long arrays of short items in columns.
  function group(ctx, out, v) {
    let total = 0, maxLen = 0;
    const more = out.length > 0 && out[out.length - 1].startsWith("... ") && v.length > 100;
    const len = out.length - (more ? 1 : 0);
    const dataLen = new Array(len);
    for (let i = 0; i < len; i++) {
      const l = out[i].length;
      dataLen[i] = l; total += l + 2; if (maxLen < l) maxLen = l;
    }
    const actualMax = maxLen + 2;
    if (actualMax * 3 + ctx.indent < 80 && (total / actualMax > 5 || maxLen <= 6)) {
      const averageBias = Math.sqrt(actualMax - total / out.length);
      const biasedMax = Math.max(actualMax - 3 - averageBias, 1);
      const columns = Math.min(Math.round(Math.sqrt(2.5 * biasedMax * len) / biasedMax),
        Math.floor((80 - ctx.indent) / actualMax), 12, 15);
      if (columns <= 1) return out;
      const tmp = [], maxLine = [];
      for (let i = 0; i < columns; i++) {
        let l = 0;
        for (let j = i; j < len; j += columns) if (dataLen[j] > l) l = dataLen[j];
        maxLine.push(l + 2);
      }
      let padStart = true;
      for (let i = 0; i < len; i++) {
        const t = typeof v[i];
        if (t !== "number" && t !== "bigint") { padStart = false; break; }
      }
      for (let i = 0; i < len; i += columns) {
        const max = Math.min(i + columns, len);
        let s = "", j = i;
        for (; j < max - 1; j++) {
          const cell = `${out[j]}, `;
          s += padStart ? cell.padStart(maxLine[j - i], " ") : cell.padEnd(maxLine[j - i], " ");
        }
        s += padStart ? out[j].padStart(maxLine[j - i] - 2, " ") : out[j];
        tmp.push(s);
      }
      if (more) tmp.push(out[len]);
      return tmp;
    }
    return out;
  }

  function format(...args) {
    const first = args[0];
    let s = "", a = 1;
    if (typeof first === "string") {
      if (args.length === 1) return first;
      let last = 0;
      for (let i = 0; i < first.length - 1; i++) {
        if (first.charCodeAt(i) !== 37) continue; // '%'
        const c = first[i + 1];
        let r;
        if (c === "%") { s += first.slice(last, i) + "%"; last = i + 2; i++; continue; }
        if (a >= args.length) continue;
        const x = args[a];
        switch (c) {
          case "s":
            r = typeof x === "string" ? x : typeof x === "bigint" ? `${x}n`
              : (typeof x === "object" && x !== null) || typeof x === "symbol" ? inspect(x, { depth: 1 })
              : formatPrimitive(x, true);
            break;
          case "d": case "i":
            r = typeof x === "bigint" ? `${x}n` : typeof x === "symbol" ? "NaN"
              : formatPrimitive(c === "d" ? Number(x) : parseInt(x), true);
            break;
          case "f": r = typeof x === "symbol" ? "NaN" : formatPrimitive(parseFloat(x), true); break;
          case "j": try { r = JSON.stringify(x); } catch (e) { r = "[Circular]"; } break;
          case "o": case "O": r = inspect(x, { depth: c === "o" ? 4 : 2 }); break;
          case "c": r = ""; break;
          default: continue;
        }
        s += first.slice(last, i) + r;
        last = i + 2; i++; a++;
      }
      s += first.slice(last);
    } else {
      s = fmt({ seen: [], circular: null, indent: 0, depth: 2, cur: 0 }, first, 0, true);
    }
    for (; a < args.length; a++) {
      const x = args[a];
      s += " " + (typeof x === "string" ? x : inspect(x));
    }
    return s;
  }
  return { inspect, format };
})
